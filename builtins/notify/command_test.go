package notify_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/notify"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

func TestCommand(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "page")
	page := script(t, "page.sh", `{ echo "kind=$TALON_MESSAGE_KIND incident=$TALON_INCIDENT args=$*"; cat; } > "`+out+`"`)
	p := pager(t, fmt.Sprintf(`notify.command([%q, "--title", "talon"])`, page))
	env := actionEnv(effect.NewLive())
	if r := p.Run(t.Context(), env); !r.OK || r.Output != "delivered via command:page.sh" {
		t.Fatalf("run: %+v", r)
	}
	got, _ := os.ReadFile(out)
	want := "kind=sos incident=inc-20260302-0300 args=--title talon\n" + env.Message.Text + "\n"
	if string(got) != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestCommandFailures(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, body, extra, want string }{
		{"exit status", "cat >/dev/null; echo 'no route to ntfy' >&2; exit 2", "", "notify.command fail.sh: exit status 2: no route to ntfy"},
		{"timeout", "sleep 30 & sleep 30", `, timeout = "300ms"`, "notify.command fail.sh: timeout after 300ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := pager(t, fmt.Sprintf(`notify.command([%q]%s)`, script(t, "fail.sh", tc.body), tc.extra))
			start := time.Now()
			err := p.Send(t.Context(), actionEnv(effect.NewLive()), engine.Message{Kind: "sos", Text: "x"})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
			if took := time.Since(start); took > 4*time.Second {
				t.Fatalf("took %v", took)
			}
		})
	}
}

func TestIMessageOnLinux(t *testing.T) {
	t.Parallel()
	p := pager(t, `notify.imessage("+15550100")`)
	env := actionEnv(effect.NewLive())
	env.Env = []string{"PATH=" + t.TempDir()} // neither imsg nor osascript
	r := p.Run(t.Context(), env)
	if r.OK || r.Output != "notify.imessage: iMessage needs macOS (imsg or osascript)" {
		t.Fatalf("run: %+v", r)
	}
}

// TestIMessageFallback: imsg fails, osascript gets the message as an argument
// of an `on run argv` script, never inside the script source.
func TestIMessageFallback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "argv")
	os.WriteFile(filepath.Join(dir, "imsg"), []byte("#!/bin/sh\necho 'imsg: not authorized' >&2\nexit 1\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "osascript"), []byte("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n--\\n' \"$a\"; done > '"+log+"'\n"), 0o755)
	p := pager(t, `notify.imessage("joel@example.com")`)
	env := actionEnv(effect.NewLive())
	env.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
	msg := `SOS: "quoted" \ back'slash" & end tell` + "\nsecond line"
	if err := p.Send(t.Context(), env, engine.Message{Kind: "sos", Text: msg}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(log)
	args := strings.Split(strings.TrimSuffix(string(b), "\n--\n"), "\n--\n")
	if len(args) < 4 || args[len(args)-2] != "joel@example.com" || args[len(args)-1] != msg {
		t.Fatalf("osascript argv %q", args)
	}
	for _, a := range args[:len(args)-2] {
		if strings.Contains(a, "quoted") {
			t.Fatalf("message pasted into the script: %q", a)
		}
	}
	if args[0] != "-e" || args[1] != "on run argv" {
		t.Fatalf("script %q", args)
	}

	// Both fail: the error says what each said.
	os.WriteFile(filepath.Join(dir, "osascript"), []byte("#!/bin/sh\necho 'execution error: Messages got an error (-1728)' >&2\nexit 1\n"), 0o755)
	err := p.Send(t.Context(), env, engine.Message{Kind: "sos", Text: "x"})
	want := "notify.imessage joel@example.com: imsg: exit status 1: imsg: not authorized; osascript: exit status 1: execution error: Messages got an error (-1728)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

// TestSendAll runs channels concurrently, each under its own timeout. The
// first and the last channel are the same command, which exits only once
// both of its runs have started: run in order, the first would wait for
// the last in vain (past the three channels between them) and fail.
func TestSendAll(t *testing.T) {
	t.Parallel()
	api := newBotAPI(t)
	hook := newRecorder(t, http.StatusServiceUnavailable, "down")
	meet := t.TempDir()
	slowOK := pager(t, fmt.Sprintf(`notify.command([%q], timeout = "90s")`, script(t, "slow.sh", `cat >/dev/null
: > "`+meet+`/arrived.$$"
end=$(($(date +%s) + 60))
while set -- "`+meet+`"/arrived.*; [ $# -lt 2 ]; do
	if [ "$(date +%s)" -ge $end ]; then echo "the other run never started" >&2; exit 1; fi
	sleep 0.05
done`)))
	hung := pager(t, fmt.Sprintf(`notify.command([%q], timeout = "500ms")`, script(t, "hung.sh", "sleep 30")))
	tg := pager(t, fmt.Sprintf(`notify.telegram("-100123", %q, base_url = %q)`, token, api.URL))
	wh := pager(t, fmt.Sprintf(`notify.webhook(%q)`, hook.URL))
	delivered, errs := notify.SendAll(t.Context(), actionEnv(effect.NewLive()), []engine.Pager{slowOK, hung, tg, wh, slowOK},
		engine.Message{Kind: "sos", Text: "page"})
	if strings.Join(delivered, ",") != "command:slow.sh,telegram:-100123,command:slow.sh" {
		t.Fatalf("delivered %q, errs %v", delivered, errs)
	}
	host := strings.TrimPrefix(hook.URL, "http://")
	if len(errs) != 2 || errs["command:hung.sh"].Error() != "notify.command hung.sh: timeout after 500ms" ||
		errs["webhook:"+host].Error() != "notify.webhook "+host+": HTTP 503 Service Unavailable: down" {
		t.Fatalf("errs %v", errs)
	}
	if arrived, _ := filepath.Glob(filepath.Join(meet, "arrived.*")); len(arrived) != 2 {
		t.Fatalf("slow.sh ran %d times, want 2", len(arrived))
	}
}
