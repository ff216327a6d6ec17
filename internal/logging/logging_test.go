package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/log"
)

var clock = func() time.Time { return time.Date(2026, 11, 23, 4, 12, 0, 481_000_000, time.FixedZone("CET", 3600)) }

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("%s:%d is not JSON: %v\n%s", path, n, err, sc.Text())
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFileJSONLines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var stderr bytes.Buffer
	logger, closer, err := New(Options{Dir: dir, Stderr: &stderr, StderrMode: StderrOff, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("not at info")
	logger.Info("cycle", KeyState, "degraded", "probes", 12, "failed", 1, KeyDur, 1500*time.Millisecond, "ok", true)
	logger.With(KeyProbe, "redis").Warn("probe down\nsecond line", "output", "café ✓ 終 \x01 \"q\"")
	logger.Error("rung failed", KeyRung, "heal", KeyErr, errors.New("exit status 1"))
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	logger.Info("after close is dropped")

	lines := readLines(t, filepath.Join(dir, FileName))
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3: %v", len(lines), lines)
	}
	for _, l := range lines {
		if l["time"] != "2026-11-23T03:12:00.481Z" {
			t.Errorf("time %v, want RFC 3339 UTC with milliseconds", l["time"])
		}
	}
	want := []map[string]any{
		{"level": "info", "msg": "cycle", "state": "degraded", "probes": json.Number("12"), "failed": json.Number("1"), "dur": "1.5s", "ok": true},
		{"level": "warn", "msg": "probe down\nsecond line", "probe": "redis", "output": "café ✓ 終 \x01 \"q\""},
		{"level": "error", "msg": "rung failed", "rung": "heal", "err": "exit status 1"},
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %#v, want %#v", i+1, k, lines[i][k], v)
			}
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, FileName)); fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("log file mode %v is readable by others", fi.Mode().Perm())
	}
}

func TestLevels(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var stderr bytes.Buffer
	logger, closer, err := New(Options{Dir: dir, Level: log.WarnLevel, Stderr: &stderr, StderrMode: StderrPlain, StderrLevel: log.DebugLevel})
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("d")
	logger.Info("i")
	logger.Warn("w")
	closer.Close()
	lines := readLines(t, filepath.Join(dir, FileName))
	if len(lines) != 1 || lines[0]["msg"] != "w" {
		t.Errorf("file at warn: %v", lines)
	}
	if n := strings.Count(stderr.String(), "\n"); n != 3 {
		t.Errorf("stderr at debug has %d lines:\n%s", n, stderr.String())
	}
}

func TestStderrModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode  StderrMode
		level log.Level
		want  []string // regexps, one per line
	}{
		// Not a terminal (a service manager, a pipe): logfmt, info and up.
		{StderrAuto, 0, []string{
			`^time=2026-11-23T03:12:00\.481Z level=info msg=cycle state=degraded$`,
			`^time=2026-11-23T03:12:00\.481Z level=warn msg="probe down" probe=redis output="café ✓ 終"$`,
			`^time=2026-11-23T03:12:00\.481Z level=error msg="rung failed" rung=heal err="exit status 1" dur=2m0s n=3 obj="{\\"a\\":\[1,2\]}"$`,
		}},
		{StderrPlain, log.InfoLevel, []string{
			`^2026-11-23T03:12:00\.481Z INFO cycle state=degraded$`,
			`^2026-11-23T03:12:00\.481Z WARN probe down probe=redis output="café ✓ 終"$`,
			`^2026-11-23T03:12:00\.481Z ERRO rung failed`,
		}},
		{StderrPretty, log.InfoLevel, []string{
			`^\d\d:\d\d:\d\d\.481 INFO cycle state=degraded$`,
			`^\d\d:\d\d:\d\d\.481 WARN probe down`,
			`^\d\d:\d\d:\d\d\.481 ERRO rung failed`,
		}},
		{StderrOff, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			logger, closer, err := New(Options{Stderr: &stderr, StderrMode: tc.mode, StderrLevel: tc.level, Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			logger.Info("cycle", KeyState, "degraded")
			logger.Warn("probe down", KeyProbe, "redis", "output", "café ✓ 終")
			logger.Error("rung failed", KeyRung, "heal", KeyErr, errors.New("exit status 1"), KeyDur, 2*time.Minute, "n", 3, "obj", map[string]any{"a": []int{1, 2}})
			closer.Close()
			got := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if stderr.Len() == 0 {
				got = nil
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(got), len(tc.want), stderr.String())
			}
			for i, re := range tc.want {
				if !regexp.MustCompile(re).MatchString(got[i]) {
					t.Errorf("line %d:\n%s\ndoes not match\n%s", i+1, got[i], re)
				}
			}
		})
	}
}

