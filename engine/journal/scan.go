package journal

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine"
)

// Scan is the reader for people (`talon events`): where Read is strict,
// because replay must not decide on a journal it misunderstands, Scan is
// lenient and fast.
//
//   - Lenient: a record of a type this build does not know is handed to fn
//     as it is (fn ignores what it does not understand), unknown fields are
//     ignored, and a line that is not a record at all (or a compact record
//     whose base it did not decode: see scanner.line) is counted in
//     ScanResult.Skipped and passed over. A newer daemon's journal therefore
//     reads with an older talon.
//   - Fast: lines are classified by their type without decoding them (the
//     writer puts "t" and "type" first), so the cycle records that make up
//     most of a journal cost a byte comparison unless Want asks for them;
//     and with Since set, whole files that end before it are skipped and the
//     first relevant file is entered by a binary search on the records'
//     times.
type ScanOptions struct {
	// Since and Until bound the records handed to fn by their time ("t");
	// zero means unbounded. Records are in write order, which is time order
	// up to the small skew between a cycle's results and its events;
	// SeekSlack covers it.
	Since, Until time.Time
	// Want reports whether a line of type typ is decoded and handed to fn;
	// nil decodes every line. line is the raw JSON, for a finer look
	// without decoding.
	Want func(typ string, line []byte) bool
}

// SeekSlack is how far before Since a seek lands and how far past Until a
// scan reads on, so that records written slightly out of time order are
// not missed.
const SeekSlack = 5 * time.Minute

// ScanResult says what a scan read.
type ScanResult struct {
	Files   []string // the files read, oldest first
	Bytes   int64    // bytes read
	Lines   int      // lines looked at
	Skipped int      // lines that were not records (passed over)
	// Cursor is where the scan stopped in the live file, for Follow.
	Cursor *Cursor
}

// ScanWindow calls fn for the records of the journal at path and its rotated
// generations, oldest first, as ScanOptions describe. An error from fn
// stops the scan and is returned. A journal with no file at all is an error
// wrapping os.ErrNotExist.
func ScanWindow(path string, opts ScanOptions, fn func(engine.Record) error) (*ScanResult, error) {
	// Open everything first, so a rotation during the scan neither skips
	// nor repeats lines (as in Read).
	files, names, err := openAll(path)
	if err != nil {
		return nil, err
	}
	release := func(keep *os.File) {
		for _, f := range files {
			if f != keep {
				f.Close()
			}
		}
	}
	res := &ScanResult{}
	s := &scanner{opts: opts, fn: fn, res: res}
	for i, f := range files {
		live := i == len(files)-1
		if strings.HasSuffix(names[i], gzExt) {
			// Compressed: skipped whole when its header says it ends
			// before --since, else read from the start.
			if !opts.Since.IsZero() {
				if last := gzLastTime(f); !last.IsZero() && last.Before(opts.Since.Add(-SeekSlack)) {
					continue
				}
			}
			res.Files = append(res.Files, names[i])
			s.c.reset()
			s.stale = false
			s.src = gzSource(f)
			r, err := s.src()
			if err != nil {
				s.res.Skipped++ // lenient: a damaged file is passed over
				continue
			}
			if _, err := s.read(r, names[i], 0, false); err != nil {
				release(nil)
				return res, err
			}
			if s.done {
				release(nil)
				return res, nil
			}
			continue
		}
		var start int64
		if !opts.Since.IsZero() {
			last, err := lastTime(f)
			if err != nil {
				release(nil)
				return nil, fmt.Errorf("read journal %s: %w", names[i], err)
			}
			if !live && !last.IsZero() && last.Before(opts.Since.Add(-SeekSlack)) {
				continue // the whole file is older than --since
			}
			if start, err = seek(f, opts.Since.Add(-SeekSlack)); err != nil {
				release(nil)
				return nil, fmt.Errorf("read journal %s: %w", names[i], err)
			}
		}
		res.Files = append(res.Files, names[i])
		// Compact records build on their own file only; after a seek, on
		// lines not read yet.
		s.c.reset()
		s.stale = start > 0
		s.src = plainSource(f)
		end, err := s.readFile(f, start, live)
		if err != nil {
			release(nil)
			return res, err
		}
		if s.done {
			release(nil)
			return res, nil
		}
		if live {
			res.Cursor = &Cursor{path: path, f: f, off: end, s: s}
		}
	}
	var keep *os.File
	if res.Cursor != nil {
		keep = res.Cursor.f
	}
	release(keep)
	return res, nil
}

