package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

// Limits of the recovery prompt, in characters (runes).
const (
	DefaultMaxOutput = 800  // each failing probe's output
	MaxRungOutput    = 4000 // each earlier rung's output
	TailLines        = 120  // lines kept of each log tail
	MaxTail          = 4000 // characters kept of each log tail
)

// Viewer is what agent.prompt accepts as its incident: the loader's incident
// value implements it.
type Viewer interface {
	IncidentView() *engine.IncidentView
}

// PromptOptions are agent.prompt's keyword arguments.
type PromptOptions struct {
	Task         string // what to restore, in the user's words
	LogFile      string // Talon's log file
	WorkerStderr string // the worker's stderr log file
	MaxOutput    int    // characters of each failing probe's output; 0: DefaultMaxOutput
}

// Safety rules every recovery prompt ends with.
var safetyRules = []string{
	"Never recreate, reset or delete the cluster or its VM unless a person has explicitly approved it.",
	"Never delete persistent volumes, PersistentVolumeClaims or the data behind them.",
	"Never kill the SSH control socket (the ssh/Lima mux master) that you and Talon reach the VM through.",
	"Prefer the least destructive fix that works: restart one service before restarting many, and a service before a VM.",
	"If the only fix you can see is destructive, stop and report what you would do and why, without doing it.",
}

// Prompt writes Talon's recovery prompt for inc. It is deterministic for a
// given incident and files, and bounded: every part is truncated.
func Prompt(inc *engine.IncidentView, opts PromptOptions) string {
	if opts.MaxOutput <= 0 {
		opts.MaxOutput = DefaultMaxOutput
	}
	var b strings.Builder
	b.WriteString("You are the recovery agent of Talon, the watchdog daemon on this host. ")
	b.WriteString("Talon's probes keep failing and its scripted heal steps have not brought them back, so it is handing the problem to you. ")
	b.WriteString("Your goal: find out why the failing checks below fail and restore the service with safe shell commands, then say what you did.\n")
	if t := strings.TrimSpace(opts.Task); t != "" {
		fmt.Fprintf(&b, "\nWhat to restore: %s\n", t)
	}

	if inc != nil {
		fmt.Fprintf(&b, "\nIncident %s: open for %s, state %s.\n", inc.ID, inc.Age().Round(time.Second), inc.State)
		b.WriteString("\nFailing probes:\n")
		if len(inc.Failing) == 0 {
			b.WriteString("- none recorded\n")
		}
		for _, r := range inc.Failing {
			d := (time.Duration(r.DurationMS) * time.Millisecond).String()
			out := oneLine(head(strings.TrimSpace(r.Output), opts.MaxOutput))
			if out == "" {
				out = "(no output)"
			}
			crit := ""
			if r.Critical {
				crit = ", critical"
			}
			if r.TimedOut {
				crit += ", timed out"
			}
			fmt.Fprintf(&b, "- %s (%s%s): %s\n", r.Name, d, crit, out)
		}
		if len(inc.Passing) > 0 {
			names := make([]string, len(inc.Passing))
			for i, r := range inc.Passing {
				names[i] = r.Name
			}
			sort.Strings(names)
			fmt.Fprintf(&b, "\nStill passing: %s\n", strings.Join(names, ", "))
		}
		if rungs := ranRungs(inc); len(rungs) > 0 {
			b.WriteString("\nWhat Talon already tried, oldest first:\n")
			for _, name := range rungs {
				rec := inc.Rungs[name]
				result := "failed"
				if rec.LastOK {
					result = "succeeded but the probes still fail"
				}
				out := tail(strings.TrimSpace(rec.LastOutput), MaxRungOutput)
				if out == "" {
					out = "(no output)"
				}
				fmt.Fprintf(&b, "\n## %s (%d run(s), last %s at %s)\n%s\n", name, rec.Attempts, result,
					rec.LastRun.UTC().Format(time.RFC3339), out)
			}
		}
	}

	for _, f := range []struct{ title, path string }{
		{"Talon's log", opts.LogFile},
		{"The worker's stderr", opts.WorkerStderr},
	} {
		if f.path == "" {
			continue
		}
		fmt.Fprintf(&b, "\n%s (%s, last %d lines):\n%s\n", f.title, f.path, TailLines, tailFile(f.path))
	}

	b.WriteString("\nRules you must follow:\n")
	for _, r := range safetyRules {
		fmt.Fprintf(&b, "- %s\n", r)
	}
	b.WriteString("\nAct now. When you are done, reply with a short report: what was wrong, what you changed, and what still fails.\n")
	return b.String()
}

