package engine

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/talon-dev/talon/engine/effect"
)

// Runner runs probes concurrently, each under its own deadline.
type Runner struct {
	Effects effect.Effects
	// Env is the environment of every child process (PATH from config).
	Env []string
	// Parallel bounds how many probes run at once; <= 0 runs all at once.
	Parallel int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sem, when set, is shared by every run of this runner's owner, so
	// Parallel bounds the daemon as a whole, not one batch.
	Sem chan struct{}
}

func (r *Runner) sem(n int) chan struct{} {
	if r.Sem != nil {
		return r.Sem
	}
	return make(chan struct{}, max(n, 1))
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Run runs probes concurrently and returns their results in the same order.
func (r *Runner) Run(ctx context.Context, probes []*Probe) []Result {
	out := make([]Result, len(probes))
	n := r.Parallel
	if n <= 0 || n > len(probes) {
		n = len(probes)
	}
	sem := r.sem(n)
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = r.RunOne(ctx, p)
		}()
	}
	wg.Wait()
	return out
}

// Stream runs probes concurrently and hands each result to emit as soon as
// its probe finishes; it returns when all have been emitted. emit is called
// from one goroutine at a time.
func (r *Runner) Stream(ctx context.Context, probes []*Probe, emit func(Result)) {
	n := r.Parallel
	if n <= 0 || n > len(probes) {
		n = len(probes)
	}
	sem := r.sem(n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			res := r.RunOne(ctx, p)
			<-sem
			mu.Lock()
			defer mu.Unlock()
			emit(res)
		}()
	}
	wg.Wait()
}

// RunOne runs one probe under its deadline, applies `expect`, and never
// panics: a panicking check is a failed result that says so.
func (r *Runner) RunOne(ctx context.Context, p *Probe) (res Result) {
	start := r.now()
	timeout := p.EffectiveTimeout()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res = Result{Name: p.Name, Critical: p.Critical, At: start, digest: p.Digest}
	defer func() {
		if v := recover(); v != nil {
			res.Passed = false
			res.Output = fmt.Sprintf("internal error in %s probe: %v\n%s", p.Kind, v, firstLines(string(debug.Stack()), 6))
		}
		res.DurationMS = r.now().Sub(start).Milliseconds()
	}()
	o := p.Check(cctx, &ProbeEnv{Effects: r.Effects, Env: r.Env, Probe: p})
	if cctx.Err() == context.DeadlineExceeded && !o.Passed && !o.TimedOut {
		o.TimedOut = true
		if o.Output == "" {
			o.Output = fmt.Sprintf("timeout after %s", timeout)
		}
	}
	res.Passed, res.Warning, res.Output, res.Detail, res.TimedOut = o.Passed, o.Warning, o.Output, o.Detail, o.TimedOut
	if res.Passed && p.Expect != nil {
		subject := o.Subject
		if subject == "" && !o.SubjectSet {
			subject = o.Output
		}
		if !p.Expect.Match(subject) {
			res.Passed = false
			res.Output = fmt.Sprintf("expected %s, got %s", p.Expect, quoteShort(subject))
		}
	}
	return res
}

func quoteShort(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%q", s)
}

func firstLines(s string, n int) string {
	count := 0
	for i, c := range s {
		if c == '\n' {
			count++
			if count == n {
				return s[:i]
			}
		}
	}
	return s
}
