// Package journal is Talon's append-only record of what it saw and did: one
// JSON object per line (an engine.Record), in journal.jsonl in the state
// directory, rotated by size into a bounded number of generations. It is the
// input of `talon replay`; the format is documented in docs/journal.md.
//
// Writing: every line is encoded completely first and handed to the kernel
// with a single write(2) on a file opened O_APPEND, under a mutex, so lines
// from concurrent Append calls never interleave. A failed or short write is
// cut back off the file, so the journal never holds half a line followed by
// whole ones. Durability is explicit: the daemon calls Sync after each cycle.
//
// Reading is strict: a line that is not one well-formed record is an error
// that names file:line. The one exception is a crash in the middle of a
// write, which leaves the newest file ending in a partial line; Read reports
// it as a Warning and goes on. Open cuts such a partial line off before
// appending, so it can never end up in the middle of a file.
package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/fsperm"
)

// Defaults for Options.
const (
	DefaultMaxBytes int64 = 16 << 20 // 16 MiB per file
	DefaultKeep           = 5        // the bound is the live file and this many uncompressed generations
)

// FileName is the journal's name inside the state directory.
const FileName = "journal.jsonl"

// Path is the journal inside a state directory.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// ErrClosed is returned by Append and Sync after Close.
var ErrClosed = errors.New("journal is closed")

// Options bound the journal's size on disk.
type Options struct {
	// MaxBytes is the largest a journal file may grow; a line that would take
	// the live file past it first rotates the file. 0 means DefaultMaxBytes.
	MaxBytes int64
	// Keep sets the bound on disk, MaxBytes × (Keep+1): the live file and
	// Keep rotated generations of MaxBytes. Rotated generations are
	// compressed, so more of them fit: the oldest are deleted when the
	// bound would not hold. 0 or less means DefaultKeep.
	Keep int
}

// MaxGenerations caps the number of rotated generations, whatever fits.
const MaxGenerations = 1000

func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	return o
}

// Bound is the most bytes the journal occupies on disk: the live file
// plus the rotated generations (Keep of them uncompressed; more once
// compressed). While a generation is being compressed, its compressed copy
// is there too, for a moment.
func (o Options) Bound() int64 {
	o = o.withDefaults()
	return o.MaxBytes * int64(o.Keep+1)
}

// Journal appends records to a size-bounded, rotated JSON-lines file. It is
// safe for concurrent use.
type Journal struct {
	path string
	opts Options

	mu       sync.Mutex
	f        *os.File
	size     int64
	repaired int64
	codec    codec // what the live file said so far, for compact records

	// gens is held while rotated generations are moved or compressed.
	gens sync.Mutex
	// kick asks the compressor to compress the plain generations; done
	// is closed when it has stopped (after Close).
	kick chan struct{}
	done chan struct{}
	// onRotate is called once a rotation started a new file (OnRotate).
	onRotate func(next engine.Record) []engine.Record
}

// OnRotate sets f, called from the Append that rotated the journal once
// the new file is open, with the record about to be written: the records
// f returns are written first. The daemon puts a checkpoint there, so that
// the file replays on its own once the earlier ones are rotated away. f
// must not call the journal.
func (j *Journal) OnRotate(f func(next engine.Record) []engine.Record) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.onRotate = f
}

// Open opens the journal at path for appending, creating it (and its
// directory) if needed. If the file ends in a partial line — the daemon died
// in the middle of a write — that fragment is cut off first; Repaired says
// how many bytes went.
func Open(path string, opts Options) (*Journal, error) {
	j := &Journal{path: path, opts: opts.withDefaults()}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := j.open(); err != nil {
		return nil, err
	}
	j.kick, j.done = make(chan struct{}, 1), make(chan struct{})
	go j.compressor()
	// Finish what a previous process left: a generation rotated but not
	// compressed yet (its partial .gz.tmp, if any, is removed).
	j.compressLater()
	return j, nil
}

func (j *Journal) open() error {
	// Never through a link: one could aim the appends at any file.
	f, err := fsperm.OpenPrivate(j.path, os.O_RDWR|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open journal: %w", err)
	}
	size := fi.Size()
	if size > 0 {
		keep, err := completeLength(f, size)
		if err != nil {
			f.Close()
			return fmt.Errorf("open journal: %w", err)
		}
		if keep < size {
			if err := f.Truncate(keep); err != nil {
				f.Close()
				return fmt.Errorf("open journal: cut partial last line: %w", err)
			}
			j.repaired += size - keep
			size = keep
		}
	}
	j.f, j.size = f, size
	return nil
}

// completeLength returns the length of the file's prefix that ends with a
// newline: everything after the last '\n' is a partial line.
func completeLength(r io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 32<<10)
	end := size
	for end > 0 {
		n := min(int64(len(buf)), end)
		start := end - n
		if _, err := r.ReadAt(buf[:n], start); err != nil && err != io.EOF {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// Path returns the live file's path.
func (j *Journal) Path() string { return j.path }

// Repaired is the number of bytes of a partial last line that Open cut off.
func (j *Journal) Repaired() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.repaired
}

// Append writes r as one line. When the line would take the live file past
// MaxBytes, the file is rotated first. A record whose line alone exceeds
// MaxBytes is refused, so the bound always holds.
func (j *Journal) Append(r engine.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return ErrClosed
	}
	w, commit := j.codec.encode(r)
	line, err := marshal(w)
	if err != nil {
		return err
	}
	if j.size > 0 && j.size+int64(len(line)) > j.opts.MaxBytes {
		if err := j.rotate(); err != nil {
			return err
		}
		// A new file starts from nothing: its records stand on their own.
		w, commit = j.codec.encode(r)
		if line, err = marshal(w); err != nil {
			return err
		}
		if j.onRotate != nil {
			for _, x := range j.onRotate(r) {
				if err := j.write(x, int64(len(line))); err != nil {
					return err
				}
			}
		}
	}
	if int64(len(line)) > j.opts.MaxBytes {
		return fmt.Errorf("journal: %s record of %d bytes exceeds the %d-byte file limit", r.Type, len(line), j.opts.MaxBytes)
	}
	if err := j.writeLine(line); err != nil {
		return err
	}
	commit()
	return nil
}

