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

	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

// rig runs a Watcher whose debounce timer and retry ticker the test drives:
// nothing in these tests depends on how fast the machine is. The kernel's
// events arrive in order, so after an edit the test writes a marker file no
// load read and waits for the watcher to ignore it: by then it has seen
// every event of the edit.
type rig struct {
	t       *testing.T
	dir     string
	files   atomic.Pointer[[]string]
	reloads atomic.Int32
	timers  chan chan time.Time // each debounce the watcher armed, in order
	retry   chan time.Time
	traces  chan Trace
	markers int
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, dir: t.TempDir(), timers: make(chan chan time.Time, 10000), retry: make(chan time.Time), traces: make(chan Trace, 10000)}
	r.write("talon.star", "v1")
	r.setFiles("talon.star")
	w, err := New(Options{Files: func() []string { return *r.files.Load() }, Dirs: []string{r.dir},
		Reload: func(context.Context) (string, error) { r.reloads.Add(1); return "", nil },
		After: func(time.Duration) <-chan time.Time {
			c := make(chan time.Time, 1)
			r.timers <- c
			return c
		},
		Retry: r.retry, Trace: func(tr Trace) { r.traces <- tr }, Logger: log.New(io.Discard)})
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

// next waits for the watcher's next trace of one of kinds, skipping others.
func (r *rig) next(kinds ...string) Trace {
	r.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case tr := <-r.traces:
			for _, k := range kinds {
				if tr.Kind == k {
					return tr
				}
			}
		case <-timeout:
			r.t.Fatalf("the watcher never reported %v", kinds)
		}
	}
}

// sync returns once the watcher has seen every event so far, in dir (the
// rig's directory when ""): it writes a file no load read there and waits
// for the watcher to ignore it.
func (r *rig) sync(dir string) {
	r.t.Helper()
	if dir == "" {
		dir = r.dir
	}
	r.markers++
	marker := filepath.Join(dir, "marker-"+string(rune('a'+r.markers%26))+".txt")
	if err := os.WriteFile(marker, []byte{byte(r.markers)}, 0o644); err != nil {
		r.t.Fatal(err)
	}
	for {
		if tr := r.next("ignored"); tr.Path == marker {
			return
		}
	}
}

// armed returns the debounce timers armed since the last call.
func (r *rig) armed() []chan time.Time {
	var out []chan time.Time
	for {
		select {
		case c := <-r.timers:
			out = append(out, c)
		default:
			return out
		}
	}
}

// fire lets the last armed debounce expire and waits for the watcher to
// act on it: it returns "reload" or "unchanged".
func (r *rig) fire() string {
	r.t.Helper()
	ts := r.armed()
	if len(ts) == 0 {
		r.t.Fatal("no debounce is armed: the edit was not seen")
	}
	ts[len(ts)-1] <- time.Now()
	return r.next("reload", "unchanged").Kind
}

func TestBurstIsOneReload(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	for i := 0; i < 10; i++ {
		r.write("talon.star", "v"+string(rune('a'+i)))
	}
	r.sync("")
	if got := r.fire(); got != "reload" {
		t.Fatalf("the burst's debounce fired: %s", got)
	}
	r.sync("")
	if n, left := r.reloads.Load(), len(r.armed()); n != 1 || left != 0 {
		t.Fatalf("a burst of 10 writes made %d reloads and left %d debounces armed", n, left)
	}
}

func TestUnchangedContentDoesNotReload(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write("talon.star", "v1") // same bytes
	now := time.Now()
	os.Chtimes(filepath.Join(r.dir, "talon.star"), now, now)
	r.sync("")
	if got := r.fire(); got != "unchanged" || r.reloads.Load() != 0 {
		t.Fatalf("rewriting identical content: %s, %d reloads", got, r.reloads.Load())
	}
}

func TestUnloadedFilesAreIgnored(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write("notes.txt", "x")
	r.write("scratch.star", "not loaded by anyone")
	r.sync("")
	if n := len(r.armed()); n != 0 {
		t.Fatalf("files nobody loaded armed the debounce %d times", n)
	}
}

