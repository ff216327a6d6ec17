package engine

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
)

// A kill -9 between creating the temp file of a state save and renaming it
// leaves .state.json.tmp-*: the next start removes those, and nothing else.
func TestStartRemovesStaleStateTemps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := SaveState(path, NewState(time.Now())); err != nil {
		t.Fatal(err)
	}
	var stale []string
	for range 3 {
		f, err := os.CreateTemp(dir, tempPattern(path)) // as WriteFileAtomic does
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(`{"version": 1, "pha`) // cut mid-write
		f.Close()
		stale = append(stale, filepath.Base(f.Name()))
	}
	keep := []string{"journal.jsonl", ".journal.jsonl.tmp-1", "state.json.tmp-1", "state.json"}
	for _, k := range keep[:3] {
		os.WriteFile(filepath.Join(dir, k), []byte("x"), 0o600)
	}
	os.Mkdir(filepath.Join(dir, ".state.json.tmp-dir"), 0o700) // not a file WriteFileAtomic made

	d := New(Options{StateFile: path, Load: func() *LoadResult { return &LoadResult{Policy: &Policy{Hash: "h", Thresholds: DefaultThresholds()}} },
		Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-d.Ready()
	cancel()
	<-done

	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	for _, s := range stale {
		if slices.Contains(names, s) {
			t.Errorf("stale temp file %s is still there", s)
		}
	}
	for _, k := range append(keep, ".state.json.tmp-dir") {
		if !slices.Contains(names, k) {
			t.Errorf("%s was removed", k)
		}
	}
	if _, err := LoadState(path); err != nil {
		t.Fatalf("state after start: %v", err)
	}
}
