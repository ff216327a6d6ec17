// Package bound evaluates policy code within bounds: each load and each
// run-phase call (a probe.func, a when= predicate, a do= function) gets a
// step budget, a memory budget and a wall-clock deadline, and whatever the
// code does, the caller gets a value or an error in time — never a fatal
// out-of-memory, an unrecovered panic, or a call that outlives its deadline.
//
// go.starlark.net counts steps and can be cancelled between them, but it has
// no allocation accounting, and one step can allocate gigabytes
// ("x" * (1 << 29), list(range(1 << 40))) or run for hours (str() of a deeply
// nested list is quadratic; hashing a tuple that shares its elements is
// exponential). bound closes that gap without forking the interpreter, in
// three layers:
//
//  1. Rewrite: before a file is compiled, every construct that can build a
//     large value or do unbounded work in one step — binary operators,
//     augmented assignments, list, tuple and dict literals, comprehension
//     elements, slices, dict keys and indexes, *args and **kwargs, and the
//     costly methods of strings, lists, dicts and sets — is routed through a
//     hidden builtin that checks and charges its cost before it happens (see
//     rewrite.go). The hidden names contain '$', which no policy can spell.
//  2. Universe: the built-in functions that iterate or build (list, dict,
//     sorted, str, repr, print, fail, ...) are replaced by versions that do
//     the same with accounting; str, repr and % use a writer that charges its
//     output as it grows and whose cycle check is constant-time.
//  3. Deadline: every evaluation runs on its own goroutine; the thread is
//     cancelled at the deadline, and if one operation still has not returned
//     shortly after, the caller gets an error and the goroutine is abandoned.
//
// Costs are estimates of the bytes of the values built (refused before the
// allocation where the size is known in advance, counted as values are built
// otherwise) and of the work done (added to the thread's step counter), in
// the spirit of canonical/starlark's allocation accounting, which patches the
// interpreter itself to the same end.
package bound

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// Limits bound one evaluation.
type Limits struct {
	// Steps is the Starlark step budget; builtins add their own work to it.
	Steps uint64
	// Bytes is the budget of the values the evaluation may build, in bytes
	// (an estimate; garbage counts too).
	Bytes int64
	// Time is the wall-clock budget; 0 leaves only the context's deadline.
	Time time.Duration
}

// Grace is how long an evaluation may take to stop after its deadline
// before the caller stops waiting for it. The interpreter notices a
// cancellation at its next step and bound's builtins within a few thousand
// elements, so only an operation the rewrite does not reach can take longer.
const Grace = 500 * time.Millisecond

// Exceeded is the error of an evaluation that went over one of its bounds.
type Exceeded struct {
	// Bound is "memory", "steps" or "time".
	Bound string
	// Limit is the bound, for people: "64 MiB", "1000000 steps", "2s".
	Limit string
	// What was being attempted, when known: "list of 1099511627776 elements".
	What string
}

func (e *Exceeded) Error() string {
	var msg string
	switch e.Bound {
	case "memory":
		msg = "memory budget of " + e.Limit + " exhausted"
	case "steps":
		msg = "step budget of " + e.Limit + " exhausted"
	default:
		msg = "time budget of " + e.Limit + " exhausted"
	}
	if e.What != "" {
		msg += ": " + e.What
	}
	return msg
}

// Stuck is the error of an evaluation that did not stop within Grace of its
// deadline: one operation kept running. Its goroutine is abandoned.
type Stuck struct{ After time.Duration }

func (e *Stuck) Error() string {
	return fmt.Sprintf("did not stop within %s of its deadline: one operation keeps running; it was abandoned", e.After.Round(time.Millisecond))
}

// Panic is a Go panic inside an evaluation, recovered.
type Panic struct {
	Value any
	Stack string
}

func (e *Panic) Error() string { return fmt.Sprintf("internal error: %v", e.Value) }

const budgetKey = "talon.bound.budget"

// Budget is the account of one evaluation, kept on its thread.
type Budget struct {
	lim    Limits
	ctx    context.Context
	thread *starlark.Thread
	used   int64 // bytes charged; only the thread's goroutine touches it
	ticks  int   // calls of tick since the last context check
}

// From returns the budget of thread, or an error when the thread was not
// set up by Run: policy code never runs unaccounted.
func From(thread *starlark.Thread) (*Budget, error) {
	b, ok := thread.Local(budgetKey).(*Budget)
	if !ok {
		return nil, errors.New("internal error: policy code on a thread without an evaluation budget")
	}
	return b, nil
}

// Used is the number of bytes charged so far.
func (b *Budget) Used() int64 { return b.used }

// alloc charges n bytes for what (a description computed only on failure).
func (b *Budget) alloc(n int64, what func() string) error {
	if n < 0 || n > b.lim.Bytes-b.used {
		e := &Exceeded{Bound: "memory", Limit: Size(b.lim.Bytes), What: what()}
		b.thread.Cancel(e.Error())
		return e
	}
	b.used += n
	return nil
}