func TestRenameOverIsSeen(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write(".talon.star.swp", "v2")
	if err := os.Rename(filepath.Join(r.dir, ".talon.star.swp"), filepath.Join(r.dir, "talon.star")); err != nil {
		t.Fatal(err)
	}
	r.sync("")
	if got := r.fire(); got != "reload" {
		t.Fatalf("rename over the entry file: %s", got)
	}
}

func TestNewDirectoryIsWatchedAfterReload(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.write("lib/a.star", "x")
	r.setFiles("talon.star", "lib/a.star")
	r.write("talon.star", "v2 loads lib/a.star")
	r.sync("")
	if got := r.fire(); got != "reload" {
		t.Fatalf("edit: %s", got)
	}
	// The new file list added a directory: the watcher looks once more,
	// whatever the digest says, for an edit made before it watched there.
	if got := r.fire(); got != "reload" {
		t.Fatalf("the look after a new directory: %s", got)
	}
	r.write("lib/a.star", "y")
	if tr := r.next("event"); tr.Path != filepath.Join(r.dir, "lib/a.star") {
		t.Fatalf("event for %s", tr.Path)
	}
	r.sync(filepath.Join(r.dir, "lib"))
	if got := r.fire(); got != "reload" || r.reloads.Load() != 3 {
		t.Fatalf("an edit in a newly watched directory: %s, %d reloads", got, r.reloads.Load())
	}
}

// TestMissingDirectoryIsWatchedOnceItExists: a directory that did not exist
// is looked for at each retry tick, and once it exists the watcher reloads
// whatever the digest says.
func TestMissingDirectoryIsWatchedOnceItExists(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.setFiles("talon.star", "later/services.toml")
	r.retry <- time.Now() // not there yet: nothing to do
	r.next("retry")
	r.sync("")
	if n := len(r.armed()); n != 0 {
		t.Fatalf("a missing directory armed %d debounces", n)
	}
	r.write("later/services.toml", "[script.a]\ncommand = \"true\"\n")
	r.retry <- time.Now()
	r.next("retry")
	if got := r.fire(); got != "reload" {
		t.Fatalf("after the directory appeared: %s", got)
	}
	r.write("later/services.toml", "[script.b]\ncommand = \"true\"\n")
	r.sync(filepath.Join(r.dir, "later"))
	if got := r.fire(); got != "reload" {
		t.Fatalf("an edit in the new directory: %s", got)
	}
}

// TestNamedPipeDoesNotWedgeTheWatcher: a FIFO put in place of a loaded
// file is noticed (and handed to the load, which refuses it) without ever
// being opened for a blocking read; the real file coming back reloads again.
func TestNamedPipeDoesNotWedgeTheWatcher(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	entry := filepath.Join(r.dir, "talon.star")
	if err := os.Remove(entry); err != nil {
		t.Fatal(err)
	}
	fspermtest.Mkfifo(t, entry)
	r.sync("")
	if got := r.fire(); got != "reload" {
		t.Fatalf("a FIFO in place of the entry file: %s", got)
	}
	os.Remove(entry)
	r.write("talon.star", "v2")
	r.sync("")
	if got := r.fire(); got != "reload" || r.reloads.Load() != 2 {
		t.Fatalf("the file back: %s, %d reloads", got, r.reloads.Load())
	}
}

// TestRepointedLinkReloads: a policy directory reached through a link that
// is switched to another release reloads, though no file in either
// directory changed.
func TestRepointedLinkReloads(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	for _, rel := range []string{"v1", "v2"} {
		r.write("releases/"+rel+"/talon.star", "same")
	}
	link := filepath.Join(r.dir, "current")
	if err := os.Symlink("releases/v1", link); err != nil {
		t.Fatal(err)
	}
	r.setFiles("current", "releases/v1/talon.star")
	r.sync("")
	r.armed()
	tmp := filepath.Join(r.dir, "current.new")
	if err := os.Symlink("releases/v2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	r.sync("")
	if got := r.fire(); got != "reload" {
		t.Fatalf("re-pointing the link: %s", got)
	}
}
