package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/talon-dev/talon/engine"
)

// RecordTypes are the values of Record.Type that Read accepts.
var RecordTypes = []string{"start", "stop", "launch", "cycle", "rung_end", "wake", "event", "intent", "action", "reload",
	"pause", "resume", "ack", "delivery", "checkpoint"}

// Warning is something Read tolerated: a partial last line of the newest
// file, left by a crash in the middle of a write.
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg) }

// LineError is a line that is not one well-formed record.
type LineError struct {
	File string
	Line int
	Err  error
	// Dependent is how many later records of the same file were skipped
	// with this line: compact records whose probes' previous results this
	// line may have held.
	Dependent int
}

func (e *LineError) Error() string {
	s := fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	if e.Dependent > 0 {
		s += fmt.Sprintf(" (and %d later records that build on it skipped, up to each probe's next full result)", e.Dependent)
	}
	return s
}
func (e *LineError) Unwrap() error { return e.Err }

// CorruptError is what a read that went past bad lines returns: every line
// that was skipped, in order. Every record that could be read was read.
type CorruptError struct {
	Lines []*LineError
}

func (e *CorruptError) Error() string {
	const show = 5
	var b strings.Builder
	for i, le := range e.Lines {
		if i == show {
			fmt.Fprintf(&b, "; and %d more bad lines", len(e.Lines)-show)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(le.Error())
	}
	return b.String()
}

// Unwrap gives the line errors, for errors.As.
func (e *CorruptError) Unwrap() []error {
	out := make([]error, len(e.Lines))
	for i, le := range e.Lines {
		out[i] = le
	}
	return out
}

// Files lists the journal at path and its rotated generations, oldest first:
// path.N … path.1, path, each rotated one as path.N.gz when it has been
// compressed (and as that alone, when both forms are there for a moment).
// Missing files are left out.
func Files(path string) []string {
	gens := generations(path)
	sort.Slice(gens, func(a, b int) bool {
		if gens[a].n != gens[b].n {
			return gens[a].n > gens[b].n
		}
		return gens[a].gz
	})
	var out []string
	for i, g := range gens {
		if i > 0 && gens[i-1].n == g.n {
			continue // the plain twin of a whole .gz
		}
		out = append(out, g.path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		out = append(out, path)
	}
	return out
}

// Read calls fn for every record of the journal at path and its rotated
// generations, oldest first, compact records expanded (see compact.go). It
// is strict: a line that is not one valid record (bad JSON, an unknown
// field or type, invalid UTF-8, an empty line, a compact record with
// nothing before it to build on) is never handed to fn. It is reported as a
// *LineError naming file:line and skipped, and the read goes on; when any
// line was skipped, the error returned is a *CorruptError listing them all.
// A partial last line in the newest file is the trace of a crash in the
// middle of a write: it is skipped and returned as a Warning. An error from
// fn stops the read and is returned (joined with the bad lines before it).
// Reading a journal with no file at all is an error wrapping
// os.ErrNotExist.
//
// Every file is opened before the first record is read, so a rotation by a
// live daemon during the read neither skips nor repeats lines.
func Read(path string, fn func(engine.Record) error) ([]Warning, error) {
	return Scan(path, func(r engine.Record, _ Pos) error { return fn(r) })
}

// Pos is where a record is: its file and line.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Scan is Read with each record's position. It holds one line at a time
// (and each probe's previous result): its memory does not grow with the
// journal.
func Scan(path string, fn func(engine.Record, Pos) error) ([]Warning, error) {
	files, names, err := openAll(path)
	if err != nil {
		return nil, err
	}
	defer closeAll(files)
	var warnings []Warning
	var bad []*LineError
	report := func(le *LineError) { bad = append(bad, le) }
	for i, f := range files {
		r, err := content(f, names[i])
		if err != nil {
			report(&LineError{File: names[i], Line: 1, Err: fmt.Errorf("not a readable gzip file (%w); the file is skipped", err)})
			continue
		}
		w, err := ReadFrom(r, names[i], i == len(files)-1, report, fn)
		if w != nil {
			warnings = append(warnings, *w)
		}
		if err != nil {
			if len(bad) > 0 {
				err = errors.Join(&CorruptError{Lines: bad}, err)
			}
			return warnings, err
		}
	}
	if len(bad) > 0 {
		return warnings, &CorruptError{Lines: bad}
	}
	return warnings, nil
}

// openAll opens every file of the journal at path, oldest first, and
// returns them with their names. A live daemon may rotate the journal
// between the listing and the opening — path.1 becomes path.2, the live
// file path.1 — and the names would then open other files than the listing
// meant (a generation skipped or read twice): the listing is taken again
// until it names exactly the files that were opened. A journal that keeps
// rotating faster than it can be opened is an error (ErrRotating), never a
// read with a hole.
func openAll(path string) ([]*os.File, []string, error) {
	const attempts = 10
	unlock := lockDir(filepath.Dir(path), syscall.LOCK_SH)
	defer unlock()
	for try := 1; ; try++ {
		names := Files(path)
		if len(names) == 0 {
			return nil, nil, fmt.Errorf("read journal %s: %w", path, os.ErrNotExist)
		}
		files := make([]*os.File, 0, len(names))
		var err error
		for i, name := range names {
			var f *os.File
			if f, names[i], err = openGen(name); err != nil {
				break
			}
			files = append(files, f)
		}
		if err == nil && opened(path, names, files) {
			return files, names, nil
		}
		closeAll(files)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
		if try == attempts {
			return nil, nil, fmt.Errorf("read journal %s: %w", path, ErrRotating)
		}
	}
}

// ErrRotating is the error of a read of a journal whose files kept moving
// (rotations) while they were being opened: try again.
var ErrRotating = errors.New("the journal rotated while its files were being opened; try again")

// opened reports whether the journal at path is still made of files, under
// names: no rotation moved them since they were opened.
func opened(path string, names []string, files []*os.File) bool {
	now := Files(path)
	if len(now) != len(names) {
		return false
	}
	for i, name := range now {
		if name != names[i] {
			return false
		}
		a, err := os.Stat(name)
		if err != nil {
			return false
		}
		b, err := files[i].Stat()
		if err != nil || !os.SameFile(a, b) {
			return false
		}
	}
	return true
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// ReadFrom reads one journal file from r, strictly, as Scan does: name is
// the file's name for positions and errors, newest says whether a partial
// last line is the trace of a crash (a Warning) rather than an error. Every
// bad line goes to bad, and the read goes on; an error reading r (a damaged
// .gz) goes to bad too and ends the file; an error from fn stops the read
// and is returned.
func ReadFrom(r io.Reader, name string, newest bool, bad func(*LineError), fn func(engine.Record, Pos) error) (*Warning, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var long []byte // a line longer than the reader's buffer
	var c codec
	var broken *LineError // the last bad line, while later records may build on it
	for line := 1; ; line++ {
		// The line is read in place (no copy) unless it outgrows the
		// buffer; a record keeps nothing of it once parsed.
		b, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], b...)
			for err == bufio.ErrBufferFull {
				b, err = br.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if len(b) == 0 && err == io.EOF {
			return nil, nil
		}
		if err != nil && err != io.EOF {
			// A damaged .gz (or an I/O error): what follows is lost.
			bad(&LineError{File: name, Line: line, Err: fmt.Errorf("read: %w; the rest of the file is skipped", err)})
			return nil, nil
		}
		complete := err == nil
		if complete {
			b = b[:len(b)-1]
		}
		w, perr := parseWire(b)
		var rec engine.Record
		if perr == nil {
			if rec, perr = c.decode(w); perr != nil && broken != nil && isNoBase(perr) {
				// It builds on what a bad line may have said.
				broken.Dependent++
				continue
			}
		}
		if perr != nil {
			if !complete && newest {
				return &Warning{File: name, Line: line,
					Msg: fmt.Sprintf("partial last line skipped (%d bytes; the writer stopped mid-line)", len(b))}, nil
			}
			broken = &LineError{File: name, Line: line, Err: perr}
			bad(broken)
			// What the bad line said is lost: later compact records of
			// its probes are skipped until their next full result.
			c.reset()
			if !complete {
				return nil, nil
			}
			continue
		}
		if ferr := fn(rec, Pos{File: name, Line: line}); ferr != nil {
			return nil, ferr
		}
		if !complete {
			return nil, nil
		}
	}
}

// Parse decodes one journal line (without its newline) strictly: exactly
// one JSON object, valid UTF-8, no unknown fields, a known type and a time.
// A compact record is expanded only as far as it stands on its own: one
// that builds on earlier lines is an error here (Read expands it).
func Parse(line []byte) (engine.Record, error) {
	w, err := parseWire(line)
	if err != nil {
		return engine.Record{}, err
	}
	var c codec
	return c.decode(w)
}

func parseWire(line []byte) (*wire, error) {
	var w wire
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, errors.New("empty line")
	}
	if !utf8.Valid(line) {
		return nil, errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// Name the record's field, not the wrapper's.
			te.Struct, te.Field = "Record", strings.TrimPrefix(te.Field, "Record.")
		}
		return nil, fmt.Errorf("bad record: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("bad record: trailing data after the JSON object")
	}
	if err := check(w.Record); err != nil {
		return nil, err
	}
	return &w, nil
}

// check holds a decoded record to the rules JSON cannot state.
func check(r engine.Record) error {
	if !knownType(r.Type) {
		return fmt.Errorf("unknown record type %q", r.Type)
	}
	if r.Time.IsZero() {
		return errors.New(`record has no time ("t")`)
	}
	return nil
}

func knownType(t string) bool {
	for _, k := range RecordTypes {
		if t == k {
			return true
		}
	}
	return false
}