func TestPrefixSurvivesTheStderrCopy(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	logger, closer, _ := New(Options{Stderr: &stderr, StderrMode: StderrPlain, Now: clock})
	logger.WithPrefix("worker").Info("spawned", "pid", 42)
	closer.Close()
	if got := stderr.String(); got != "2026-11-23T03:12:00.481Z INFO worker: spawned pid=42\n" {
		t.Errorf("%q", got)
	}
}

// secret mimics the secret type of the builtins: an opaque value that
// prints as <secret NAME> everywhere.
type secret struct{ name, value string }

func (s secret) String() string             { return "<secret " + s.name + ">" }
func (s secret) GoString() string           { return s.String() }
func (s secret) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }
func (s secret) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(s.String())
	return bytes.TrimSpace(b.Bytes()), err
}

func TestSecretsAreRedacted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var stderr bytes.Buffer
	logger, closer, err := New(Options{Dir: dir, Stderr: &stderr, StderrMode: StderrPlain})
	if err != nil {
		t.Fatal(err)
	}
	tok := secret{name: "telegram_bot_token", value: "123456:AAE-sup3rs3cr3t"}
	logger.Info("leased", "token", tok)
	logger.With("token", tok).Warn("sending page")
	logger.Infof("formatted %v %+v %#v %s", tok, tok, tok, tok)
	logger.Info("in a slice", "tokens", []secret{tok})
	logger.Info(tok)
	closer.Close()
	file, _ := os.ReadFile(filepath.Join(dir, FileName))
	for name, out := range map[string]string{"file": string(file), "stderr": stderr.String()} {
		if strings.Contains(out, "sup3rs3cr3t") {
			t.Errorf("%s leaks the secret:\n%s", name, out)
		}
		if n := strings.Count(out, "<secret telegram_bot_token>"); n != 8 {
			t.Errorf("%s shows <secret telegram_bot_token> %d times, want 8:\n%s", name, n, out)
		}
	}
}

func TestRotationKeepsGenerations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logger, closer, err := New(Options{Dir: dir, StderrMode: StderrOff, MaxSizeMB: 1, MaxBackups: 2})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1000)
	const n = 3600 // ≈ 3.7 MB: three rotations
	for i := 0; i < n; i++ {
		logger.Info("cycle", "i", i, "pad", pad)
	}
	closer.Close()
	// lumberjack deletes old backups in the background.
	var backups []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		backups, _ = filepath.Glob(filepath.Join(dir, "talon-*.log"))
		if len(backups) <= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(backups) != 2 {
		t.Fatalf("backups %v, want 2", backups)
	}
	total := 0
	for _, p := range append(backups, filepath.Join(dir, FileName)) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over MaxSizeMB", p, fi.Size())
		}
		lines := readLines(t, p) // every generation holds whole JSON lines
		total += len(lines)
		if strings.HasSuffix(p, ".gz") {
			t.Errorf("%s is compressed", p)
		}
	}
	if total == 0 || total >= n {
		t.Errorf("%d lines kept of %d", total, n)
	}
	last := readLines(t, filepath.Join(dir, FileName))
	if got := last[len(last)-1]["i"]; got != json.Number(fmt.Sprint(n-1)) {
		t.Errorf("last line i=%v", got)
	}
}

func TestClosedPipeStderr(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	logger, closer, err := New(Options{Dir: dir, Stderr: w, StderrMode: StderrPlain})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		logger.Info("line", "i", i)
	}
	closer.Close()
	if n := len(readLines(t, filepath.Join(dir, FileName))); n != 100 {
		t.Errorf("file has %d lines, want 100", n)
	}
}

// The real case: the daemon's own stderr (descriptor 2) is a pipe whose
// reader has gone. Go kills a process that writes to such a pipe on
// descriptor 1 or 2 with SIGPIPE; the logger must not. Runs in a child
// process whose stderr is that pipe.
func TestClosedProcessStderrDoesNotKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // nobody will ever read
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperClosedStderr$", "-test.v")
	cmd.Env = append(os.Environ(), "TALON_LOGGING_HELPER_DIR="+dir)
	cmd.Stderr = w
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err = cmd.Run()
	w.Close()
	if err != nil {
		t.Fatalf("child died: %v (%s)\n%s", err, cmd.ProcessState, stdout.String())
	}
	if !strings.Contains(stdout.String(), "helper done") {
		t.Fatalf("child did not finish:\n%s", stdout.String())
	}
	if n := len(readLines(t, filepath.Join(dir, FileName))); n != 50 {
		t.Errorf("file has %d lines, want 50", n)
	}
}

