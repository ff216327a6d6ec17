package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

var t0 = time.Date(2026, 11, 23, 3, 12, 0, 0, time.UTC)

func cycle(i int, output string) engine.Record {
	return engine.Record{Time: t0.Add(time.Duration(i) * time.Second), Type: "cycle", Policy: "abc123",
		Results: []engine.Result{{Name: "redis", Passed: i%2 == 0, Output: output, DurationMS: int64(i), At: t0}}}
}

func readAll(t *testing.T, path string) ([]engine.Record, []Warning) {
	t.Helper()
	var out []engine.Record
	w, err := Read(path, func(r engine.Record) error { out = append(out, r); return nil })
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return out, w
}

func TestRoundTripEveryRecordType(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state", FileName)
	j, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ok, notOK := true, false
	want := []engine.Record{
		{Time: t0, Type: "start", Policy: "h1", Phase: engine.Healthy},
		cycle(1, "café ✓ 終 — <b>&amp;</b>\nline two\ttab \x01"),
		{Time: t0, Type: "event", Policy: "h1", Event: &engine.Event{Type: "transition", From: engine.Healthy, To: engine.Degraded, Incident: "i-1", At: t0}},
		{Time: t0, Type: "intent", Policy: "h1", Rung: "heal", Intent: "exec heal.sh"},
		{Time: t0, Type: "action", Policy: "h1", Rung: "heal", Action: "exec heal.sh", OK: &ok, Output: "done"},
		{Time: t0, Type: "action", Policy: "h1", Rung: "sos", Action: "page sos via telegram", OK: &notOK, Output: "HTTP 502"},
		{Time: t0, Type: "reload", Policy: "h2", OldHash: "h1"},
		{Time: t0, Type: "reload", Policy: "h2", OldHash: "h2", Error: "talon.star:3:7: undefined: prob"},
		{Time: t0, Type: "stop", Policy: "h2", Phase: engine.Degraded},
	}
	for _, r := range want {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	got, warnings := readAll(t, path)
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, []byte("café ✓ 終 — <b>&amp;</b>")) {
		t.Errorf("UTF-8 and <>& should be written literally, file has:\n%s", raw)
	}
	if n := bytes.Count(raw, []byte("\n")); n != len(want) {
		t.Errorf("%d newlines for %d records: an output newline leaked", n, len(want))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestInvalidUTF8IsReplacedNotWritten(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	j, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(cycle(0, "bad \xff\xfe byte")); err != nil {
		t.Fatal(err)
	}
	j.Close()
	got, _ := readAll(t, path)
	if out := got[0].Results[0].Output; out != "bad \ufffd\ufffd byte" {
		t.Errorf("output = %q", out)
	}
}

func TestRotationKeepsGenerationsAndBound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	opts := Options{MaxBytes: 2000, Keep: 3}
	j, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := 0; i < n; i++ {
		if err := j.Append(cycle(i, strings.Repeat("x", i%50))); err != nil {
			t.Fatal(err)
		}
		// What the background compressor does after a rotation, done now:
		// how many generations the next rotation keeps depends on whether
		// this one's are compressed yet, and the test must not depend on
		// the host's speed.
		j.gens.Lock()
		j.compressAll()
		j.gens.Unlock()
		if i%37 == 0 {
			assertBound(t, dir, opts)
		}
	}
	j.Close()
	assertBound(t, dir, opts)

	// Compressed, more generations than Keep fit in the bound: path.N.gz
	// … path.1.gz, path.
	files := Files(path)
	var wantFiles []string
	for n := len(files) - 1; n >= 1; n-- {
		wantFiles = append(wantFiles, fmt.Sprintf("%s.%d.gz", path, n))
	}
	wantFiles = append(wantFiles, path)
	if len(files) <= opts.Keep+1 || !reflect.DeepEqual(files, wantFiles) {
		t.Fatalf("files = %v, want more than %d: %v", files, opts.Keep+1, wantFiles)
	}
	// Records come back oldest first, contiguous, ending with the last one.
	got, _ := readAll(t, path)
	if len(got) == 0 || len(got) >= n {
		t.Fatalf("read %d records", len(got))
	}
	first := int(got[0].Time.Sub(t0) / time.Second)
	for k, r := range got {
		if i := int(r.Time.Sub(t0) / time.Second); i != first+k {
			t.Fatalf("record %d is cycle %d, want %d", k, i, first+k)
		}
	}
	if last := got[len(got)-1].Time; !last.Equal(t0.Add((n - 1) * time.Second)) {
		t.Errorf("last record at %v", last)
	}
}

func assertBound(t *testing.T, dir string, opts Options) {
	t.Helper()
	// The journal as read: each file within MaxBytes, all within the bound
	// (more than Keep+1 files when compressed ones fit).
	files := Files(filepath.Join(dir, FileName))
	var total int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			continue // compressed or rotated meanwhile
		}
		if fi.Size() > opts.MaxBytes {
			t.Fatalf("%s is %d bytes > MaxBytes %d", f, fi.Size(), opts.MaxBytes)
		}
		total += fi.Size()
	}
	if total > opts.Bound() {
		t.Fatalf("total %d bytes > bound %d", total, opts.Bound())
	}
	// On disk, while one generation is being compressed, its compressed
	// copy is there too: at most one file's worth more.
	entries, _ := os.ReadDir(dir)
	var disk int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			disk += fi.Size()
		}
	}
	if disk > opts.Bound()+opts.MaxBytes {
		t.Fatalf("%d bytes on disk > bound %d + one file", disk, opts.Bound())
	}
}

