package effect

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// MarkerVar is set in the environment of every command Talon runs, with a
// value unique to that run, and is inherited by everything the command
// starts. A descendant that left the process group (setsid, a double fork)
// is still found by it when the command's time is up.
const MarkerVar = "TALON_EXEC_ID"

func newMarker() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Instance is one daemon — one state directory — as its commands carry it:
// the marker of every command it runs begins with the instance's prefix
// (`<prefix>-<random>`; the random part is what killTree looks for), and
// each command is recorded in the state directory while it is in flight.
// After a crash (kill -9) of the daemon, the next one of the same state
// directory finds by them what the dead one left running, and kills it
// (Sweep). Only the daemon has an Instance: the commands of `talon check`,
// `talon test` or `talon drill` carry a marker without a prefix, and no
// record, so no daemon ever takes them for its own.
type Instance struct {
	prefix string
	dir    string // the commands in flight: one empty file each, named by its marker
}

// RunningDir is the directory of the state directory where an Instance
// records its commands in flight.
const RunningDir = "running"

// NewInstance returns the instance of the daemon of stateDir, whose prefix
// is a hash of the directory's absolute, canonical path: the same after a
// restart, another for another state directory. The caller holds the state
// directory's lock.
func NewInstance(stateDir string) (*Instance, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	sum := sha256.Sum256([]byte(abs))
	in := &Instance{prefix: hex.EncodeToString(sum[:6]), dir: filepath.Join(abs, RunningDir)}
	if err := os.MkdirAll(in.dir, 0o700); err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	return in, nil
}

// Prefix is what the marker of each of the instance's commands begins with,
// before a "-".
func (in *Instance) Prefix() string { return in.prefix }

// marker is a new run marker: of the instance when there is one.
func (in *Instance) marker() string {
	if in == nil {
		return newMarker()
	}
	return in.prefix + "-" + newMarker()
}

// begin records a command as in flight, before it starts. A record that
// cannot be written costs only the sweep of that command after a crash:
// the command runs all the same.
func (in *Instance) begin(marker string) {
	if in == nil {
		return
	}
	if f, err := os.OpenFile(filepath.Join(in.dir, marker), os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		f.Close()
	}
}

// end forgets a command once it and whatever was to die with it are gone.
// What it started to outlive it (a daemon a heal started: KeepGroup) is no
// longer in flight: a sweep after a crash leaves it alone.
func (in *Instance) end(marker string) {
	if in == nil {
		return
	}
	os.Remove(filepath.Join(in.dir, marker))
}

// inFlight lists the markers recorded as in flight. Other names (a file an
// operator put there) are not markers of this instance and are ignored.
func (in *Instance) inFlight() (map[string]bool, error) {
	ents, err := os.ReadDir(in.dir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range ents {
		if rest, ok := strings.CutPrefix(e.Name(), in.prefix+"-"); ok && rest != "" && !strings.ContainsAny(rest, "-/") {
			out[e.Name()] = true
		}
	}
	return out, nil
}

// markerIn reports whether the environment block env (NUL-separated
// NAME=value entries, as /proc/PID/environ and kern.procargs2 give it)
// has MarkerVar set to a value in markers. An entry matches only as a
// whole: the name exactly MarkerVar, the value exactly a marker.
func markerIn(env []byte, markers map[string]bool) (string, bool) {
	const name = MarkerVar + "="
	for len(env) > 0 {
		kv := env
		if i := bytes.IndexByte(env, 0); i >= 0 {
			kv, env = env[:i], env[i+1:]
		} else {
			env = nil
		}
		if len(kv) > len(name) && string(kv[:len(name)]) == name {
			if v := string(kv[len(name):]); markers[v] {
				return v, true
			}
		}
	}
	return "", false
}

// children are the pids of the processes Talon started itself and whose
// exit status one of its own Wait calls collects. The reaper (Subreaper)
// leaves them alone: it reaps only orphans that were reparented to Talon.
// It is process-wide because the kernel's subreaper attribute is.
var children = struct {
	sync.Mutex
	pids map[int]int
}{pids: map[int]int{}}

// StartChild starts cmd and records its pid before any reaper can run, so
// that its exit status is left for WaitChild. Every child process of Talon
// is started through it.
func StartChild(cmd *exec.Cmd) error {
	children.Lock()
	defer children.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	children.pids[cmd.Process.Pid]++
	return nil
}

// WaitChild waits for a child started by StartChild and forgets its pid.
func WaitChild(cmd *exec.Cmd) error {
	err := cmd.Wait()
	children.Lock()
	defer children.Unlock()
	pid := cmd.Process.Pid
	if children.pids[pid]--; children.pids[pid] <= 0 {
		delete(children.pids, pid)
	}
	return err
}

func ownChild(pid int) bool { return children.pids[pid] > 0 }
