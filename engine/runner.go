package engine

import (
	"context"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/text"
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
			res.Output = fmt.Sprintf("internal error in %s probe: %v\n%s", p.Kind, v, text.FirstLines(string(debug.Stack()), 6))
		}
		res.DurationMS = r.now().Sub(start).Milliseconds()
		capResult(&res)
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
			res.Output = fmt.Sprintf("expected %s, got %s", p.Expect, text.Quote(subject, 200))
		}
	}
	return res
}

// Bounds of what a result keeps of what a probe said, whatever its kind
// (a probe.func can return any string; a command's streams are capped where
// they are read, a pair of them is twice that). Results are journaled every
// cycle, kept in the state file, shown on /health and quoted in pages.
const (
	MaxResultOutput = 16 << 10
	MaxDetail       = 32      // entries of Detail
	MaxDetailValue  = 1 << 10 // bytes of each Detail key and value
)

// capResult is the one place a result's text is bounded, at a character
// boundary, before anything stores, journals or sends it.
func capResult(res *Result) {
	if n := len(res.Output); n > MaxResultOutput {
		// Say so at the end, as a command's capped stream does.
		kept := text.Cap(res.Output, MaxResultOutput-64)
		res.Output = kept + fmt.Sprintf("\n[%d bytes of output dropped]", n-len(kept)+len(text.Mark))
	}
	if len(res.Detail) == 0 {
		return
	}
	keys := make([]string, 0, len(res.Detail))
	for k := range res.Detail {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	d := make(map[string]string, min(len(keys), MaxDetail))
	for _, k := range keys[:min(len(keys), MaxDetail)] {
		d[text.Cap(k, MaxDetailValue)] = text.Cap(res.Detail[k], MaxDetailValue)
	}
	res.Detail = d
}
