package builtins

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/star"
)

// TestStuckCallNotRepeated: a run-phase call that does not stop at its
// deadline returns anyway, and the function is not called again (each call
// would leave another goroutine behind).
func TestStuckCallNotRepeated(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	var calls atomic.Int32
	fn := starlark.NewBuiltin("wedge", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
		calls.Add(1)
		<-release
		return starlark.True, nil
	})
	rt := &runner{maxSteps: DefaultRunSteps, maxBytes: DefaultRunBytes}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := rt.call(ctx, fn, nil, &star.RunEnv{Ctx: ctx})
	want := "wedge did not stop within 500ms of its deadline: one operation keeps running; it was abandoned; it is not called again until the policy is reloaded"
	if err == nil || err.Error() != want {
		t.Fatalf("first call: %v\nwant %s", err, want)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	_, err = rt.call(ctx2, fn, nil, &star.RunEnv{Ctx: ctx2})
	if err == nil || !strings.Contains(err.Error(), "not called again") || calls.Load() != 1 {
		t.Fatalf("second call: %v after %d calls", err, calls.Load())
	}
}