// plainSource and gzSource give a file's content from its start, apart
// from any reading under way (for prime).
func plainSource(f *os.File) func() (io.Reader, error) {
	return func() (io.Reader, error) { return io.NewSectionReader(f, 0, 1<<62), nil }
}

func gzSource(f *os.File) func() (io.Reader, error) {
	return func() (io.Reader, error) { return gzip.NewReader(io.NewSectionReader(f, 0, 1<<62)) }
}

type scanner struct {
	opts ScanOptions
	fn   func(engine.Record) error
	res  *ScanResult
	done bool  // passed Until
	c    codec // what the file's decoded lines said, for compact records
	// stale: a cycle or launch line of the file was passed over, so c may
	// not know what a compact record after it builds on.
	stale bool
	src   func() (io.Reader, error) // the file's content from its start
}

// readFile scans the plain file f from offset start and returns the offset
// after the last complete line. In the live file a last line without its
// newline is being written: it is left for the next read.
func (s *scanner) readFile(f *os.File, start int64, live bool) (int64, error) {
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return start, err
	}
	return s.read(f, f.Name(), start, live)
}

// read scans r, whose first byte is at offset start of the file's content.
func (s *scanner) read(r io.Reader, name string, start int64, live bool) (int64, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	off := start
	for {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it whole.
			long := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = br.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if len(b) == 0 && err == io.EOF {
			return off, nil
		}
		if err != nil && err != io.EOF {
			if strings.HasSuffix(name, gzExt) {
				s.res.Skipped++ // a damaged .gz: its rest is passed over
				return off, nil
			}
			return off, fmt.Errorf("read journal %s: %w", name, err)
		}
		if err == io.EOF { // no newline: a line being written (or cut by a crash)
			if live {
				return off, nil
			}
		}
		lineStart := off
		off += int64(len(b))
		s.res.Bytes += int64(len(b))
		if ferr := s.line(lineStart, bytes.TrimSuffix(b, []byte("\n"))); ferr != nil {
			return off, ferr
		}
		if s.done || err == io.EOF {
			return off, nil
		}
	}
}

// line classifies the line b, which starts at offset off of the file's
// content, and, if wanted and in range, decodes it for fn.
func (s *scanner) line(off int64, b []byte) error {
	s.res.Lines++
	t, typ, ok := header(b)
	if !ok {
		s.res.Skipped++
		return nil
	}
	skip := false
	if !s.opts.Until.IsZero() && t.After(s.opts.Until) {
		if t.After(s.opts.Until.Add(SeekSlack)) {
			s.done = true
		}
		skip = true
	}
	skip = skip || (!s.opts.Since.IsZero() && t.Before(s.opts.Since)) || (s.opts.Want != nil && !s.opts.Want(typ, b))
	if skip {
		if typ == "cycle" || typ == "launch" {
			s.stale = true // a later compact record may build on it
		}
		return nil
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		s.res.Skipped++
		return nil
	}
	if s.stale && (w.Delta != nil || w.Same) {
		// It builds on lines that were passed over (or seeked past):
		// learn them, from the start of the file, only now that they
		// are needed.
		s.c = prime(s.src, off)
		s.stale = false
	}
	r, err := s.c.decode(&w)
	if err != nil {
		s.res.Skipped++
		return nil
	}
	return s.fn(r)
}

// prime is what the cycle and launch lines of the file before offset end
// say, for the compact records after it.
func prime(src func() (io.Reader, error), end int64) codec {
	var c codec
	r, err := src()
	if err != nil {
		return c
	}
	br := bufio.NewReaderSize(io.LimitReader(r, end), 256<<10)
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			if _, typ, ok := header(bytes.TrimSuffix(b, []byte("\n"))); ok && (typ == "cycle" || typ == "launch") {
				var w wire
				if json.Unmarshal(b, &w) == nil {
					c.decode(&w)
				}
			}
		}
		if err != nil {
			return c
		}
	}
}

var (
	tPrefix    = []byte(`{"t":"`)
	typePrefix = []byte(`","type":"`)
)

// header returns a line's time and type: from the fixed prefix the writer
// produces ({"t":"…","type":"…"), else by decoding just those two fields.
func header(b []byte) (time.Time, string, bool) {
	if rest, ok := bytes.CutPrefix(b, tPrefix); ok {
		if i := bytes.IndexByte(rest, '"'); i > 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(rest[:i])); err == nil {
				if tail, ok := bytes.CutPrefix(rest[i:], typePrefix); ok {
					if j := bytes.IndexByte(tail, '"'); j >= 0 {
						return t, string(tail[:j]), true
					}
				}
			}
		}
	}
	var h struct {
		T    time.Time `json:"t"`
		Type string    `json:"type"`
	}
	if json.Unmarshal(b, &h) != nil || h.T.IsZero() || h.Type == "" {
		return time.Time{}, "", false
	}
	return h.T, h.Type, true
}

