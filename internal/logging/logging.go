// Package logging builds Talon's logger (charmbracelet/log): JSON lines to
// <state_dir>/talon.log, rotated by size with lumberjack, and a copy of the
// same records on stderr — pretty on a terminal, plain otherwise.
//
// # File
//
// One JSON object per line: "time" (RFC 3339, UTC, milliseconds:
// 2026-11-23T03:12:00.481Z), "level" (debug, info, warn, error, fatal),
// "msg", then the fields in the order they were given, with their JSON types
// (numbers stay numbers; durations, errors and other Stringers become their
// text). Control characters are escaped by JSON, so a record is always one
// line. The file rotates at MaxSizeMB (default 10) into talon-<UTC
// time>.log backups, of which MaxBackups (default 5) are kept, uncompressed:
// at most about 60 MB with the defaults.
//
// # Stderr
//
// StderrAuto (the default) decides by looking at stderr and the environment:
//   - a terminal, and no service manager (someone runs `talon` by hand):
//     pretty, coloured lines at Level, local time of day with milliseconds;
//   - otherwise — stderr is not a terminal, or JOURNAL_STREAM or
//     INVOCATION_ID is set (systemd), or it is a file (launchd's
//     StandardErrorPath) — StderrService: readable one-line logfmt records
//     at Level (info by default), where journalctl and launchd's log files
//     look. talon.log keeps the same records as JSON.
//
// StderrService writes logfmt (time=… level=… msg=… key=value …), the
// one-line format people and log shippers both read. Under journald
// (JOURNAL_STREAM names the very file stderr is) each line starts with a
// syslog priority prefix, "<3>" for errors, "<4>" warnings, "<6>" info,
// "<7>" debug, which journald strips and turns into the record's PRIORITY
// (so `journalctl -p warning` and its colours work), and the time is left
// out because journald stamps every line itself. Native journal fields
// would need the journal's socket protocol; stderr works under every
// manager and in a pipe alike.
//
// When stderr is a regular file, nothing rotates it (launchd opens it and
// never looks again), so Talon bounds it: past StderrMaxBytes (default 10
// MiB) it truncates the file and notes that talon.log has the history.
//
// StderrPretty and StderrPlain (uncoloured text, warnings and up by
// default) force a style at StderrLevel; StderrOff writes nothing to
// stderr. A failing stderr — a closed pipe, a full disk behind a redirect —
// never stops the file logging and never crashes the process: the stderr
// copy goes through a private duplicate of file descriptor 2, so a write
// to a closed pipe returns EPIPE instead of raising the SIGPIPE that Go
// turns into an exit for descriptors 1 and 2, and the copy stops at the
// first error.
//
// # Keys
//
// Use the standard keys for the things they name: KeyErr ("err"), KeyProbe
// ("probe"), KeyState ("state"), KeyRung ("rung"), KeyDur ("dur", a
// time.Duration). Scope a logger with logger.With(logging.KeyProbe, name).
//
// # Secrets
//
// Secrets are opaque types. A secret value must implement fmt.Stringer (and
// GoString, Format and MarshalJSON, slog.LogValuer if it can reach slog)
// returning "<secret NAME>", and keep its value in an unexported field: the
// logger prints a Stringer's String() and nothing else, in the file and on
// stderr alike, so logging a secret prints only "<secret NAME>". Never log
// the raw string a secret was resolved to.
package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/charmbracelet/log"
	"github.com/mattn/go-isatty"
	"github.com/muesli/termenv"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/talon-dev/talon/internal/fsperm"
)

// Standard keys.
const (
	KeyErr   = "err"
	KeyProbe = "probe"
	KeyState = "state"
	KeyRung  = "rung"
	KeyDur   = "dur"
)

// FileName is the log file's name inside the state directory.
const FileName = "talon.log"

// TimeFormat is the timestamp of the file and of plain stderr lines.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// prettyTimeFormat is the timestamp of pretty (terminal) lines, local time.
const prettyTimeFormat = "15:04:05.000"

// Defaults for Options.
const (
	DefaultMaxSizeMB  = 10
	DefaultMaxBackups = 5
	// DefaultStderrMaxBytes bounds a stderr that is a regular file.
	DefaultStderrMaxBytes = 10 << 20
)

// StderrMode says what goes to stderr.
type StderrMode int

// Stderr modes; see the package documentation.
const (
	StderrAuto StderrMode = iota
	StderrPretty
	StderrPlain
	StderrOff
	StderrService
)

func (m StderrMode) String() string {
	switch m {
	case StderrAuto:
		return "auto"
	case StderrPretty:
		return "pretty"
	case StderrPlain:
		return "plain"
	case StderrOff:
		return "off"
	case StderrService:
		return "service"
	}
	return fmt.Sprintf("StderrMode(%d)", int(m))
}

