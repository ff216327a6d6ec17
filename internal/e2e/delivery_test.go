package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// Issue 11, case 5, with the real binary: kill -9 the moment Telegram's
// acceptance of the page is on record, while a slow webhook has not
// answered yet. After the restart the page rung does not run again (Telegram
// would get the page twice); only the webhook, which never answered, gets
// the page again; and both hear "resolved".
func TestCrashDuringDeliveryPagesEachChannelOnce(t *testing.T) {
	dir := t.TempDir()
	var healthy atomic.Bool
	healthy.Store(true)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer api.Close()
	tg := &telegram{}
	tgSrv := httptest.NewServer(tg)
	defer tgSrv.Close()
	// The slow webhook holds its first request until released; it counts
	// every request by kind.
	release := make(chan struct{})
	var once sync.Once
	var hookMu sync.Mutex
	hook := map[string]int{}
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		kind := "sos"
		if strings.Contains(string(body), `"kind":"resolved"`) {
			kind = "resolved"
		}
		hookMu.Lock()
		hook[kind]++
		first := hook["sos"] == 1 && kind == "sos"
		hookMu.Unlock()
		if first {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer hookSrv.Close()
	defer once.Do(func() { close(release) })
	hooks := func(kind string) int {
		hookMu.Lock()
		defer hookMu.Unlock()
		return hook[kind]
	}
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`
probe.http("api", %q, critical = True, after = 1, timeout = "1s")
ladder(
    rung("sos", do = [notify.telegram(chat_id = "42", token = "123:abc", base_url = %q),
                      notify.webhook(%q, timeout = "60s")],
         after = "1s", repeat = "4h", state = "sos"),
)
`, api.URL, tgSrv.URL, hookSrv.URL+"/hook"), 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("healthy", 10*time.Second, func(s engine.Snapshot) bool { return s.OK })

	healthy.Store(false)
	// Telegram's acceptance is journaled (and the state saved with it)
	// while the webhook still holds the page.
	journalWait(t, stateDir, "telegram's acceptance on record", 20*time.Second, func(recs []engine.Record) bool {
		for _, r := range recs {
			if a := r.Answer; r.Type == "delivery" && a != nil && a.Kind == "sos" && a.OK && a.Channel == "telegram:42" {
				return true
			}
		}
		return false
	})
	if hooks("sos") != 1 || len(tg.texts()) != 1 {
		t.Fatalf("before the crash: %d webhook pages, %d telegram", hooks("sos"), len(tg.texts()))
	}
	d.kill9()
	once.Do(func() { close(release) })

	d = startDaemon(t, cfg, policy, bind, stateDir)
	waitUntil(t, "the page sent again to the webhook", 20*time.Second, func() bool { return hooks("sos") == 2 })
	d.waitFor("sos", 10*time.Second, func(s engine.Snapshot) bool { return s.State == engine.SOS })
	healthy.Store(true)
	d.waitFor("recovery", 20*time.Second, func(s engine.Snapshot) bool { return s.OK })
	waitUntil(t, "\"resolved\" on both channels", 20*time.Second, func() bool { return hooks("resolved") == 1 && len(tg.texts()) == 2 })
	d.stop()
	if n := len(tg.texts()); n != 2 || !strings.Contains(tg.texts()[1], "resolved") {
		t.Fatalf("telegram got %d messages (want the page once, then resolved): %q", n, tg.texts())
	}
	starts := journalEvents(readJournal(t, stateDir), "rung_start", "sos")
	if len(starts) != 1 {
		t.Fatalf("the page rung started %d times: %+v", len(starts), starts)
	}
	assertReplayMatches(t, cfg, policy, stateDir)
}
