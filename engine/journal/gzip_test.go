package journal

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// writeHistory writes recs through a journal of small files and closes it
// (which waits for the compressor).
func writeHistory(t *testing.T, path string, opts Options, recs []engine.Record) {
	t.Helper()
	j, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

func readRecords(t *testing.T, path string) []engine.Record {
	t.Helper()
	var out []engine.Record
	if _, err := Read(path, func(r engine.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRotatedGenerationsAreCompressedAndReadBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	recs := history(2000)
	writeHistory(t, path, Options{MaxBytes: 100 << 10, Keep: 100}, recs)
	files := Files(path)
	if len(files) < 4 {
		t.Fatalf("files %v", files)
	}
	var disk, plainSize int64
	for i, f := range files {
		fi, _ := os.Stat(f)
		disk += fi.Size()
		if f == path {
			continue
		}
		if want := fmt.Sprintf("%s.%d.gz", path, len(files)-1-i); f != want {
			t.Fatalf("file %d is %s, want %s", i, f, want)
		}
		// A gzip file whose header says when its last record was.
		fh, _ := os.Open(f)
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !strings.HasPrefix(zr.Comment, gzComment) || gzLastTime(fh).IsZero() {
			t.Errorf("%s: header comment %q", f, zr.Comment)
		}
		fh.Close()
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(files) {
		t.Errorf("left on disk: %v", entries)
	}
	got := readRecords(t, path)
	if plain(t, got) != plain(t, asRead(t, recs)) {
		t.Fatal("the compressed journal reads back differently")
	}
	plainSize = int64(len(plain(t, recs)))
	if disk*5 > plainSize {
		t.Errorf("%d bytes on disk for %d of plain journal: want a fifth or less", disk, plainSize)
	}
	// A window of the last hour reads the newest files only: the older
	// compressed ones are skipped by their header.
	last := got[len(got)-1].Time
	res, err := ScanWindow(path, ScanOptions{Since: last.Add(-time.Hour)}, func(engine.Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) >= len(files)/2 || res.Files[len(res.Files)-1] != path {
		t.Errorf("read %v of %d files for the last hour", res.Files, len(files))
	}
}

// What a crash in the middle of a compression leaves: a partial .gz.tmp
// beside its plain generation, or both forms of one generation. Neither
// loses or repeats a record, and the next Open tidies up.
func TestCompressionCrashLeftovers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	recs := history(600)
	writeHistory(t, path, Options{MaxBytes: 40 << 10, Keep: 100}, recs)
	want := plain(t, readRecords(t, path))
	// Generation 1 back to plain with a partial .gz.tmp; generation 2 in
	// both forms.
	inflate := func(gz string) []byte {
		f, _ := os.Open(gz)
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	g1, g2 := path+".1", path+".2"
	os.WriteFile(g1, inflate(g1+".gz"), 0o600)
	gz1, _ := os.ReadFile(g1 + ".gz")
	os.WriteFile(g1+".gz.tmp", gz1[:len(gz1)/2], 0o600)
	os.Remove(g1 + ".gz")
	os.WriteFile(g2, inflate(g2+".gz"), 0o600)
	if got := plain(t, readRecords(t, path)); got != want {
		t.Fatal("with the crash's leftovers, the journal reads differently")
	}
	j, err := Open(path, Options{MaxBytes: 40 << 10, Keep: 100})
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	for _, gone := range []string{g1, g1 + ".gz.tmp", g2} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after Open", gone)
		}
	}
	if _, err := os.Stat(g1 + ".gz"); err != nil {
		t.Errorf("generation 1 not compressed again: %v", err)
	}
	if got := plain(t, readRecords(t, path)); got != want {
		t.Fatal("after the tidy-up, the journal reads differently")
	}
}

// A damaged .gz is reported with its file and line, and the read goes on
// with the next file.
func TestDamagedCompressedGenerationIsReportedAndSkipped(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	writeHistory(t, path, Options{MaxBytes: 40 << 10, Keep: 100}, history(600))
	all := len(readRecords(t, path))
	g := path + ".2.gz"
	b, _ := os.ReadFile(g)
	os.WriteFile(g, b[:len(b)*2/3], 0o600)
	n := 0
	_, err := Read(path, func(engine.Record) error { n++; return nil })
	var ce *CorruptError
	if !errors.As(err, &ce) || len(ce.Lines) != 1 || ce.Lines[0].File != g || ce.Lines[0].Line < 2 ||
		!strings.Contains(ce.Lines[0].Error(), "read: unexpected EOF; the rest of the file is skipped") {
		t.Fatalf("err = %v", err)
	}
	if n >= all || n < all/2 {
		t.Errorf("read %d of %d records", n, all)
	}
	// Not gzip at all.
	os.WriteFile(g, []byte("hello\n"), 0o600)
	_, err = Read(path, func(engine.Record) error { return nil })
	if !errors.As(err, &ce) || ce.Lines[0].File != g || ce.Lines[0].Line != 1 || !strings.Contains(err.Error(), "not a readable gzip file") {
		t.Fatalf("err = %v", err)
	}
}