// ParseStderrMode parses "auto", "pretty", "plain" or "off" (the config
// spelling).
func ParseStderrMode(s string) (StderrMode, error) {
	for _, m := range []StderrMode{StderrAuto, StderrPretty, StderrPlain, StderrOff, StderrService} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("log stderr mode %q: want auto, pretty, plain, service or off", s)
}

// Options configure New.
type Options struct {
	// Dir is the state directory; the log is Dir/talon.log. Empty: no file
	// (for one-shot CLI commands).
	Dir string
	// Level is the lowest level written to the file (and to stderr in
	// StderrAuto mode on a terminal). Zero: info.
	Level log.Level
	// Stderr is where the stderr copy goes. Nil: the process's stderr.
	Stderr io.Writer
	// StderrMode chooses the stderr copy's style. Zero: StderrAuto.
	StderrMode StderrMode
	// StderrLevel is the lowest level copied to stderr in StderrPretty,
	// StderrPlain and StderrService modes. Zero: info.
	StderrLevel log.Level
	// StderrMaxBytes bounds stderr when it is a regular file. Zero:
	// DefaultStderrMaxBytes.
	StderrMaxBytes int64
	// Getenv reads the environment (JOURNAL_STREAM, INVOCATION_ID). Nil:
	// os.Getenv.
	Getenv func(string) string
	// MaxSizeMB is the size at which the file rotates, in megabytes.
	// Zero: DefaultMaxSizeMB.
	MaxSizeMB int
	// MaxBackups is how many rotated files are kept. Zero: DefaultMaxBackups.
	MaxBackups int
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// New builds the logger. The Closer flushes and closes the file (and the
// stderr duplicate); records logged after Close are dropped.
func New(opts Options) (*log.Logger, io.Closer, error) {
	if opts.MaxSizeMB <= 0 {
		opts.MaxSizeMB = DefaultMaxSizeMB
	}
	if opts.MaxBackups <= 0 {
		opts.MaxBackups = DefaultMaxBackups
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	out := &fanout{fileLevel: opts.Level}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("log directory: %w", err)
		}
		path := filepath.Join(opts.Dir, FileName)
		// lumberjack follows a symbolic link when it opens the file (and
		// copies the mode of what it finds when it rotates): refuse a link
		// and make the file 0600 before it looks. It creates new files
		// 0600 itself, and the state directory's check at start keeps
		// other users from planting a link later.
		f, err := fsperm.OpenPrivate(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
		if err != nil {
			return nil, nil, fmt.Errorf("log file: %w", err)
		}
		f.Close()
		lj := &lumberjack.Logger{
			Filename:   path,
			MaxSize:    opts.MaxSizeMB,
			MaxBackups: opts.MaxBackups,
			LocalTime:  false,
			Compress:   false,
		}
		// Open now, so that an unwritable file is an error here and not a
		// silently lost first record.
		if _, err := lj.Write(nil); err != nil {
			return nil, nil, fmt.Errorf("log file: %w", err)
		}
		out.file = lj
	}
	level := opts.Level
	if m, err := newMirror(opts); err != nil {
		out.Close()
		return nil, nil, err
	} else if m != nil {
		out.mirror = m
		level = min(level, m.level)
	}
	logger := log.NewWithOptions(out, log.Options{
		Level:           level,
		ReportTimestamp: true,
		TimeFormat:      TimeFormat,
		TimeFunction:    func(time.Time) time.Time { return now().UTC() },
		Formatter:       log.JSONFormatter,
	})
	return logger, out, nil
}

// fanout receives each record as one JSON line and hands it to the file and
// the stderr copy.
type fanout struct {
	mu        sync.Mutex
	file      io.WriteCloser
	fileLevel log.Level
	mirror    *mirror
	closed    bool
}

func (f *fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return len(p), nil
	}
	var rec *record
	if f.mirror != nil {
		rec = parseRecord(p)
	}
	var err error
	if f.file != nil && (rec == nil || rec.level >= f.fileLevel) {
		_, err = f.file.Write(p)
	}
	if f.mirror != nil {
		f.mirror.emit(p, rec)
	}
	return len(p), err
}

// Close closes the file and the stderr duplicate.
func (f *fanout) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	if f.file != nil {
		errs = append(errs, f.file.Close())
	}
	if f.mirror != nil && f.mirror.closer != nil {
		errs = append(errs, f.mirror.closer.Close())
	}
	return errors.Join(errs...)
}

// mirror re-renders JSON records as text lines on stderr.
type mirror struct {
	level  log.Level
	text   *log.Logger
	out    *guard
	closer io.Closer
	// priority prefixes each line with its syslog priority, for journald.
	priority bool
}

