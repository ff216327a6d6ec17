package star

import (
	"fmt"

	"go.starlark.net/starlark"
)

// Effects returns the run environment of a run-phase thread that may perform
// side effects. Like RunPhase it fails while the policy loads, and it also
// fails inside a `when=` predicate or an agent.run prompt function (a RunEnv
// without Effects), which must be pure.
func Effects(thread *starlark.Thread, b *starlark.Builtin) (*RunEnv, error) {
	r, err := RunPhase(thread, b)
	if err != nil {
		return nil, err
	}
	if r.Effects == nil {
		return nil, fmt.Errorf("%s: when= predicates and prompt functions must be pure: they read the incident, never the world; do this in a probe.func or a do= function", b.Name())
	}
	return r, nil
}
