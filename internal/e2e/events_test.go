package e2e

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// follower is a running `talon events --follow`.
type follower struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func followEvents(t *testing.T, args ...string) *follower {
	t.Helper()
	cmd := exec.Command(talonBin, append([]string{"events", "--follow", "--format", "table"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &follower{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f.mu.Lock()
			f.lines = append(f.lines, sc.Text())
			f.mu.Unlock()
		}
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return f
}

func (f *follower) text() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.lines, "\n")
}

// stop ends the follower with SIGTERM, as Ctrl-C would, and returns what it
// printed.
func (f *follower) stop(t *testing.T) string {
	t.Helper()
	f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		t.Fatal("talon events --follow did not stop on SIGTERM")
	}
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("talon events --follow exited with %v", err)
	}
	return f.text()
}

// assertStory checks that `talon events` tells the outage of
// TestScriptedOutageWalksTheLadder as a story.
func assertStory(t *testing.T, story, incident string) {
	t.Helper()
	for _, want := range []string{
		"api down (",
		"incident " + incident + " opened: api",
		"healthy → degraded",
		"heal started",
		"heal ran ",
		", exit 1: heal: restarted nothing",
		"agent ran ",
		", ok: agent: looked around",
		"page sent via telegram:42",
		"critical → sos",
		"api up",
		"incident " + incident + " resolved after ",
		"“resolved” sent via telegram:42",
		" api down → heal ran ",
		"→ page sent via telegram:42 → ",
	} {
		if !strings.Contains(story, want) {
			t.Errorf("the story lacks %q:\n%s", want, story)
		}
	}
}