// ranRungs are the rungs that ran in this incident, oldest first.
func ranRungs(inc *engine.IncidentView) []string {
	var names []string
	for name, rec := range inc.Rungs {
		if rec.Attempts > 0 {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := inc.Rungs[names[i]], inc.Rungs[names[j]]
		if !a.LastRun.Equal(b.LastRun) {
			return a.LastRun.Before(b.LastRun)
		}
		return names[i] < names[j]
	})
	return names
}

// tailReadBytes is how much of the end of a log file is read to find its
// last lines; a log line longer than this is cut anyway.
const tailReadBytes = 256 << 10

// expandHome expands a leading "~/" as tailFile reads it.
func expandHome(path string) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return home + "/" + rest
		}
	}
	return path
}

// tailFile is the last TailLines lines of path, at most MaxTail characters,
// or a note saying why it could not be read.
func tailFile(path string) string {
	path = expandHome(path)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read it: %v)", unwrapPath(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read it: %v)", unwrapPath(err))
	}
	off := st.Size() - tailReadBytes
	if off < 0 {
		off = 0
	}
	data, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(cannot read it: %v)", unwrapPath(err))
	}
	s := strings.ToValidUTF8(strings.TrimRight(string(data), "\n"), "\uFFFD")
	if s == "" {
		return "(empty)"
	}
	lines := strings.Split(s, "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // the first line is probably cut
	}
	if len(lines) > TailLines {
		lines = lines[len(lines)-TailLines:]
	}
	return tail(strings.Join(lines, "\n"), MaxTail)
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// head keeps the first n runes of s, marking the cut.
func head(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + fmt.Sprintf(" …[%d more characters]", len(r)-n)
}

// tail keeps the last n runes of s, marking the cut.
func tail(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return fmt.Sprintf("[%d earlier characters]… ", len(r)-n) + string(r[len(r)-n:])
}

func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), " | ")
}

func promptBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		incident starlark.Value
		opts     = PromptOptions{MaxOutput: DefaultMaxOutput}
	)
	if len(args) > 1 {
		return nil, fmt.Errorf("%s: got %d positional arguments, want 1 (the others are keyword arguments)", b.Name(), len(args))
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "incident", &incident, "task??", &opts.Task,
		"log_file??", &opts.LogFile, "worker_stderr??", &opts.WorkerStderr, "max_output?", (*star.Count)(&opts.MaxOutput)); err != nil {
		return nil, err
	}
	v, ok := incident.(Viewer)
	if !ok {
		return nil, fmt.Errorf("%s: for parameter incident: want the incident handed to the prompt function, got %s", b.Name(), incident.Type())
	}
	if opts.MaxOutput <= 0 {
		return nil, fmt.Errorf("%s: max_output must be positive, got %d", b.Name(), opts.MaxOutput)
	}
	run, err := star.RunPhase(thread, b)
	if err != nil {
		return nil, fmt.Errorf("%s: can only be called while a rung runs (from a prompt or do= function)", b.Name())
	}
	// What goes into the prompt is what the agent is told to do: a log
	// file another user can write is their instructions to an agent that
	// runs as the daemon's user. Strict modes, as for the policy.
	for _, f := range []struct{ param, path string }{{"log_file", opts.LogFile}, {"worker_stderr", opts.WorkerStderr}} {
		if f.path == "" {
			continue
		}
		if err := run.Files.CheckPath(expandHome(f.path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %s: %v", b.Name(), f.param, err)
		}
	}
	return starlark.String(Prompt(v.IncidentView(), opts)), nil
}