func TestShrinkingKeepDropsOldGenerations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	j, _ := Open(path, Options{MaxBytes: 500, Keep: 6})
	for i := 0; i < 100; i++ {
		j.Append(cycle(i, ""))
	}
	j.Close()
	before := len(Files(path))
	assertBound(t, dir, Options{MaxBytes: 500, Keep: 6})
	j, _ = Open(path, Options{MaxBytes: 500, Keep: 2})
	for i := 0; i < 10; i++ {
		j.Append(cycle(i, ""))
	}
	j.Close()
	assertBound(t, dir, Options{MaxBytes: 500, Keep: 2})
	if after := len(Files(path)); after >= before {
		t.Fatalf("%d files after shrinking Keep, %d before", after, before)
	}
}

func TestOversizedRecordRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	j, _ := Open(path, Options{MaxBytes: 300, Keep: 1})
	defer j.Close()
	err := j.Append(cycle(1, strings.Repeat("y", 400)))
	if err == nil || !strings.Contains(err.Error(), "exceeds the 300-byte file limit") {
		t.Fatalf("err = %v", err)
	}
	if err := j.Append(cycle(2, "small")); err != nil {
		t.Fatalf("a later small record: %v", err)
	}
}

func TestConcurrentAppendsGiveWholeLines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	opts := Options{MaxBytes: 64 << 10, Keep: 50}
	j, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 16, 200
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := cycle(w*each+i, fmt.Sprintf("writer %d line %d %s", w, i, strings.Repeat("é", 100+w)))
				if err := j.Append(r); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					j.Sync()
				}
			}
		}()
	}
	wg.Wait()
	j.Close()
	got, warnings := readAll(t, path)
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
	if len(got) != writers*each {
		t.Fatalf("read %d records, want %d", len(got), writers*each)
	}
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.Results[0].Output] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct records, want %d", len(seen), writers*each)
	}
	assertBound(t, dir, opts)
}

