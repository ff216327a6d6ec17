// Package effect puts every side effect Talon performs behind one interface,
// so that the engine never branches on "dry run" or "replay": it is handed a
// Live, Recorder, or Fake implementation and calls it the same way.
package effect

import (
	"context"
	"net"
	"net/http"
	"time"
)

// Effects is the whole surface through which probes and actions touch the
// world: child processes, HTTP requests and raw connections.
type Effects interface {
	// Exec runs a child process in its own process group. It never returns
	// later than the context's deadline plus the command's grace period.
	Exec(ctx context.Context, c Command) ExecResult
	// Do sends an HTTP request; the request's context bounds it.
	Do(req *http.Request) (*http.Response, error)
	// Dial opens a network connection.
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
}

// Command describes one child process.
type Command struct {
	Argv []string
	Dir  string
	// Env is the complete environment of the child. Its PATH is also the
	// one used to resolve Argv[0], never the parent's.
	Env []string
	// Stdin, when non-nil, is written to the child concurrently with its run.
	Stdin []byte
	// MaxOutput caps the bytes kept of stdout and of stderr (each); the rest is
	// read and discarded so the child never blocks on a full pipe.
	// Zero means DefaultMaxOutput.
	MaxOutput int
	// Grace is how long the process group gets between SIGTERM and SIGKILL
	// when the context ends. Zero means SIGKILL at once (probes).
	Grace time.Duration
	// KeepGroup leaves processes the command started in the background alive
	// after the leader exits (heal scripts that start daemons). Without it the
	// whole group is killed as soon as the leader exits, so a probe never
	// leaves an orphan behind.
	KeepGroup bool
	// Drain is how long output is still read after the leader exited by
	// itself, for a descendant (a daemon a heal started) that holds the
	// pipes; never past the deadline. Zero means 500 ms. After a kill at the
	// deadline nothing is waited for: the result is final then.
	Drain time.Duration
}

// DefaultMaxOutput is the number of bytes of each stream kept by default.
const DefaultMaxOutput = 64 << 10

// ExecResult is what became of a Command.
type ExecResult struct {
	ExitCode  int // -1 when the process did not exit normally
	Stdout    string
	Stderr    string
	Truncated bool
	TimedOut  bool  // the context ended before the process did
	Err       error // the process could not be started
	Duration  time.Duration
}

// OK reports whether the command ran and exited 0.
func (r ExecResult) OK() bool { return r.Err == nil && !r.TimedOut && r.ExitCode == 0 }