// work adds n steps of work done inside a builtin to the thread's counter.
func (b *Budget) work(n int64) error {
	if n < 0 {
		n = 0
	}
	b.thread.Steps += uint64(n)
	if b.lim.Steps > 0 && b.thread.Steps >= b.lim.Steps {
		e := &Exceeded{Bound: "steps", Limit: fmt.Sprintf("%d steps", b.lim.Steps)}
		b.thread.Cancel("too many steps")
		return e
	}
	return nil
}

// tick is called once per element by builtins that loop; every 1024 calls
// it checks the deadline, so a long loop inside a builtin stops in time.
func (b *Budget) tick() error {
	b.ticks++
	if b.ticks < 1024 {
		return nil
	}
	b.ticks = 0
	if err := b.work(1024); err != nil {
		return err
	}
	return b.done()
}

// done reports the end of the evaluation's context as an error.
func (b *Budget) done() error {
	if b.ctx.Err() == nil {
		return nil
	}
	return cancelled(b.ctx, b.lim)
}

func cancelled(ctx context.Context, lim Limits) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &Exceeded{Bound: "time", Limit: timeLimit(ctx, lim)}
	}
	return fmt.Errorf("cancelled: %v", context.Cause(ctx))
}

type startKey struct{}

// timeLimit names the wall-clock budget an evaluation had.
func timeLimit(ctx context.Context, lim Limits) string {
	if dl, ok := ctx.Deadline(); ok {
		if start, ok := ctx.Value(startKey{}).(time.Time); ok {
			d := dl.Sub(start)
			if d >= time.Second {
				return d.Round(10 * time.Millisecond).String()
			}
			return d.Round(time.Millisecond).String()
		}
	}
	if lim.Time > 0 {
		return lim.Time.String()
	}
	return "its deadline"
}

// Run evaluates eval on thread within lim and ctx: it puts a Budget on the
// thread, sets its step limit, cancels it when ctx ends or lim.Time passes,
// and runs eval on its own goroutine, recovering a panic. It returns eval's
// error, or a *Stuck error when eval has not returned Grace after the
// deadline (its goroutine is then abandoned, cancelled).
//
// Errors of the thread's interpreter about cancellation are turned back into
// the *Exceeded that caused them: errors.As finds it.
func Run(ctx context.Context, thread *starlark.Thread, lim Limits, eval func() error) error {
	if lim.Bytes <= 0 {
		lim.Bytes = 1 << 62
	}
	ctx = context.WithValue(ctx, startKey{}, time.Now())
	if lim.Time > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lim.Time)
		defer cancel()
	}
	b := &Budget{lim: lim, ctx: ctx, thread: thread}
	thread.SetLocal(budgetKey, b)
	if lim.Steps > 0 {
		thread.SetMaxExecutionSteps(lim.Steps)
	}
	if err := ctx.Err(); err != nil {
		return cancelled(ctx, lim)
	}
	stop := context.AfterFunc(ctx, func() { thread.Cancel(cancelled(ctx, lim).Error()) })
	defer stop()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- &Panic{Value: r, Stack: string(debug.Stack())}
			}
		}()
		done <- eval()
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		t := time.NewTimer(Grace)
		defer t.Stop()
		select {
		case err = <-done:
		case <-t.C:
			return &Stuck{After: Grace}
		}
	}
	return explain(err, ctx, lim)
}

// explain maps the interpreter's cancellation errors back to their cause.
func explain(err error, ctx context.Context, lim Limits) error {
	var ee *starlark.EvalError
	if err == nil || !errors.As(err, &ee) {
		return err
	}
	var ex *Exceeded
	if errors.As(err, &ex) {
		return err
	}
	reason, ok := strings.CutPrefix(ee.Msg, "Starlark computation cancelled: ")
	if !ok {
		return err
	}
	switch {
	case reason == "too many steps":
		return &cause{ee, &Exceeded{Bound: "steps", Limit: fmt.Sprintf("%d steps", lim.Steps)}}
	case strings.HasPrefix(reason, "memory budget of "):
		return &cause{ee, &Exceeded{Bound: "memory", Limit: Size(lim.Bytes)}}
	case ctx.Err() != nil:
		return &cause{ee, cancelled(ctx, lim)}
	}
	return err
}

// cause is an *starlark.EvalError (for its call stack) whose real cause is
// err: errors.As finds both.
type cause struct {
	*starlark.EvalError
	err error
}

func (c *cause) Error() string { return c.err.Error() }
func (c *cause) Unwrap() []error {
	return []error{c.EvalError, c.err}
}

// Size formats a byte count for people: "64 MiB", "16 TiB", "512 B".
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"} {
		f /= unit
		if f < unit {
			if f == float64(int64(f)) {
				return fmt.Sprintf("%d %s", int64(f), u)
			}
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.0f EiB", f)
}
