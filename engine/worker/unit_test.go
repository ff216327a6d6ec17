package worker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/fsperm"
)

func TestParseEnvFile(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		want     []string
		err      string
	}{
		{name: "empty", in: "", want: nil},
		{name: "plain", in: "A=1\nB=two\n", want: []string{"A=1", "B=two"}},
		{name: "comments and blanks", in: "# c\n\n   # indented\nA=1\n", want: []string{"A=1"}},
		{name: "export prefix", in: "export A=1\nexport\tB=2\n", want: []string{"A=1", "B=2"}},
		{name: "double quotes", in: `FOO="bar baz"`, want: []string{"FOO=bar baz"}},
		{name: "single quotes", in: `FOO='bar "x"'`, want: []string{`FOO=bar "x"`}},
		{name: "mismatched quotes kept", in: `FOO="bar'`, want: []string{`FOO="bar'`}},
		{name: "lone quote kept", in: `FOO="`, want: []string{`FOO="`}},
		{name: "no escapes", in: `FOO="a\nb"`, want: []string{`FOO=a\nb`}},
		{name: "hash in value kept", in: "FOO=a # b", want: []string{"FOO=a # b"}},
		{name: "equals in value", in: "URL=http://x/?a=b", want: []string{"URL=http://x/?a=b"}},
		{name: "spaces around", in: "  A = 1  \r\n", want: []string{"A=1"}},
		{name: "empty value", in: "A=\nB=\"\"", want: []string{"A=", "B="}},
		{name: "exported var named export", in: "exportX=1", want: []string{"exportX=1"}},
		{name: "bom", in: "\uFEFFA=1", want: []string{"A=1"}},
		{name: "no equals", in: "A=1\njunk\n", err: `w.env:2: expected KEY=VALUE, got "junk"`},
		{name: "bad key", in: "1A=x", err: `w.env:1: invalid variable name "1A"`},
		{name: "space in key", in: "A B=x", err: `w.env:1: invalid variable name "A B"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEnvFile(strings.NewReader(tc.in), "w.env")
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	t.Parallel()
	got := mergeEnv([]string{"PATH=/bin", "A=1"}, []string{"A=2", "B=3"}, []string{"WORKER_ROLE=host"})
	want := []string{"PATH=/bin", "A=2", "B=3", "WORKER_ROLE=host"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// The worker never carries a run marker, even one in the environment it is
// given: no killTree and no sweep after a crash takes it for a command's.
func TestChildEnvHasNoRunMarker(t *testing.T) {
	t.Parallel()
	s := New(Options{Command: []string{"w"}, Port: 1, Logger: log.New(io.Discard),
		Env: []string{"PATH=/bin", effect.MarkerVar + "=0123abcd-ffff", "A=1"}})
	got, err := s.childEnv(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"PATH=/bin", "A=1", "WORKER_ROLE=host"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestIsWorkerCopy(t *testing.T) {
	t.Parallel()
	cmd := []string{"bun", "run", "src/serve.ts"}
	cases := []struct {
		cmdline string
		want    bool
	}{
		{"bun run src/serve.ts", true},
		{"/Users/joel/.bun/bin/bun run src/serve.ts", true},
		{"/usr/bin/env bun run src/serve.ts", true},
		{"bun run src/serve.ts --port 3111", true},
		{"bun run src/other.ts", false},
		{"bun run", false},
		{"node src/serve.ts", false},
		{"python3 -m http.server 3111", false},
		{"bunx run src/serve.ts", false},
		{"", false},
	}
	for _, tc := range cases {
		if got := isWorkerCopy(tc.cmdline, cmd); got != tc.want {
			t.Errorf("isWorkerCopy(%q) = %v, want %v", tc.cmdline, got, tc.want)
		}
	}
	if !isWorkerCopy("/opt/worker", []string{"./worker"}) || isWorkerCopy("x", nil) {
		t.Error("bare command")
	}
}

func TestParseProcNet(t *testing.T) {
	t.Parallel()
	// port 3111 = 0x0C27
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0C27 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0
   1: 00000000:0C27 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:D431 0100007F:0C27 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:0C27 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 444 1 0000000000000000 20 4 30 10 -1
   4: 0501A8C0:0C27 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 555 1 0000000000000000 100 0 0 10 0
   5: 0100007F:0C28 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 666 1 0000000000000000 100 0 0 10 0
`
	if got, want := parseProcNet(tcp, 3111), []string{"111", "222"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tcp: got %v, want %v (listeners on loopback and wildcard only; no connections)", got, want)
	}
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0C27 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0C27 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 888 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0C27 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 999 1 0000000000000000 100 0 0 10 0
   3: 000080FE00000000FF00FFFE01000000:0C27 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1010 1 0000000000000000 100 0 0 10 0
`
	if got, want := parseProcNet(tcp6, 3111), []string{"777", "888", "999"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tcp6: got %v, want %v", got, want)
	}
}

func TestProcListenersFindsOwnListener(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no procfs")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	conn, err := net.Dial("tcp", ln.Addr().String()) // a client: must not be listed
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ls, err := procListeners("/proc", port)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].PID != os.Getpid() || !strings.Contains(ls[0].Cmdline, filepath.Base(os.Args[0])) {
		t.Fatalf("listeners = %+v, want only this process (%d)", ls, os.Getpid())
	}
}

// fakeFX answers Exec from a table keyed by the joined argv.
type fakeFX struct {
	answers map[string]effect.ExecResult
	calls   []string
}

func (f *fakeFX) Exec(_ context.Context, c effect.Command) effect.ExecResult {
	k := strings.Join(c.Argv, " ")
	f.calls = append(f.calls, k)
	if r, ok := f.answers[k]; ok {
		return r
	}
	return effect.ExecResult{ExitCode: -1, Err: errors.New(c.Argv[0] + ": not found on PATH")}
}
func (f *fakeFX) Do(*http.Request) (*http.Response, error) { return nil, errors.New("no http") }
func (f *fakeFX) Dial(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("no dial")
}

func TestLsofListeners(t *testing.T) {
	t.Parallel()
	fx := &fakeFX{answers: map[string]effect.ExecResult{
		"lsof -nP -t -iTCP:3111 -sTCP:LISTEN": {Stdout: "123\n456\n"},
		"ps -o command= -p 123":               {Stdout: "/opt/homebrew/bin/bun run src/serve.ts\n"},
		"ps -o command= -p 456":               {ExitCode: 1},
	}}
	ls, err := lsofListeners(context.Background(), fx, nil, 3111)
	want := []Listener{{PID: 123, Cmdline: "/opt/homebrew/bin/bun run src/serve.ts"}, {PID: 456}}
	if err != nil || !reflect.DeepEqual(ls, want) {
		t.Fatalf("got %+v, %v; want %+v", ls, err, want)
	}

	none := &fakeFX{answers: map[string]effect.ExecResult{"lsof -nP -t -iTCP:3111 -sTCP:LISTEN": {ExitCode: 1}}}
	if ls, err := lsofListeners(context.Background(), none, nil, 3111); err != nil || len(ls) != 0 {
		t.Fatalf("no listeners: got %+v, %v", ls, err)
	}
	if _, err := lsofListeners(context.Background(), &fakeFX{}, nil, 3111); err == nil || !strings.Contains(err.Error(), "lsof: lsof: not found") {
		t.Fatalf("missing lsof: err = %v", err)
	}
}

func TestCheckExternalVerdicts(t *testing.T) {
	t.Parallel()
	uid := os.Getuid()
	gui := "launchctl print gui/" + strconv.Itoa(uid) + "/com.x.worker"
	cases := []struct {
		name           string
		label, unit    string
		answers        map[string]effect.ExecResult
		want           verdict
		owner, problem string
	}{
		{name: "launchd gui loaded", label: "com.x.worker",
			answers: map[string]effect.ExecResult{gui: {}},
			want:    owned, owner: "launchd service gui/" + strconv.Itoa(uid) + "/com.x.worker"},
		{name: "launchd system loaded", label: "com.x.worker",
			answers: map[string]effect.ExecResult{gui: {ExitCode: 113}, "launchctl print system/com.x.worker": {}},
			want:    owned, owner: "launchd service system/com.x.worker"},
		{name: "launchd not loaded", label: "com.x.worker",
			answers: map[string]effect.ExecResult{gui: {ExitCode: 113}, "launchctl print system/com.x.worker": {ExitCode: 113}},
			want:    absent},
		{name: "launchctl missing", label: "com.x.worker",
			want: unsure, problem: "launchctl: not found on PATH"},
		{name: "launchctl times out", label: "com.x.worker",
			answers: map[string]effect.ExecResult{gui: {ExitCode: -1, TimedOut: true}, "launchctl print system/com.x.worker": {ExitCode: 113}},
			want:    unsure, problem: "timed out"},
		{name: "systemd system active", unit: "w.service",
			answers: map[string]effect.ExecResult{"systemctl is-active w.service": {Stdout: "active\n"}},
			want:    owned, owner: "systemd unit w.service (system)"},
		{name: "systemd user activating", unit: "w.service",
			answers: map[string]effect.ExecResult{
				"systemctl is-active w.service":        {Stdout: "inactive\n", ExitCode: 3},
				"systemctl --user is-active w.service": {Stdout: "activating\n", ExitCode: 3}},
			want: owned, owner: "systemd unit w.service (user)"},
		{name: "systemd inactive, no user bus", unit: "w.service",
			answers: map[string]effect.ExecResult{
				"systemctl is-active w.service":        {Stdout: "inactive\n", ExitCode: 3},
				"systemctl --user is-active w.service": {Stderr: "Failed to connect to bus: No medium found", ExitCode: 1}},
			want: absent},
		{name: "systemd system bus down", unit: "w.service",
			answers: map[string]effect.ExecResult{
				"systemctl is-active w.service":        {Stderr: "Failed to connect to bus: No such file", ExitCode: 1},
				"systemctl --user is-active w.service": {Stdout: "inactive\n", ExitCode: 3}},
			want: unsure, problem: "exit 1: Failed to connect to bus"},
		{name: "both, launchd unsure, systemd owns", label: "com.x.worker", unit: "w.service",
			answers: map[string]effect.ExecResult{"systemctl is-active w.service": {Stdout: "active\n"}},
			want:    owned, owner: "systemd unit w.service (system)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{Command: []string{"w"}, Port: 1, ExternalLaunchdLabel: tc.label, ExternalSystemdUnit: tc.unit,
				Effects: &fakeFX{answers: tc.answers}})
			c := s.checkExternal(context.Background())
			if c.verdict != tc.want || c.owner != tc.owner || !strings.Contains(c.problem, tc.problem) {
				t.Fatalf("got %v owner=%q problem=%q; want %v owner=%q problem~%q", c.verdict, c.owner, c.problem, tc.want, tc.owner, tc.problem)
			}
		})
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{{Port: 1}, {Command: []string{"x"}, Port: 0}, {Command: []string{"x"}, Port: 70000}} {
		if err := New(o).Run(context.Background()); err == nil {
			t.Errorf("Run(%+v) = nil, want an error", o)
		}
	}
}

// The env file and the program are checked at every spawn (strict modes):
// one another user could change is refused, or used with a warning when
// relaxed (strict_modes = false).
func TestSpawnRefusesUnsafeFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	envFile := filepath.Join(dir, "w.env")
	prog := filepath.Join(dir, "w")
	for path, mode := range map[string]os.FileMode{envFile: 0o666, prog: 0o777} {
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	opts := Options{Command: []string{prog}, EnvFile: envFile, Port: 1, Logger: log.New(io.Discard),
		LogStdout: filepath.Join(dir, "out.log"), LogStderr: filepath.Join(dir, "err.log")}
	s := New(opts)
	_, err := s.childEnv(context.Background())
	if want := "worker env file: unsafe file " + envFile + " (owner root, uid 0, mode 0666): writable by group and others; fix: chmod go-w " + envFile; err == nil || err.Error() != want {
		t.Errorf("env file: got %v\nwant %s", err, want)
	}
	if err := os.Chmod(envFile, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.spawn(context.Background())
	if want := "start worker: unsafe file " + prog + " (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w " + prog; err == nil || err.Error() != want {
		t.Errorf("program: got %v\nwant %s", err, want)
	}

	if err := os.Chmod(envFile, 0o666); err != nil {
		t.Fatal(err)
	}
	var warned []string
	opts.Files = fsperm.New(false, func(e *fsperm.Error) { warned = append(warned, e.Path) })
	if _, err := New(opts).childEnv(context.Background()); err != nil || len(warned) != 1 || warned[0] != envFile {
		t.Errorf("relaxed: err %v, warned about %q", err, warned)
	}
}

// Found by FuzzLsof: a PID lsof cannot mean ("-5", "0", "+5") is refused
// before anything could signal it (kill(-5) is a process group, kill(0) our
// own), and lsof's multi-line warnings make a one-line error.
func TestLsofOddAnswers(t *testing.T) {
	t.Parallel()
	for _, out := range []string{"-5\n", "0\n", "+5\n", "123\n-1\n", "01\n", "0123\n"} {
		fx := &fakeFX{answers: map[string]effect.ExecResult{"lsof -nP -t -iTCP:3111 -sTCP:LISTEN": {Stdout: out},
			"ps -o command= -p 123": {Stdout: "x\n"}}}
		if ls, err := lsofListeners(context.Background(), fx, nil, 3111); err == nil || !strings.Contains(err.Error(), "unexpected output") {
			t.Errorf("lsof printing %q: got %+v, %v; want an unexpected output error", out, ls, err)
		}
	}
	warn := &fakeFX{answers: map[string]effect.ExecResult{"lsof -nP -t -iTCP:3111 -sTCP:LISTEN": {ExitCode: 1,
		Stderr: "lsof: WARNING: can't stat() fuse.gvfsd-fuse file system /run/user/1000/gvfs\n      Output information may be incomplete.\n"}}}
	_, err := lsofListeners(context.Background(), warn, nil, 3111)
	if want := "lsof: exit 1: lsof: WARNING: can't stat() fuse.gvfsd-fuse file system /run/user/1000/gvfs Output information may be incomplete."; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}