// write appends r at the start of a new file, leaving room for reserve
// more bytes; a record that does not fit is left out.
func (j *Journal) write(r engine.Record, reserve int64) error {
	line, err := Marshal(r)
	if err != nil {
		return err
	}
	if j.size+int64(len(line))+reserve > j.opts.MaxBytes {
		return nil
	}
	return j.writeLine(line)
}

// writeLine appends one encoded line to the live file. A failed or short
// write is cut off again: no fragment is left for the next line to run into.
func (j *Journal) writeLine(line []byte) error {
	n, err := j.f.Write(line)
	if err == nil && n != len(line) {
		err = io.ErrShortWrite
	}
	if err != nil {
		if terr := j.f.Truncate(j.size); terr != nil {
			err = errors.Join(err, fmt.Errorf("cut partial line: %w", terr))
		}
		return fmt.Errorf("journal append: %w", err)
	}
	j.size += int64(n)
	return nil
}

// Marshal encodes r as one journal line, newline included, in full (the
// plain encoding, which needs no earlier line: `talon journal cut` writes
// it). Strings are written as UTF-8 (invalid bytes become U+FFFD) without
// HTML escaping.
func Marshal(r engine.Record) ([]byte, error) { return marshal(&wire{Record: r}) }

func marshal(w *wire) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil { // Encode appends the '\n'
		return nil, fmt.Errorf("journal: encode %s record: %w", w.Type, err)
	}
	return b.Bytes(), nil
}

// rotate shifts path.(Keep-1) … path.1 up one, path to path.1, and starts a
// new live file. Called with j.mu held.
func (j *Journal) rotate() error {
	j.codec.reset()
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal rotate: %w", err)
	}
	if err := j.f.Close(); err != nil {
		return fmt.Errorf("journal rotate: %w", err)
	}
	j.f = nil
	// The compressor must not move files under us, nor we under it.
	j.gens.Lock()
	unlock := lockDir(filepath.Dir(j.path), syscall.LOCK_EX)
	err := j.shift()
	unlock()
	j.gens.Unlock()
	if err != nil {
		return j.reopen(fmt.Errorf("journal rotate: %w", err))
	}
	syncDir(filepath.Dir(j.path))
	if err := j.reopen(nil); err != nil {
		return err
	}
	j.compressLater()
	return nil
}

// shift moves every generation up one, plain or compressed, and the live
// file to path.1. Called with j.gens held.
func (j *Journal) shift() error {
	// Which generations stay: the newest, as many as fit beside the live
	// file (soon to be path.1, with its size now) in what the bound
	// leaves once a new live file has grown to MaxBytes. Plain ones take
	// MaxBytes each, so Keep of them stay; compressed ones take about a
	// tenth, so more do. The rest go, and any beyond MaxGenerations.
	budget := j.opts.Bound() - j.opts.MaxBytes
	used := j.size
	sizes := map[int]int64{}
	for _, g := range generations(j.path) {
		sizes[g.n] += g.size // both forms, while one is being compressed
	}
	keep := 0
	for n := 1; n < MaxGenerations; n++ {
		if size, ok := sizes[n]; !ok || used+size > budget {
			break
		}
		used += sizes[n]
		keep = n
	}
	for _, g := range generations(j.path) {
		if g.n > keep {
			if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	for i := keep; i >= 1; i-- {
		for _, ext := range []string{"", gzExt} {
			if err := os.Rename(gen(j.path, i)+ext, gen(j.path, i+1)+ext); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return os.Rename(j.path, gen(j.path, 1))
}

// reopen opens the live file again after a rotation (or a failed one, so
// that appends keep working) and returns cause, or the open error.
func (j *Journal) reopen(cause error) error {
	j.size = 0
	if err := j.open(); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Sync flushes the live file to stable storage. The daemon calls it once per
// cycle rather than once per line.
func (j *Journal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return ErrClosed
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal sync: %w", err)
	}
	return nil
}

// Close syncs and closes the journal, after the compression of a rotated
// generation that is under way. Further appends return ErrClosed.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.f == nil {
		j.mu.Unlock()
		return nil
	}
	err := j.f.Sync()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.f = nil
	close(j.kick)
	j.mu.Unlock()
	<-j.done
	if err != nil {
		return fmt.Errorf("journal close: %w", err)
	}
	return nil
}

func gen(path string, n int) string { return path + "." + strconv.Itoa(n) }

type generation struct {
	n    int
	path string
	gz   bool // compressed: path ends in .gz
	size int64
}

// generations lists the rotated files path.N and path.N.gz (N ≥ 1) that
// exist, in no particular order; both forms of one N can be there for a
// moment, while it is being compressed.
func generations(path string) []generation {
	matches, _ := filepath.Glob(escapeGlob(path) + ".*")
	var out []generation
	for _, m := range matches {
		suffix := m[len(path)+1:]
		num, gz := strings.CutSuffix(suffix, gzExt)
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 || strconv.Itoa(n) != num {
			continue
		}
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() {
			out = append(out, generation{n: n, path: m, gz: gz, size: fi.Size()})
		}
	}
	return out
}

// escapeGlob quotes the glob metacharacters of a literal path.
func escapeGlob(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
