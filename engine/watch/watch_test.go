package watch

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charmbracelet/log"
)

type rig struct {
	t       *testing.T
	dir     string
	files   atomic.Pointer[[]string]
	reloads atomic.Int32
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, dir: t.TempDir()}
	r.write("talon.star", "v1")
	r.setFiles("talon.star")
	w, err := New(Options{Files: func() []string { return *r.files.Load() }, Dirs: []string{r.dir},
		Reload:   func(context.Context) (string, error) { r.reloads.Add(1); return "", nil },
		Debounce: 30 * time.Millisecond, Logger: log.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go w.Run(ctx)
	return r
}

func (r *rig) setFiles(names ...string) {
	var fs []string
	for _, n := range names {
		fs = append(fs, filepath.Join(r.dir, n))
	}
	r.files.Store(&fs)
}

func (r *rig) write(name, body string) {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// settle waits past the debounce and returns the reload count.
func (r *rig) settle() int32 {
	time.Sleep(250 * time.Millisecond)
	return r.reloads.Load()
}

func TestBurstIsOneReload(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	for i := 0; i < 10; i++ {
		r.write("talon.star", "v"+string(rune('a'+i)))
	}
	if n := r.settle(); n != 1 {
		t.Fatalf("a burst of 10 writes made %d reloads", n)
	}
}

func TestUnchangedContentDoesNotReload(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write("talon.star", "v1") // same bytes
	now := time.Now()
	os.Chtimes(filepath.Join(r.dir, "talon.star"), now, now)
	if n := r.settle(); n != 0 {
		t.Fatalf("rewriting identical content reloaded %d times", n)
	}
}

func TestUnloadedFilesAreIgnored(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write("notes.txt", "x")
	r.write("scratch.star", "not loaded by anyone")
	if n := r.settle(); n != 0 {
		t.Fatalf("files nobody loaded caused %d reloads", n)
	}
}

func TestRenameOverIsSeen(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write(".talon.star.swp", "v2")
	if err := os.Rename(filepath.Join(r.dir, ".talon.star.swp"), filepath.Join(r.dir, "talon.star")); err != nil {
		t.Fatal(err)
	}
	if n := r.settle(); n != 1 {
		t.Fatalf("rename over the entry file: %d reloads", n)
	}
}

func TestNewDirectoryIsWatchedAfterReload(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write("lib/a.star", "x")
	r.setFiles("talon.star", "lib/a.star")
	r.write("talon.star", "v2 loads lib/a.star")
	n := r.settle() // the reload, plus one forced look after the new directory
	if n < 1 {
		t.Fatal("edit not seen")
	}
	r.write("lib/a.star", "y")
	if m := r.settle(); m <= n {
		t.Fatalf("an edit in a newly watched directory was not seen (%d → %d)", n, m)
	}
}
