package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestResultsCapped: whatever a probe says — a probe.func can return megabytes
// — its result keeps at most MaxResultOutput bytes, cut at a character
// boundary, and a bounded Detail, before anything stores or sends it.
func TestResultsCapped(t *testing.T) {
	t.Parallel()
	detail := map[string]string{}
	for i := range 100 {
		detail[fmt.Sprintf("k%03d", i)] = strings.Repeat("v", 5000)
	}
	huge := strings.Repeat("é", 2<<20) // 4 MiB, two bytes a character
	p := &Probe{Name: "chatty", Kind: "func", Check: func(context.Context, *ProbeEnv) Outcome {
		return Outcome{Passed: false, Output: "x" + huge, Detail: detail}
	}}
	r := (&Runner{}).RunOne(context.Background(), p)
	kept, note, _ := strings.Cut(r.Output, "…\n")
	if len(r.Output) > MaxResultOutput || len(kept) < MaxResultOutput-100 || !utf8.ValidString(r.Output) ||
		note != fmt.Sprintf("[%d bytes of output dropped]", 1+len(huge)-len(kept)) {
		t.Fatalf("output of %d bytes (valid UTF-8 %v), ends %q", len(r.Output), utf8.ValidString(r.Output), r.Output[len(r.Output)-40:])
	}
	if len(r.Detail) != MaxDetail || len(r.Detail["k000"]) > MaxDetailValue || r.Detail["k099"] != "" {
		t.Fatalf("detail of %d entries, k000 %d bytes", len(r.Detail), len(r.Detail["k000"]))
	}

	// expect's message quotes the subject, cut the same way.
	m, _ := NewMatcher("substring", "ok")
	p.Expect = m
	p.Check = func(context.Context, *ProbeEnv) Outcome { return Outcome{Passed: true, Output: huge} }
	r = (&Runner{}).RunOne(context.Background(), p)
	if want := `expected "ok", got "` + strings.Repeat("é", 100) + `"…`; r.Output != want {
		t.Fatalf("expect message %q", r.Output)
	}
}
