package journal

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// Ways FuzzJournalReader hands its bytes to the reader.
const (
	fuzzPlain   = iota // as the live file
	fuzzGzipped        // gzip-compressed, as a rotated generation
	fuzzRawGz          // as they are, named like a rotated generation (a damaged .gz)
	fuzzModes
)

// FuzzJournalReader feeds arbitrary bytes to the journal's readers, plain
// and through gzip: they must not panic, every error must name the file
// and line, and every record the strict reader hands on must be one the
// writer can write and the reader read back the same.
func FuzzJournalReader(f *testing.F) {
	dir, err := os.MkdirTemp("", "fuzz-journal-seed-")
	if err != nil {
		f.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, FileName)
	j, err := Open(path, Options{})
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range history(4) { // small: the fuzzer minimizes what it finds from the seeds
		j.Append(r)
	}
	j.Close()
	compact, _ := os.ReadFile(path)
	good, _ := Marshal(cycle(1, "ok"))
	for _, seed := range [][]byte{
		compact,
		good,
		append(append([]byte{}, good...), compact...),
		[]byte(`{"t":"2026-11-23T03:12:00Z","type":"launch","policy":"h","same":true}` + "\n"),
		[]byte(`{"t":"2026-11-23T03:12:00Z","type":"cycle","policy":"h","delta":[{"name":"api","passed":true,"output":"ok","duration_ms":1,"critical":true,"warning":false,"timed_out":false,"detail":{},"ago":0}]}` + "\n" +
			`{"t":"2026-11-23T03:13:00Z","type":"cycle","policy":"h","delta":[{"name":"api","ago":-9223372036854775808}]}`),
		[]byte("{\"t\":\"2026-11-23T03:12:00Z\",\"type\":\"cycle\"\n\n\xff{}"),
	} {
		for mode := range fuzzModes {
			f.Add(seed, uint8(mode))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		file := path
		switch mode % fuzzModes {
		case fuzzPlain:
			os.WriteFile(path, data, 0o600)
		case fuzzGzipped:
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(data)
			zw.Close()
			file = path + ".1.gz"
			os.WriteFile(file, b.Bytes(), 0o600)
		case fuzzRawGz:
			file = path + ".1.gz"
			os.WriteFile(file, data, 0o600)
		}
		n := 0
		ws, err := Scan(path, func(r engine.Record, pos Pos) error {
			n++
			if pos.File != file || pos.Line < 1 {
				t.Fatalf("record at %v", pos)
			}
			line, err := Marshal(r)
			if err != nil {
				t.Fatalf("%v: a record read cannot be written: %v", pos, err)
			}
			back, err := Parse(line[:len(line)-1])
			if err != nil {
				t.Fatalf("%v: a record read does not read back: %v\n%s", pos, err, line)
			}
			if again, _ := Marshal(back); !bytes.Equal(again, line) {
				t.Fatalf("%v: a record reads back differently:\n%s%s", pos, line, again)
			}
			return nil
		})
		for _, w := range ws {
			if w.File != file || w.Line < 1 || !strings.HasPrefix(w.String(), file+":") {
				t.Fatalf("warning %q does not name the line", w)
			}
		}
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) || len(ce.Lines) == 0 {
				t.Fatalf("error %v (%T) is not a list of bad lines", err, err)
			}
			for _, le := range ce.Lines {
				if le.File != file || le.Line < 1 || !strings.HasPrefix(le.Error(), file+":") {
					t.Fatalf("error %q does not name its line", le)
				}
			}
		}
		// The lenient reader, whole and from a time on: no panic, and no
		// error for what is only bad content.
		for _, opts := range []ScanOptions{{}, {Since: time.Date(2026, 11, 23, 3, 12, 30, 0, time.UTC)}} {
			res, err := ScanWindow(path, opts, func(engine.Record) error { return nil })
			if err != nil {
				t.Fatalf("ScanWindow %+v: %v", opts, err)
			}
			res.Cursor.Close()
		}
	})
}