// lastTime is the time of the last complete record of f, or zero.
func lastTime(f *os.File) (time.Time, error) {
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, err
	}
	end, err := completeLength(f, fi.Size())
	if err != nil || end == 0 {
		return time.Time{}, err
	}
	// Walk back over the last lines until one has a readable header.
	buf := make([]byte, 64<<10)
	for end > 0 {
		n := min(int64(len(buf)), end)
		chunk := buf[:n]
		if _, err := f.ReadAt(chunk, end-n); err != nil && err != io.EOF {
			return time.Time{}, err
		}
		chunk = bytes.TrimSuffix(chunk, []byte("\n"))
		i := bytes.LastIndexByte(chunk, '\n')
		if i < 0 && n < end {
			return time.Time{}, nil // a line longer than the buffer: do not skip the file
		}
		if t, _, ok := header(chunk[i+1:]); ok {
			return t, nil
		}
		end = end - n + int64(i) + 1
		if i < 0 {
			break
		}
	}
	return time.Time{}, nil
}

// seek returns the offset of a line start at or before the first record of f
// whose time is at or after t: a binary search over byte offsets, each probe
// reading the first whole line after it.
func seek(f *os.File, t time.Time) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	lo, hi := int64(0), fi.Size()
	buf := make([]byte, 32<<10)
	for hi-lo > int64(len(buf)) {
		mid := lo + (hi-lo)/2
		start, lt, ok, err := lineAfter(f, mid, buf)
		if err != nil {
			return 0, err
		}
		switch {
		case !ok || start >= hi:
			hi = mid // no readable line between mid and hi: look left
		case lt.Before(t):
			lo = start
		default:
			hi = mid
		}
	}
	return lo, nil
}

// lineAfter finds the first line that starts after offset off and returns
// its offset and time.
func lineAfter(f *os.File, off int64, buf []byte) (int64, time.Time, bool, error) {
	n, err := f.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return 0, time.Time{}, false, err
	}
	chunk := buf[:n]
	i := bytes.IndexByte(chunk, '\n')
	if i < 0 {
		return 0, time.Time{}, false, nil
	}
	line := chunk[i+1:]
	j := bytes.IndexByte(line, '\n')
	if j < 0 {
		// The header is all we need; it is at the start of the line.
		j = len(line)
	}
	t, _, ok := header(line[:j])
	if !ok && j == len(line) {
		// Cut off by the buffer: the fixed prefix may still be there.
		if rest, ok2 := bytes.CutPrefix(line, tPrefix); ok2 {
			if k := bytes.IndexByte(rest, '"'); k > 0 {
				if tt, err := time.Parse(time.RFC3339Nano, string(rest[:k])); err == nil {
					return off + int64(i) + 1, tt, true, nil
				}
			}
		}
	}
	return off + int64(i) + 1, t, ok, nil
}

// Cursor is where a scan stopped in the live file; Follow reads on from it.
type Cursor struct {
	path string
	f    *os.File
	off  int64
	s    *scanner
}

// Next reads the records appended since the last call and hands them to fn.
// When the daemon has rotated the journal (the live path names a new file),
// Next finishes the old file and goes on at the start of the new one.
func (c *Cursor) Next(fn func(engine.Record) error) error {
	c.s.fn = fn
	for {
		end, err := c.s.readFile(c.f, c.off, true)
		c.off = end
		if err != nil {
			return err
		}
		cur, err1 := c.f.Stat()
		now, err2 := os.Stat(c.path)
		if err1 != nil || err2 != nil || os.SameFile(cur, now) {
			if err1 == nil && cur.Size() < c.off {
				c.off = 0 // truncated in place: start over
				c.s.c.reset()
				c.s.stale = false
			}
			return nil
		}
		// Rotated: the old file is complete now; read its rest, then move on.
		if end, err = c.s.readFile(c.f, c.off, false); err != nil {
			return err
		}
		nf, err := os.Open(c.path)
		if err != nil {
			return nil // between the rename and the new file: try next time
		}
		c.f.Close()
		c.f, c.off = nf, 0
		c.s.c.reset()
		c.s.stale = false
		c.s.src = plainSource(nf)
		_ = end
	}
}

// Close releases the live file.
func (c *Cursor) Close() error {
	if c == nil || c.f == nil {
		return nil
	}
	return c.f.Close()
}
