package effect

import (
	"context"
	"testing"
)

// What recording a command in flight (the daemon's Instance) adds to a
// run of `true`: compare the two sub-benchmarks of one run.
func BenchmarkExecRecorded(b *testing.B) {
	in, err := NewInstance(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		in   *Instance
	}{{"plain", nil}, {"instance", in}} {
		b.Run(bc.name, func(b *testing.B) {
			l := NewLive()
			l.Instance = bc.in
			for b.Loop() {
				if r := l.Exec(context.Background(), Command{Argv: []string{"true"}, Env: testEnv}); !r.OK() {
					b.Fatal(r)
				}
			}
		})
	}
}