func TestHelperClosedStderr(t *testing.T) {
	dir := os.Getenv("TALON_LOGGING_HELPER_DIR")
	if dir == "" {
		t.Skip("helper for TestClosedProcessStderrDoesNotKill")
	}
	logger, closer, err := New(Options{Dir: dir, StderrMode: StderrPlain})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		logger.Error("stderr is gone", "i", i)
	}
	closer.Close()
	fmt.Println("helper done")
}

func TestParseStderrMode(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"auto", "pretty", "plain", "off", "service"} {
		m, err := ParseStderrMode(s)
		if err != nil || m.String() != s {
			t.Errorf("%s: %v %v", s, m, err)
		}
	}
	if _, err := ParseStderrMode("loud"); err == nil || err.Error() != `log stderr mode "loud": want auto, pretty, plain, service or off` {
		t.Errorf("err = %v", err)
	}
}

func TestUnwritableDir(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	_, _, err := New(Options{Dir: filepath.Join(file, "sub"), StderrMode: StderrOff})
	if err == nil || !strings.HasPrefix(err.Error(), "log directory: ") {
		t.Errorf("err = %v", err)
	}
}

// A talon.log that is a symbolic link is refused before lumberjack (which
// follows links) opens it; the file it names is left alone.
func TestLogRefusesALink(t *testing.T) {
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
	_, _, err := New(Options{Dir: dir, StderrMode: StderrOff})
	if want := "log file: " + path + " is a symbolic link; talon does not follow links in its state directory, since one could aim its writes at any file: remove it"; err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("the link's target was changed: %q", b)
	}
}

// The log and its rotations are 0600, even when an older talon.log was not.
func TestLogFilesArePrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	logger, closer, err := New(Options{Dir: dir, StderrMode: StderrOff, MaxSizeMB: 1, MaxBackups: 3})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1000)
	for i := 0; i < 1200; i++ { // ≈ 1.2 MB: one rotation
		logger.Info("cycle", "i", i, "pad", pad)
	}
	closer.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "talon*.log"))
	if len(files) != 2 {
		t.Fatalf("files %v, want talon.log and one backup", files)
	}
	for _, p := range files {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", p, fi.Mode(), err)
		}
	}
}

// Under journald (JOURNAL_STREAM names the file stderr is) every line
// starts with its syslog priority and carries no time: journald reads both.
func TestJournaldPriorityPrefix(t *testing.T) {
	t.Parallel()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	stream := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	env := func(k string) string {
		if k == "JOURNAL_STREAM" {
			return stream
		}
		return ""
	}
	logger, closer, err := New(Options{Stderr: f, Getenv: env, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("not at info")
	logger.Info("cycle", KeyState, "healthy")
	logger.Warn("probe down", KeyProbe, "redis")
	logger.Error("rung failed", KeyRung, "heal")
	closer.Close()
	b, _ := os.ReadFile(f.Name())
	want := "<6>level=info msg=cycle state=healthy\n<4>level=warn msg=\"probe down\" probe=redis\n<3>level=error msg=\"rung failed\" rung=heal\n"
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	// A JOURNAL_STREAM that names another file (a child's redirect) gets
	// logfmt with times and no prefix.
	g, _ := os.CreateTemp(t.TempDir(), "stderr")
	defer g.Close()
	logger, closer, _ = New(Options{Stderr: g, Getenv: env, Now: clock})
	logger.Info("cycle")
	closer.Close()
	if b, _ := os.ReadFile(g.Name()); string(b) != "time=2026-11-23T03:12:00.481Z level=info msg=cycle\n" {
		t.Fatalf("other file: %q", b)
	}
}

// launchd's StandardErrorPath is a file nothing rotates: Talon keeps it
// under its bound.
func TestStderrFileIsBounded(t *testing.T) {
	t.Parallel()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "launchd.stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	logger, closer, err := New(Options{Stderr: f, StderrMaxBytes: 4096, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		logger.Info("cycle", "n", i)
	}
	closer.Close()
	b, _ := os.ReadFile(f.Name())
	if len(b) > 4096 || len(b) == 0 {
		t.Fatalf("stderr file is %d bytes, bound 4096", len(b))
	}
	if !strings.HasPrefix(string(b), "(talon emptied this file at 4096 bytes;") || !strings.Contains(string(b), "n=499\n") {
		t.Fatalf("after truncation:\n%s", b)
	}
}