func TestTruncatedTailIsToleratedAndReported(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	j, _ := Open(path, Options{MaxBytes: 1000, Keep: 2})
	for i := 0; i < 10; i++ {
		j.Append(cycle(i, "ok"))
	}
	j.Close()
	full, _ := readAll(t, path)

	// A crash in the middle of the next write.
	line, _ := Marshal(cycle(10, "café ✓ 終"))
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(line[:len(line)/2])
	f.Close()

	got, warnings := readAll(t, path)
	if len(got) != len(full) {
		t.Errorf("read %d records, want %d", len(got), len(full))
	}
	if len(warnings) != 1 {
		t.Fatalf("warnings = %v, want 1", warnings)
	}
	lines := len(strings.Split(strings.TrimSuffix(mustRead(t, path), "\n"), "\n"))
	wantPrefix := fmt.Sprintf("%s:%d: partial last line skipped", path, lines)
	if w := warnings[0].String(); !strings.HasPrefix(w, wantPrefix) {
		t.Errorf("warning %q, want prefix %q", w, wantPrefix)
	}

	// Reopening cuts the fragment off, so appending cannot bury it mid-file.
	j, err := Open(path, Options{MaxBytes: 1000, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if j.Repaired() != int64(len(line)/2) {
		t.Errorf("Repaired = %d, want %d", j.Repaired(), len(line)/2)
	}
	j.Append(cycle(11, "after"))
	j.Close()
	got, warnings = readAll(t, path)
	if len(warnings) != 0 || len(got) != len(full)+1 || got[len(got)-1].Results[0].Output != "after" {
		t.Errorf("after repair: %d records, warnings %v", len(got), warnings)
	}
}

func TestMissingFinalNewlineOnAValidLineIsAccepted(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	line, _ := Marshal(cycle(1, "hand written"))
	os.WriteFile(path, bytes.TrimSuffix(line, []byte("\n")), 0o600)
	got, warnings := readAll(t, path)
	if len(got) != 1 || len(warnings) != 0 {
		t.Fatalf("got %d records, warnings %v", len(got), warnings)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStrictErrorsNameFileAndLine(t *testing.T) {
	t.Parallel()
	good, _ := Marshal(cycle(1, "ok"))
	g := string(good)
	tests := []struct {
		name    string
		body    string
		line    int
		wantErr string
	}{
		{"corrupt middle line", g + "{\"t\":\"2026-11-23T03:12:00Z\",\"type\":\"cycle\"\n" + g, 2, "bad record: unexpected EOF"},
		{"not json", g + g + "hello\n" + g, 3, "bad record: invalid character 'h' looking for beginning of value"},
		{"unknown field", g + `{"t":"2026-11-23T03:12:00Z","type":"cycle","policy":"x","resluts":[]}` + "\n", 2, `bad record: json: unknown field "resluts"`},
		{"unknown type", `{"t":"2026-11-23T03:12:00Z","type":"cycel","policy":"x"}` + "\n", 1, `unknown record type "cycel"`},
		{"no time", `{"type":"cycle","policy":"x"}` + "\n", 1, `record has no time ("t")`},
		{"empty line", g + "\n" + g, 2, "empty line"},
		{"two objects", g[:len(g)-1] + `{}` + "\n", 1, "bad record: trailing data after the JSON object"},
		{"invalid utf-8", `{"t":"2026-11-23T03:12:00Z","type":"cycle","policy":"` + "\xff" + `"}` + "\n", 1, "invalid UTF-8"},
		{"wrong field type", `{"t":"2026-11-23T03:12:00Z","type":"action","policy":"x","ok":"yes"}` + "\n", 1, "bad record: json: cannot unmarshal string into Go struct field Record.ok of type bool"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), FileName)
			os.WriteFile(path, []byte(tc.body), 0o600)
			_, err := Read(path, func(engine.Record) error { return nil })
			want := fmt.Sprintf("%s:%d: %s", path, tc.line, tc.wantErr)
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v\nwant %s", err, want)
			}
			var le *LineError
			if !errors.As(err, &le) || le.Line != tc.line || le.File != path {
				t.Errorf("not a *LineError at line %d: %#v", tc.line, err)
			}
		})
	}
}

func TestPartialLineInOlderGenerationIsAnError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	good, _ := Marshal(cycle(1, "ok"))
	os.WriteFile(path+".1", append(append([]byte{}, good...), good[:20]...), 0o600)
	os.WriteFile(path, good, 0o600)
	_, err := Read(path, func(engine.Record) error { return nil })
	if err == nil || !strings.HasPrefix(err.Error(), path+".1:2: bad record") {
		t.Fatalf("err = %v", err)
	}
}

func TestReadOrderAndCallbackError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	for i, name := range []string{path + ".10", path + ".2", path + ".1", path} {
		line, _ := Marshal(cycle(i, name))
		os.WriteFile(name, line, 0o600)
	}
	os.WriteFile(path+".x", []byte("ignored"), 0o600)
	os.WriteFile(path+".01", []byte("ignored"), 0o600)
	got, _ := readAll(t, path)
	var order []string
	for _, r := range got {
		order = append(order, filepath.Base(r.Results[0].Output))
	}
	if want := "journal.jsonl.10 journal.jsonl.2 journal.jsonl.1 journal.jsonl"; strings.Join(order, " ") != want {
		t.Errorf("order %v, want %s", order, want)
	}
	stop := errors.New("stop")
	n := 0
	_, err := Read(path, func(engine.Record) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("err = %v after %d calls", err, n)
	}
}

func TestReadMissing(t *testing.T) {
	t.Parallel()
	_, err := Read(filepath.Join(t.TempDir(), FileName), func(engine.Record) error { return nil })
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	j, _ := Open(filepath.Join(t.TempDir(), FileName), Options{})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(cycle(1, "")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if err := j.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// The daemon's Journal interface.
var _ engine.Journal = (*Journal)(nil)

// A journal.jsonl that is a symbolic link is refused, and the file it names
// is left alone: another user's link must never aim Talon's appends.
func TestOpenRefusesALink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "other-file")
	if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{})
	if want := "open journal: " + path + " is a symbolic link; talon does not follow links in its state directory, since one could aim its writes at any file: remove it"; err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("the link's target was changed: %q", b)
	}
}

// The live file and every rotated generation are 0600, and an existing
// journal others could read is made 0600.
func TestJournalFilesArePrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, []byte{}, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := Open(path, Options{MaxBytes: 400, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("an existing 0644 journal after Open: %v %v, want mode 0600", fi.Mode(), err)
	}
	for i := 0; i < 10; i++ {
		if err := j.Append(cycle(i, "x")); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	files := Files(path)
	if len(files) != 3 {
		t.Fatalf("files %v, want 3", files)
	}
	for _, p := range files {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", p, fi.Mode(), err)
		}
	}
}
