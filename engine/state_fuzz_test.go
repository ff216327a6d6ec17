package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzLoadState feeds mutated state files to LoadState: a state or a
// one-line error naming the file, never a panic. A state it accepts must
// be one the decision core can run from (a start, failing and passing
// results, a wake, a rung's end, a channel's answer: no panic), and it
// saves and loads back the same (SaveState, LoadState).
func FuzzLoadState(f *testing.F) {
	pol := testPolicy([]*Probe{{Name: "a", Critical: true, After: 1}, {Name: "b", After: 2}}, heal(), sos(time.Minute, time.Hour))
	sim := NewSim(pol, t0, 30*time.Second, CoreOptions{})
	f.Add(mustJSON(f, sim.State()))
	sim.Set("a", true, "a is down")
	sim.Set("b", true, "b is down")
	for range 6 {
		sim.Run(time.Minute)
		f.Add(mustJSON(f, sim.State()))
	}
	sim.Restart()
	sim.Set("a", false, "")
	sim.Run(time.Minute)
	f.Add(mustJSON(f, sim.State()))
	f.Add([]byte(`{"version":1,"phase":"sos","probes":{"a":{"fails":1,"passes":0,"down":true,"digest":"d-a","downs":["0001-01-01T00:00:00Z"]}},"incident":{"id":"x","started":"9999-12-31T23:59:59Z","probes":["a","zz"],"position":99,"paged":["telegram:42"],"rungs":{"sos":{"pending":["telegram:42"]}},"running":"nope","settle":{"rung":"heal","until":"0001-01-01T00:00:00Z","every":-1}}}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, doc []byte) {
		path := filepath.Join(dir, "state.json")
		if err := os.WriteFile(path, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := LoadState(path)
		if err != nil {
			if errors.Is(err, ErrNoState) {
				t.Fatal("an existing file read as no state")
			}
			if msg := err.Error(); !strings.Contains(msg, path) || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error is not one line naming the file: %q", msg)
			}
			return
		}
		saved, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("a loaded state does not encode: %v", err)
		}
		// SaveState's encoding, without its fsyncs (the fuzzer would
		// measure the disk).
		indented, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(indented, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := LoadState(path)
		if err != nil {
			t.Fatalf("a loaded state, saved, does not load: %v", err)
		}
		if b, _ := json.Marshal(again); !bytes.Equal(b, saved) {
			t.Fatalf("round trip changed the state:\n%s\n%s", saved, b)
		}
		runFrom(t, pol, st)
	})
}

func mustJSON(f *testing.F, st *State) []byte {
	b, err := json.Marshal(st)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// runFrom starts a core from st and feeds it a few facts of each kind.
func runFrom(t *testing.T, pol *Policy, st *State) {
	c := NewCore(CoreOptions{})
	now := t0.Add(24 * time.Hour)
	ctx := context.Background()
	id := ""
	if st.Incident != nil {
		id = st.Incident.ID
	}
	c.Step(ctx, Fact{Kind: FactStart, At: now, Policy: pol, State: st})
	for i, passed := range []bool{false, false, true, false, true, true} {
		now = now.Add(time.Minute)
		c.Step(ctx, Fact{Kind: FactLaunch, At: now, Probes: []string{"a", "b"}})
		a, b := res("a", passed), res("b", passed)
		a.At, b.At = now, now
		c.Step(ctx, Fact{Kind: FactResults, At: now, Results: []Result{a, b}})
		if inc := c.State().Incident; inc != nil {
			id = inc.ID
		}
		switch i {
		case 1:
			c.Step(ctx, Fact{Kind: FactWake, At: now.Add(time.Hour)})
		case 3:
			c.Step(ctx, Fact{Kind: FactRungEnd, At: now, End: &RungEnd{Incident: id, Rung: "heal"}})
			c.Step(ctx, Fact{Kind: FactDelivery, At: now, Answer: &Answer{Kind: "sos", Incident: id, Rung: "sos",
				Delivery: Delivery{Channel: "telegram:42", OK: true}}})
		}
	}
}
