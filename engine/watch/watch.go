// Package watch reloads the policy when one of the files it was loaded from
// changes. It watches directories, not files, so editors that save by
// renaming a temp file over the original (vim, VS Code, sed -i) are seen,
// and a file deleted and recreated is picked up again.
package watch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/charmbracelet/log"
	"github.com/fsnotify/fsnotify"

	"github.com/talon-dev/talon/internal/fsperm"
)

// Options configure a Watcher.
type Options struct {
	// Files returns the files the current policy was loaded from (also after
	// a failed load: the files it read), plus the config and services files.
	Files func() []string
	// Dirs are directories watched whatever Files says (the policy directory).
	Dirs []string
	// Reload performs the reload; its outcome is logged by whoever owns it.
	Reload func(ctx context.Context) (string, error)
	// Debounce groups a burst of events into one reload.
	Debounce time.Duration
	Logger   *log.Logger
	// After starts the debounce timer (nil: time.After) and Retry ticks
	// the search for directories that did not exist (nil: every 5 s).
	// Tests drive both, so no test depends on how fast the machine is.
	After func(time.Duration) <-chan time.Time
	Retry <-chan time.Time
	// Trace, when set, hears what the watcher did, after it did it.
	Trace func(Trace)
}

// Trace is one thing the watcher did: "event" (a relevant file event armed
// the debounce), "ignored" (an event for a file no load read), "unchanged"
// (the debounce fired and the files were as before: no reload), "reload"
// (Reload returned), "retry" (missing directories were looked for).
type Trace struct {
	Kind string
	Path string // the file of an "event" or "ignored"
}

// Watcher is a running file watcher.
type Watcher struct {
	opts    Options
	fsw     *fsnotify.Watcher
	watched map[string]bool
	// seen holds every file any load read; they all join the digest.
	seen    map[string]bool
	missing map[string]bool // directories already reported as unwatchable
	digest  [32]byte
}

// New starts watching. Close it with the context given to Run.
func New(opts Options) (*Watcher, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = 50 * time.Millisecond
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Trace == nil {
		opts.Trace = func(Trace) {}
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &Watcher{opts: opts, fsw: fsw, watched: map[string]bool{}, seen: map[string]bool{}, missing: map[string]bool{}}
	w.refresh()
	w.remember()
	w.digest = w.contentDigest()
	return w, nil
}

// dirs returns the directories to watch: every directory holding a file the
// policy loaded, and the configured ones.
func (w *Watcher) dirs() map[string]bool {
	out := map[string]bool{}
	for _, d := range w.opts.Dirs {
		out[resolved(d)] = true
	}
	for _, f := range w.opts.Files() {
		out[resolved(filepath.Dir(f))] = true
	}
	return out
}

// resolved is dir with links resolved, so that one directory is watched
// once, under the name its events carry and the loaded files use.
func resolved(dir string) string {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return r
	}
	return filepath.Clean(dir)
}

// refresh brings the watched set in line with the current files and
// reports whether it added a directory. A directory that does not exist
// (yet) is retried at the next refresh.
func (w *Watcher) refresh() bool {
	want := w.dirs()
	added := false
	for d := range w.watched {
		if _, err := os.Stat(d); err != nil { // removed: its watch is gone too
			w.fsw.Remove(d)
			delete(w.watched, d)
		}
	}
	for d := range want {
		if w.watched[d] {
			continue
		}
		if err := w.fsw.Add(d); err != nil {
			if !w.missing[d] {
				w.missing[d] = true
				if errors.Is(err, fs.ErrNotExist) {
					// Normal on a fresh machine (no ~/.config/talon yet);
					// retried at every refresh.
					w.opts.Logger.Info("not watching a directory that does not exist yet", "dir", d)
				} else {
					w.opts.Logger.Warn("cannot watch directory; edits there need `talon reload`", "dir", d, "err", err)
				}
			}
			continue
		}
		delete(w.missing, d)
		w.watched[d] = true
		added = true
	}
	for d := range w.watched {
		if !want[d] {
			w.fsw.Remove(d)
			delete(w.watched, d)
		}
	}
	return added
}