func newMirror(opts Options) (*mirror, error) {
	if opts.StderrMode == StderrOff {
		return nil, nil
	}
	w := opts.Stderr
	var closer io.Closer
	if w == nil || w == os.Stderr {
		f, err := dupStderr()
		if err != nil {
			return nil, fmt.Errorf("stderr: %w", err)
		}
		if f == nil { // the process has no stderr
			return nil, nil
		}
		w = f
		if f != os.Stderr {
			closer = f
		}
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	tty, journal, regular := false, false, false
	if f, ok := w.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
		journal = sameFile(f, getenv("JOURNAL_STREAM"))
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			regular = true
		}
	}
	managed := getenv("JOURNAL_STREAM") != "" || getenv("INVOCATION_ID") != ""
	mode, level := opts.StderrMode, opts.StderrLevel
	if mode == StderrAuto {
		if tty && !managed {
			mode, level = StderrPretty, opts.Level
		} else {
			mode, level = StderrService, opts.Level
		}
	}
	g := &guard{w: w}
	if f, ok := w.(*os.File); ok && regular {
		g.file, g.limit = f, opts.StderrMaxBytes
		if g.limit <= 0 {
			g.limit = DefaultStderrMaxBytes
		}
		if fi, err := f.Stat(); err == nil {
			g.size = fi.Size()
		}
	}
	m := &mirror{level: level, out: g, closer: closer}
	textOpts := log.Options{Level: log.DebugLevel, ReportTimestamp: true, Formatter: log.TextFormatter}
	switch {
	case mode == StderrService:
		textOpts.Formatter = log.LogfmtFormatter
		textOpts.TimeFormat = TimeFormat
		textOpts.TimeFunction = func(t time.Time) time.Time { return t.UTC() }
		if journal {
			textOpts.ReportTimestamp = false // journald stamps every line
			m.priority = true
		}
	case mode == StderrPretty:
		textOpts.TimeFormat = prettyTimeFormat
		textOpts.TimeFunction = func(t time.Time) time.Time { return t.Local() }
	default:
		textOpts.TimeFormat = TimeFormat
		textOpts.TimeFunction = func(t time.Time) time.Time { return t.UTC() }
	}
	m.text = log.NewWithOptions(g, textOpts)
	profile := termenv.Ascii
	if mode == StderrPretty && tty {
		profile = termenv.NewOutput(w).EnvColorProfile()
	}
	m.text.SetColorProfile(profile)
	if profile != termenv.Ascii {
		styles := log.DefaultStyles()
		styles.Keys[KeyErr] = styles.Levels[log.ErrorLevel].UnsetString().UnsetMaxWidth()
		styles.Values[KeyErr] = styles.Keys[KeyErr].Bold(false)
		m.text.SetStyles(styles)
	}
	return m, nil
}

func (m *mirror) emit(line []byte, rec *record) {
	if m.out.dead() {
		return
	}
	if rec == nil { // not a record we understand: copy it as it is
		m.out.Write(line)
		return
	}
	if rec.level < m.level {
		return
	}
	l := m.text
	if rec.prefix != "" {
		l = l.WithPrefix(rec.prefix)
	}
	if m.priority {
		m.out.Write([]byte(syslogPriority(rec.level)))
	}
	l.Handle(context.Background(), rec.slog())
}

// syslogPriority is the "<N>" prefix journald reads as the line's priority.
func syslogPriority(l log.Level) string {
	switch {
	case l >= log.ErrorLevel:
		return "<3>"
	case l >= log.WarnLevel:
		return "<4>"
	case l >= log.InfoLevel:
		return "<6>"
	}
	return "<7>"
}

// guard writes to stderr until the first error, then drops everything: a
// closed pipe stays closed. When stderr is a regular file it also keeps it
// under limit bytes.
type guard struct {
	w      io.Writer
	failed bool

	file  *os.File // set when stderr is a regular file
	size  int64
	limit int64
}

func (g *guard) dead() bool { return g.failed }

func (g *guard) Write(p []byte) (int, error) {
	if g.failed {
		return len(p), nil
	}
	if g.file != nil && g.size+int64(len(p)) > g.limit {
		g.truncate()
	}
	if _, err := g.w.Write(p); err != nil {
		g.failed = true
	}
	g.size += int64(len(p))
	return len(p), nil
}

// truncate empties the stderr file. The service manager opened it for
// appending, so the next line lands at the start again.
func (g *guard) truncate() {
	if err := g.file.Truncate(0); err != nil {
		g.file = nil // cannot bound it: keep writing
		return
	}
	g.file.Seek(0, io.SeekStart)
	note := fmt.Sprintf("(talon emptied this file at %d bytes; talon.log in the state directory keeps the full history)\n", g.limit)
	g.w.Write([]byte(note))
	g.size = int64(len(note))
}
