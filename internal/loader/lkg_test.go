package loader

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// lkgSite is a policy, a services file and a config.toml with a channel,
// and a state directory for the store.
type lkgSite struct {
	dir, cfg, policy, services, state string
}

func newLKGSite(t *testing.T) lkgSite {
	root, _ := filepath.EvalSymlinks(t.TempDir())
	s := lkgSite{dir: root, cfg: filepath.Join(root, "config.toml"), policy: filepath.Join(root, "policy"),
		services: filepath.Join(root, "services.toml"), state: filepath.Join(root, "state")}
	write(t, s.cfg, "services_file = \"services.toml\"\ncheck_interval_secs = 7\n[escalation]\nsos_telegram_chat_id = \"42\"\n")
	write(t, filepath.Join(s.policy, "talon.star"), "load(\"lib/x.star\", \"x\")\nprobe.exec(\"good\", [\"true\"], critical = True)\nservices()\n"+
		"ladder(rung(\"sos\", do = notify.webhook(\"http://127.0.0.1:9/\")))\n")
	write(t, filepath.Join(s.policy, "lib", "x.star"), "x = 1\n")
	write(t, s.services, "[script.svc]\ncommand = \"true\"\ncritical = true\n")
	os.MkdirAll(s.state, 0o700)
	return s
}

func (s lkgSite) loader(now time.Time) *Loader {
	return New(Options{ConfigFile: s.cfg, ConfigRequired: true, PolicyDir: s.policy, Daemon: true, Store: NewStore(s.state),
		Now: func() time.Time { return now }})
}

func probeNames(p *engine.Policy) []string {
	var out []string
	for _, pr := range p.Probes {
		out = append(out, pr.Name)
	}
	return out
}

// TestLastKnownGoodSurvivesARestart: a policy that loads cleanly is kept in
// the state directory; a daemon that starts with a broken policy, services
// file or config.toml runs it, says why as file:line:col, and still watches
// the broken files so that a fix loads.
func TestLastKnownGoodSurvivesARestart(t *testing.T) {
	t.Parallel()
	saved := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name   string
		break_ func(s lkgSite)
		why    string
	}{
		{"broken policy", func(s lkgSite) { write(t, filepath.Join(s.policy, "talon.star"), "probe.exec(\"good\", [\"true\"]\n") },
			"talon.star:2:1: got end of file, want ')'"},
		{"broken services file", func(s lkgSite) { write(t, s.services, "[script.svc]\ncommand = \"true\"\ncritcal = true\n") },
			`$DIR/services.toml:3:1: unknown key "critcal" in [script.svc]; did you mean "critical"?`},
		{"broken config.toml", func(s lkgSite) { write(t, s.cfg, "services_file = \"services.toml\"\ncheck_interval_secs = \"7\"\n") },
			"$DIR/config.toml:2:23: check_interval_secs: want an integer, got a string"},
		{"empty config.toml", func(s lkgSite) { write(t, s.cfg, "") },
			"$DIR/config.toml: the file is empty; write at least a comment in it to run with every default"},
		{"talon.star gone", func(s lkgSite) { os.Remove(filepath.Join(s.policy, "talon.star")) },
			"talon.star: no talon.star in policy directory $DIR/policy; create it or point policy_dir elsewhere"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newLKGSite(t)
			good := s.loader(saved).Load()
			if good.Err() != nil || good.Fallback != nil {
				t.Fatal(good.ErrorText())
			}
			fi, err := os.Lstat(filepath.Join(s.state, LastGoodFile))
			if err != nil || fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
				t.Fatalf("last good file: %v %v", fi, err)
			}
			c.break_(s)
			l := s.loader(saved.Add(time.Hour)) // a restart
			res := l.Load()
			why := strings.ReplaceAll(c.why, "$DIR", s.dir)
			if res.Err() != nil || res.Fallback == nil {
				t.Fatalf("no fallback: %s", res.ErrorText())
			}
			fb := res.Fallback
			if fb.Source != engine.FallbackLastGood || !fb.Since.Equal(saved) || fb.Error != why || fb.Hash != good.Hash || res.Hash != good.Hash {
				t.Fatalf("fallback %+v (hash %s), want last good of %s saved %s, error %q", fb, res.Hash, good.Hash, saved, why)
			}
			if got := probeNames(res.Policy); !slices.Equal(got, []string{"good", "script:svc"}) || res.Policy.Interval != 7*time.Second {
				t.Fatalf("probes %v interval %s", got, res.Policy.Interval)
			}
			for _, f := range []string{filepath.Join(s.policy, "talon.star"), s.cfg, s.services} {
				if !slices.Contains(res.Files, f) {
					t.Errorf("%s is not watched: %q", f, res.Files)
				}
			}
			if l.Fallback() != res || l.Config().CheckIntervalSecs != 7 {
				t.Errorf("loader state: fallback %v config %+v", l.Fallback() != nil, l.Config())
			}
			// While the file stays broken, a reload fails (the fallback keeps
			// running); the fix ends the fallback and is kept.
			if again := l.Load(); again.Err() == nil || l.Fallback() == nil {
				t.Fatalf("a failed reload: %+v", again)
			}
			s2 := newLKGSite(t) // the same files, unbroken
			for _, f := range []string{"config.toml", "services.toml", "policy/talon.star"} {
				b, _ := os.ReadFile(filepath.Join(s2.dir, f))
				write(t, filepath.Join(s.dir, f), strings.ReplaceAll(string(b), s2.dir, s.dir))
			}
			fixed := l.Load()
			if fixed.Err() != nil || fixed.Fallback != nil || l.Fallback() != nil || fixed.Hash != good.Hash {
				t.Fatalf("after the fix: %s %+v", fixed.ErrorText(), fixed.Fallback)
			}
		})
	}
}