// relevant reports whether an event path can change the policy: a file a
// load read, now or before (so the entry file deleted mid-edit, which a
// failed load cannot list, still counts when it comes back). A new file
// nobody loaded is ignored: the edit that makes a policy load it is an
// edit of a loaded file.
func (w *Watcher) relevant(path string) bool {
	w.remember()
	return w.seen[path]
}

// remember adds the current files to the set of files ever loaded.
func (w *Watcher) remember() {
	for _, f := range w.opts.Files() {
		w.seen[f] = true
	}
}

// contentDigest hashes the names, modes, owners and contents of the loaded
// files, so a burst that leaves them as they were (touch, an editor's backup
// dance) does not reload.
func (w *Watcher) contentDigest() [32]byte {
	set := map[string]bool{}
	for _, f := range w.opts.Files() {
		set[f] = true
	}
	for f := range w.seen {
		set[f] = true
	}
	files := make([]string, 0, len(set))
	for f := range set {
		files = append(files, f)
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		io.WriteString(h, f+"\x00")
		// Where a link points is part of it: re-pointing a linked policy
		// directory (a release switch) is an edit.
		if target, err := os.Readlink(f); err == nil {
			fmt.Fprintf(h, "\x01link %s\x00", target)
		}
		// Never a blocking open, and never read what is not a regular
		// file: a named pipe put in place of a watched file must not
		// wedge the watcher (the load refuses it and says why).
		fh, err := fsperm.OpenRegular(f)
		var special *fsperm.NotRegularError
		switch {
		case errors.As(err, &special):
			fmt.Fprintf(h, "\x01special %v", special.Mode)
		case err == nil:
			// Who may change a file is part of it (strict modes): a chmod
			// or chown that makes it safe, or unsafe, reloads too.
			if fi, err := fh.Stat(); err == nil {
				uid := -1
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					uid = int(st.Uid)
				}
				fmt.Fprintf(h, "%v %d\x00", fi.Mode(), uid)
			}
			io.Copy(h, io.LimitReader(fh, maxDigest))
			fh.Close()
		default:
			io.WriteString(h, "\x01missing")
		}
		io.WriteString(h, "\x00")
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}

// maxDigest bounds what is read of one file for the digest; the loader
// refuses larger policy, config and services files anyway.
const maxDigest = 2 << 20

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.fsw.Close()
	// Every event starts the debounce again: a burst is one reload, made
	// when the files have been quiet for Debounce.
	var fire <-chan time.Time
	arm := func() { fire = w.opts.After(w.opts.Debounce) }
	// force reloads even if the digest looks unchanged: a directory was
	// just added, and a file in it may have changed before it was watched.
	force := false
	// Directories that did not exist (a fresh ~/.config/talon, a policy
	// directory removed and recreated) are looked for again now and then.
	retry := w.opts.Retry
	if retry == nil {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		retry = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry:
			if w.refresh() {
				force = true
				arm()
			}
			w.opts.Trace(Trace{Kind: "retry"})
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return nil
			}
			if !w.relevant(ev.Name) {
				w.opts.Trace(Trace{Kind: "ignored", Path: ev.Name})
				continue
			}
			arm()
			w.opts.Trace(Trace{Kind: "event", Path: ev.Name})
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return nil
			}
			w.opts.Logger.Warn("file watcher error", "err", err)
		case <-fire:
			fire = nil
			d := w.contentDigest()
			if d == w.digest && !force {
				w.opts.Trace(Trace{Kind: "unchanged"})
				continue
			}
			force = false
			w.digest = d
			before := w.opts.Files()
			w.opts.Reload(ctx)
			// A new directory or a changed file list means a file may have
			// changed before it was watched or listed: look once more. (The
			// daemon skips a reload whose hash is unchanged.)
			if w.refresh() || !sameFiles(before, w.opts.Files()) {
				force = true
				arm()
			}
			w.opts.Trace(Trace{Kind: "reload"})
		}
	}
}

func sameFiles(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
