package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"unicode/utf8"

	fastjson "github.com/goccy/go-json"

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
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Files lists the journal at path and its rotated generations, oldest first:
// path.N … path.1, path. Missing files are left out.
func Files(path string) []string {
	gens := generations(path)
	sort.Slice(gens, func(a, b int) bool { return gens[a].n > gens[b].n })
	var out []string
	for _, g := range gens {
		out = append(out, g.path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		out = append(out, path)
	}
	return out
}

// Read calls fn for every record of the journal at path and its rotated
// generations, oldest first. It is strict: a line that is not one valid
// record (bad JSON, an unknown field or type, invalid UTF-8, an empty line)
// stops it with a *LineError naming file:line. A partial last line in the
// newest file is the trace of a crash in the middle of a write: it is
// skipped and returned as a Warning. An error from fn stops the read and is
// returned as is. Reading a journal with no file at all is an error
// wrapping os.ErrNotExist.
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

// Scan is Read with each record's position. It holds one line at a time:
// its memory does not grow with the journal.
func Scan(path string, fn func(engine.Record, Pos) error) ([]Warning, error) {
	names := Files(path)
	if len(names) == 0 {
		return nil, fmt.Errorf("read journal %s: %w", path, os.ErrNotExist)
	}
	files := make([]*os.File, 0, len(names))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read journal: %w", err)
		}
		files = append(files, f)
	}
	var warnings []Warning
	for i, f := range files {
		w, err := readFile(f, names[i], i == len(files)-1, fn)
		if w != nil {
			warnings = append(warnings, *w)
		}
		if err != nil {
			return warnings, err
		}
	}
	return warnings, nil
}

func readFile(f io.Reader, name string, newest bool, fn func(engine.Record, Pos) error) (*Warning, error) {
	br := bufio.NewReaderSize(f, 256<<10)
	var long []byte // a line longer than the reader's buffer
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
			return nil, fmt.Errorf("read journal %s: %w", name, err)
		}
		complete := err == nil
		if complete {
			b = b[:len(b)-1]
		}
		rec, perr := Parse(b)
		if perr != nil {
			if !complete && newest {
				return &Warning{File: name, Line: line,
					Msg: fmt.Sprintf("partial last line skipped (%d bytes; the writer stopped mid-line)", len(b))}, nil
			}
			return nil, &LineError{File: name, Line: line, Err: perr}
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
func Parse(line []byte) (engine.Record, error) {
	var r engine.Record
	if len(bytes.TrimSpace(line)) == 0 {
		return r, errors.New("empty line")
	}
	if !utf8.Valid(line) {
		return r, errors.New("invalid UTF-8")
	}
	// The fast decoder reads a month of journal in a second; on any
	// complaint, the standard one decodes the line again, for its exact
	// error text (and so that it alone decides what is an error).
	fast := fastjson.NewDecoder(bytes.NewReader(line))
	fast.DisallowUnknownFields()
	if err := fast.Decode(&r); err == nil && !fast.More() {
		if _, err := fast.Token(); err == io.EOF {
			if err := check(r); err == nil {
				return r, nil
			}
		}
	}
	r = engine.Record{}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("bad record: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return r, errors.New("bad record: trailing data after the JSON object")
	}
	return r, check(r)
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