// TestFirstStartFallsBackOnTheDefault: with no last good policy yet, a
// broken policy falls back on the embedded default with the config's
// channels; a broken config.toml keeps its channels as far as they read.
func TestFirstStartFallsBackOnTheDefault(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, config, policy string }{
		{"broken policy", "services_file = \"services.toml\"\n[escalation]\nsos_telegram_chat_id = \"42\"\n", "probe.exec(\"x\", 42)\n"},
		{"typo in config.toml", "services_file = \"services.toml\"\ncheck_intervall_secs = 5\n[escalation]\nsos_telegram_chat_id = \"42\"\n", "probe.exec(\"x\", [\"true\"])\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newLKGSite(t)
			write(t, s.cfg, c.config)
			write(t, filepath.Join(s.policy, "talon.star"), c.policy)
			write(t, s.services, "this is not toml") // broken too: the default runs without it
			res := s.loader(time.Now()).Load()
			if res.Err() != nil || res.Fallback == nil || res.Fallback.Source != engine.FallbackDefault || !res.Fallback.Since.IsZero() {
				t.Fatalf("%s %+v", res.ErrorText(), res.Fallback)
			}
			if res.Policy.Probe("root_disk") == nil {
				t.Fatalf("not the default policy: %v", probeNames(res.Policy))
			}
			var channels []string
			for _, r := range res.Policy.Ladder {
				for _, a := range r.Do {
					if p, ok := a.(engine.Pager); ok {
						channels = append(channels, p.Channel())
					}
				}
			}
			if !slices.Contains(channels, "telegram:42") {
				t.Fatalf("the config's Telegram chat is not among the channels: %v", channels)
			}
		})
	}
}

// TestFallbackPageOnce: the page that says a fallback runs goes out through
// the fallback's channels, and not again when the daemon restarts with the
// same broken file; a new error pages again.
func TestFallbackPageOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer hook.Close()
	s := newLKGSite(t)
	entry := filepath.Join(s.policy, "talon.star")
	write(t, entry, "probe.exec(\"good\", [\"true\"], critical = True)\nladder(rung(\"sos\", do = [notify.webhook(\""+hook.URL+"/\"), notify.log()]))\n")
	saved := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	if res := s.loader(saved).Load(); res.Err() != nil {
		t.Fatal(res.ErrorText())
	}
	var logs []string
	logf := func(msg string, kv ...any) { logs = append(logs, msg) }
	start := func() {
		l := s.loader(saved.Add(time.Hour))
		if res := l.Load(); res.Fallback == nil {
			t.Fatalf("no fallback: %s", res.ErrorText())
		}
		l.PageFallback(context.Background(), effect.NewLive(), "box", logf)
	}
	write(t, entry, "probe.exec(\"good\", [\"true\"]\n")
	start()
	start() // a restart with the same broken file
	mu.Lock()
	if len(got) != 1 || got[0]["kind"] != "fallback" ||
		got[0]["text"] != "⚠️ TALON on box is running the last good policy, loaded cleanly on 2026-11-30 08:00 UTC ("+shortHashOf(t, s)+"): the policy failed to load; fix talon.star:2:1: got end of file, want ')'" {
		t.Fatalf("pages %v", got)
	}
	mu.Unlock()
	if !slices.Contains(logs, "the page about the fallback went out at an earlier start; not sending it again") {
		t.Errorf("logs %q", logs)
	}
	write(t, entry, "probe.exec(\"good\", [\"true\"], critcal = True)\n")
	start()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || !strings.Contains(got[1]["text"].(string), "unexpected keyword argument \"critcal\"") {
		t.Fatalf("a new error did not page: %v", got)
	}
}

func shortHashOf(t *testing.T, s lkgSite) string {
	lg, err := NewStore(s.state).Load()
	if err != nil || lg == nil {
		t.Fatal(err)
	}
	return lg.Hash[:12]
}

// TestStoreRefusesALink: the last good file is Talon's own, opened without
// following a link (another user could aim it anywhere otherwise).
func TestStoreRefusesALink(t *testing.T) {
	t.Parallel()
	s := newLKGSite(t)
	target := filepath.Join(s.dir, "elsewhere")
	write(t, target, "{}")
	symlink(t, target, filepath.Join(s.state, LastGoodFile))
	if _, err := NewStore(s.state).Load(); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("load through a link: %v", err)
	}
	// A load then falls back on the default, and says why in the log.
	var warned []string
	l := New(Options{ConfigFile: s.cfg, PolicyDir: s.policy, Daemon: true, Store: NewStore(s.state),
		Warn: func(msg string, kv ...any) { warned = append(warned, msg) }})
	write(t, filepath.Join(s.policy, "talon.star"), "broken(\n")
	if res := l.Load(); res.Fallback == nil || res.Fallback.Source != engine.FallbackDefault || len(warned) == 0 {
		t.Fatalf("fallback %+v warnings %q", res.Fallback, warned)
	}
	if b, _ := os.ReadFile(target); string(b) != "{}\n" && string(b) != "{}" {
		t.Fatalf("the link's target was written: %q", b)
	}
}
