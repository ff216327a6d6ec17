package journal

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/talon-dev/talon/internal/fsperm"
)

// Rotated generations are compressed with gzip, in the background, after
// the rotation that made them: path.1 becomes path.1.gz. Never at the cost
// of a record: the compressed copy is written beside the plain file as
// path.N.gz.tmp, flushed to disk, renamed into place (so a path.N.gz is
// always whole), and only then is the plain file removed. A crash leaves a
// .gz.tmp (removed at the next Open) or both forms of a generation (the
// reader takes the .gz; the plain twin is removed at the next Open or
// rotation). A generation that would not get smaller stays plain.

const (
	gzExt  = ".gz"
	tmpExt = ".tmp"
	// gzComment starts the gzip header's comment, followed by the time of
	// the generation's last record: ScanWindow skips a compressed file
	// that ends before --since without inflating it.
	gzComment = "talon journal; last record at "
)

// compressLater asks the compressor to compress the plain generations.
// Called with j.mu held (or before Open returns).
func (j *Journal) compressLater() {
	select {
	case j.kick <- struct{}{}:
	default: // already asked
	}
}

func (j *Journal) compressor() {
	defer close(j.done)
	for range j.kick {
		j.gens.Lock()
		j.compressAll()
		j.gens.Unlock()
	}
}

// compressAll compresses every plain generation. Called with j.gens held.
// A failure leaves the generation plain: nothing is lost, and the next
// rotation tries again.
func (j *Journal) compressAll() {
	// A .gz.tmp is only ever there while this holds j.gens: any now is a
	// crash's leftover.
	if tmps, _ := filepath.Glob(escapeGlob(j.path) + ".*" + gzExt + tmpExt); len(tmps) > 0 {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	gens := generations(j.path)
	compressed := map[int]bool{}
	for _, g := range gens {
		if g.gz {
			compressed[g.n] = true
		}
	}
	for _, g := range gens {
		switch {
		case g.gz:
		case compressed[g.n]:
			os.Remove(g.path) // its .gz is whole: a crash came between the rename and this
		default:
			compressFile(g.path)
		}
	}
}

// compressFile replaces the plain file path by path.gz, if that is smaller.
func compressFile(path string) error {
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	last, _ := lastTime(src)
	tmp := path + gzExt + tmpExt
	dst, err := fsperm.OpenPrivate(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			dst.Close()
			os.Remove(tmp)
		}
	}()
	zw, err := gzip.NewWriterLevel(dst, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	zw.Name = filepath.Base(path)
	if !last.IsZero() {
		zw.Comment = gzComment + last.UTC().Format(time.RFC3339Nano)
	}
	if _, err := io.Copy(zw, src); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := dst.Sync(); err != nil {
		return err
	}
	zfi, err := dst.Stat()
	if err != nil {
		return err
	}
	if zfi.Size() >= fi.Size() {
		return nil // incompressible: stays plain (tmp removed)
	}
	if err := dst.Close(); err != nil {
		return err
	}
	keep = true
	unlock := lockDir(filepath.Dir(path), syscall.LOCK_EX)
	defer unlock()
	if err := os.Rename(tmp, path+gzExt); err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(path))
	if err := os.Remove(path); err != nil {
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

// openGen opens the journal file name for reading: a .gz through gzip. A
// plain generation that was compressed between the listing and now is
// opened as its .gz.
func openGen(name string) (*os.File, string, error) {
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) && !strings.HasSuffix(name, gzExt) && name != strings.TrimRight(name, "0123456789") {
		if f, err2 := os.Open(name + gzExt); err2 == nil {
			return f, name + gzExt, nil
		}
	}
	if err != nil {
		return nil, name, fmt.Errorf("read journal: %w", err)
	}
	return f, name, nil
}

// content is the records' text of f: inflated if name is a .gz.
func content(f *os.File, name string) (io.Reader, error) {
	if !strings.HasSuffix(name, gzExt) {
		return f, nil
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return zr, nil
}

// gzLastTime is the time of the last record of a compressed generation,
// from its header (zero if the header does not say).
func gzLastTime(f *os.File) time.Time {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return time.Time{}
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return time.Time{}
	}
	defer zr.Close()
	if s, ok := strings.CutPrefix(zr.Comment, gzComment); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
	}
	return time.Time{}
}
