// Package e2e drives the real talon binary against real processes and
// loopback servers: a scripted outage through the whole ladder, kill -9 in
// the middle of an incident, and live edits of a running daemon's policy.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

var talonBin, workerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "talon-e2e-bin-")
	if err != nil {
		panic(err)
	}
	talonBin = filepath.Join(dir, "talon")
	// Built as `make build` builds it (static, trimmed paths): the figures
	// of the benchmarks are those of the binary that ships.
	build := exec.Command("go", "build", "-trimpath", "-o", talonBin, "github.com/talon-dev/talon/cmd/talon")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build talon: %v\n%s", err, out)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "worker")
	if out, err := exec.Command("go", "build", "-o", workerBin, "github.com/talon-dev/talon/engine/worker/testdata/worker").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the stand-in worker: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// daemon is a running `talon run`.
type daemon struct {
	t        *testing.T
	cmd      *exec.Cmd
	bind     string
	stateDir string
	stderr   *lockedBuf
	done     chan error
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// writeConfig writes a config.toml for a test daemon and returns its path.
func writeConfig(t *testing.T, dir, bind, stateDir, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf("check_interval_secs = 1\nstate_dir = %q\nservices_file = %q\npath = [\"/usr/local/bin\", \"/usr/bin\", \"/bin\", \"/usr/sbin\", \"/sbin\"]\n%s\n[health]\nbind = %q\n",
		stateDir, filepath.Join(dir, "services.toml"), extra, bind)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func startDaemon(t *testing.T, cfgPath, policyDir, bind, stateDir string, env ...string) *daemon {
	t.Helper()
	return startDaemonArgv(t, []string{talonBin, "run", "--config", cfgPath, "--policy", policyDir}, bind, stateDir, env...)
}

// startDaemonArgv starts the daemon with argv (a wrapper such as sh -c
// 'ulimit ...; exec "$@"' may come first; it must exec the daemon).
func startDaemonArgv(t *testing.T, argv []string, bind, stateDir string, env ...string) *daemon {
	t.Helper()
	d := launchDaemon(t, argv, bind, stateDir, env...)
	d.waitFor("the health endpoint", 10*time.Second, func(s engine.Snapshot) bool { return true })
	return d
}

// launchDaemon starts the daemon without waiting for its endpoint.
func launchDaemon(t *testing.T, argv []string, bind, stateDir string, env ...string) *daemon {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	d := &daemon{t: t, cmd: cmd, bind: bind, stateDir: stateDir, stderr: &lockedBuf{}, done: make(chan error, 1)}
	cmd.Stderr = d.stderr
	cmd.Stdout = d.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
		if t.Failed() {
			t.Logf("daemon output:\n%s", d.stderr.String())
		}
	})
	return d
}

func (d *daemon) health() (engine.Snapshot, error) {
	var s engine.Snapshot
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + d.bind + "/health")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

func (d *daemon) waitFor(what string, limit time.Duration, cond func(engine.Snapshot) bool) engine.Snapshot {
	d.t.Helper()
	deadline := time.Now().Add(limit)
	var last engine.Snapshot
	var lastErr error
	for time.Now().Before(deadline) {
		s, err := d.health()
		if err == nil && cond(s) {
			return s
		}
		last, lastErr = s, err
		time.Sleep(25 * time.Millisecond)
	}
	d.t.Fatalf("timed out after %v waiting for %s; last health %+v err %v", limit, what, last, lastErr)
	return last
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			d.t.Fatalf("daemon exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		d.t.Fatal("daemon did not stop within 10 s of SIGTERM")
	}
}

// kill9 kills the daemon the hard way.
func (d *daemon) kill9() {
	syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL)
	err := <-d.done
	d.done <- err
}

// journal reads the daemon's journal (its compact records expanded).
func readJournal(t *testing.T, stateDir string) []engine.Record {
	t.Helper()
	var recs []engine.Record
	if _, err := journal.Read(filepath.Join(stateDir, "journal.jsonl"), func(r engine.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

func writeFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// assertReplayMatches replays the journal a daemon wrote through the policy
// it ran (the same config, so the same hash) and checks that replay was
// faithful, found no divergence, and reports exactly the rung starts and
// pages the daemon journaled.
func assertReplayMatches(t *testing.T, cfgPath, policyDir, stateDir string, env ...string) {
	t.Helper()
	cmd := exec.Command(talonBin, "replay", stateDir, "--config", cfgPath, "--policy", policyDir, "--json")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("talon replay: %v\n%s", err, out)
	}
	var r engine.ReplayResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("replay output: %v\n%s", err, out)
	}
	if r.Mode != engine.ModeFaithful || len(r.Divergences) != 0 {
		t.Fatalf("replay of the daemon's own journal: mode %s (%s), %d divergences: %+v", r.Mode, r.ModeReason, len(r.Divergences), r.Divergences)
	}
	var journaled, replayed []string
	for _, rec := range readJournal(t, stateDir) {
		if e := rec.Event; e != nil {
			switch {
			case e.Type == "rung_start":
				journaled = append(journaled, "run "+e.Rung+" "+e.At.UTC().Format(time.RFC3339Nano))
			case e.Type == "rung_done" && len(e.Channels) > 0:
				journaled = append(journaled, "page "+e.Rung+" "+strings.Join(e.Channels, ",")+" "+e.At.UTC().Format(time.RFC3339Nano))
			}
		}
	}
	for _, st := range r.Timeline {
		switch st.Kind {
		case "rung":
			replayed = append(replayed, "run "+st.Rung+" "+st.At.UTC().Format(time.RFC3339Nano))
		case "page":
			replayed = append(replayed, "page "+st.Rung+" "+strings.Join(st.Channels, ",")+" "+st.At.UTC().Format(time.RFC3339Nano))
		}
	}
	if strings.Join(journaled, "\n") != strings.Join(replayed, "\n") {
		t.Fatalf("the daemon journaled:\n%s\nreplay reports:\n%s", strings.Join(journaled, "\n"), strings.Join(replayed, "\n"))
	}
}
