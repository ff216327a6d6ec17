package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// talon runs the command line in-process; stdout is not a terminal, so
// output is JSON as when piped.
func talon(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	t.Setenv("TALON_STATE_DIR", t.TempDir())
	code = Main(args, &out, &errb)
	return out.String(), errb.String(), code
}

// testdataDir is a copy of testdata made by TestMain: Talon refuses files
// other users can change (strict modes), so tests never load the
// checkout's own files, whose modes and owner depend on how it was made.
var testdataDir string

func TestMain(m *testing.M) {
	// The test binary as talon, for a benchmark that measures a command in
	// a process of its own (its peak RSS).
	if len(os.Args) > 1 && os.Args[1] == "-talon-main" {
		os.Exit(Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	tmp, err := os.MkdirTemp("", "talon-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testdataDir = filepath.Join(tmp, "testdata")
	if err := fspermtest.CopyTree("testdata", testdataDir); err != nil {
		fmt.Fprintln(os.Stderr, "copy testdata:", err)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func testdata(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(testdataDir, name)
}

// normalize makes output independent of where the repository and HOME are.
func normalize(t *testing.T, s string) string {
	home, _ := os.UserHomeDir()
	s = strings.ReplaceAll(s, testdataDir, "$TESTDATA")
	return strings.ReplaceAll(s, home, "$HOME")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("output differs from %s (run go test -update and review the diff):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestValidateGolden(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"validate_good", []string{"validate", "--json", "--config", "$D/good/config.toml", "--policy", "$D/good"}, 0, ""},
		{"validate_syntax", []string{"validate", "--json", "--config", "$D/good/config.toml", "--policy", "$D/syntax"}, 1, ""},
		{"validate_missing_program", []string{"validate", "--config", "$D/good/config.toml", "--policy", "$D/missingprog"}, 0, ""},
		{"validate_missing_program_strict", []string{"validate", "--strict", "--config", "$D/good/config.toml", "--policy", "$D/missingprog"}, 1, ""},
		{"validate_bad_config", []string{"validate", "--config", "$D/badconfig/config.toml", "--policy", "$D/badconfig"}, 1, ""},
		{"validate_old_spelling", []string{"--config", "$D/good/config.toml", "--validate", "--policy", "$D/missingprog"}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				args[i] = strings.ReplaceAll(a, "$D", testdata(t, ""))
			}
			out, errOut, code := talon(t, args...)
			if code != tc.code || errOut != tc.stderr {
				t.Fatalf("exit %d stderr %q; want %d %q\n%s", code, errOut, tc.code, tc.stderr, out)
			}
			golden(t, tc.name, normalize(t, out))
		})
	}
}

func TestValidateSyntaxErrorLine(t *testing.T) {
	out, _, code := talon(t, "validate", "--json", "--config", testdata(t, "good/config.toml"), "--policy", testdata(t, "syntax"))
	var rep struct {
		OK     bool               `json:"ok"`
		Errors []*engine.PosError `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if code != 1 || rep.OK || len(rep.Errors) == 0 || rep.Errors[0].Line != 3 || rep.Errors[0].File != "talon.star" {
		t.Fatalf("exit %d report %+v", code, rep)
	}
}

func writePolicy(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "talon.star"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rendezvous is a probe that proves it ran beside the others: it marks its
// arrival in dir, then waits until all n probes have arrived. Run one at a
// time, the first would wait in vain: after 60 s it gives up and fails, and
// so does every later one at once.
const rendezvous = `dir=$1 n=$2
: > "$dir/arrived.$3"
end=$(($(date +%s) + 60))
while set -- "$dir"/arrived.*; [ $# -lt "$n" ]; do
	if [ -e "$dir/gave-up" ] || [ "$(date +%s)" -ge $end ]; then
		: > "$dir/gave-up"
		echo "only $# of $n probes had started"
		exit 1
	fi
	sleep 0.05
done
echo "all $n probes started"
`

func TestCheckRunsProbesConcurrently(t *testing.T) {
	const n = 10
	dir := t.TempDir()
	script := filepath.Join(dir, "rendezvous.sh")
	if err := os.WriteFile(script, []byte(rendezvous), 0o644); err != nil {
		t.Fatal(err)
	}
	meet := filepath.Join(dir, "meet")
	os.Mkdir(meet, 0o755)
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "probe.exec(\"meet%d\", [\"sh\", %q, %q, \"%d\", \"%d\"], timeout = \"120s\")\n", i, script, meet, n, i)
	}
	policy := writePolicy(t, b.String())
	out, errOut, code := talon(t, "check", "--config", testdata(t, "good/config.toml"), "--policy", policy)
	var results []engine.Result
	if err := json.Unmarshal([]byte(out), &results); err != nil || code != 0 || errOut != "" {
		t.Fatalf("exit %d stderr %q err %v: the probes did not all run at once\n%s", code, errOut, err, out)
	}
	if len(results) != n {
		t.Fatalf("%d results, want %d\n%s", len(results), n, out)
	}
	// A probe passes only if it met all the others. (Its output is not
	// checked: a host stalled for more than effect's drainAfterExit right
	// after the exit can lose it, which is no matter of concurrency.)
	for _, r := range results {
		if !r.Passed {
			t.Errorf("%s failed: %q", r.Name, r.Output)
		}
	}
}

func TestCheckExitCodesAndProbeFilter(t *testing.T) {
	policy := writePolicy(t, "probe.exec(\"good\", [\"true\"])\nprobe.exec(\"bad\", [\"false\"], critical = True)\n")
	cfg := testdata(t, "good/config.toml")
	if _, _, code := talon(t, "check", "--config", cfg, "--policy", policy); code != 1 {
		t.Fatalf("a failing probe: exit %d, want 1", code)
	}
	out, _, code := talon(t, "check", "--probe", "good", "--config", cfg, "--policy", policy)
	if code != 0 || !strings.Contains(out, `"name": "good"`) || strings.Contains(out, `"bad"`) {
		t.Fatalf("--probe good: exit %d\n%s", code, out)
	}
	out, _, code = talon(t, "--check", "--json", "--config", cfg, "--policy", policy)
	var results []map[string]any
	if err := json.Unmarshal([]byte(out), &results); err != nil || code != 1 || len(results) != 2 {
		t.Fatalf("--check: exit %d %v\n%s", code, err, out)
	}
	for _, key := range []string{"name", "passed", "output", "duration_ms", "critical"} {
		if _, ok := results[1][key]; !ok {
			t.Fatalf("result lacks %q: %v", key, results[1])
		}
	}
	if _, errOut, code := talon(t, "check", "--probe", "nope", "--config", cfg, "--policy", policy); code != 2 || !strings.Contains(errOut, `no probe named "nope"`) {
		t.Fatalf("unknown probe: exit %d %q", code, errOut)
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, 2, `talon: unknown command "frobnicate"; see talon help` + "\n"},
		{[]string{"check", "--bogus"}, 2, "talon: check: flag provided but not defined: -bogus; see talon help check\n"},
		{[]string{"check", "--policy", "/nonexistent/talon-policy"}, 1, "talon: talon.star: no policy directory /nonexistent/talon-policy; create it with a talon.star, or point policy_dir elsewhere\n"},
		{[]string{"check", "foo"}, 2, "talon: check takes no arguments, got \"foo\"; see talon help check\n"},
		{[]string{"--worker-only"}, 2, "talon: --worker-only: [worker] command is not set in " + testdata(t, "good/config.toml") + "\n"},
	}
	for _, tc := range cases {
		_, errOut, code := talon(t, append(tc.args, "--config", testdata(t, "good/config.toml"))...)
		if code != tc.code || errOut != tc.want {
			t.Errorf("talon %v: exit %d stderr %q; want %d %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

func TestStatusFromStateFile(t *testing.T) {
	dir := t.TempDir()
	st := engine.NewState(time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC))
	st.Phase = engine.Critical
	if err := engine.SaveState(engine.StatePath(dir), st); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("[health]\nbind = \"127.0.0.1:1\"\n"), 0o644)
	out, errOut, code := talon(t, "status", "--config", cfg, "--state-dir", dir)
	if code != 0 || errOut != "" || !strings.Contains(out, `"source": "state_file"`) || !strings.Contains(out, `"phase": "critical"`) {
		t.Fatalf("exit %d %q\n%s", code, errOut, out)
	}
	os.WriteFile(engine.StatePath(dir), []byte(`{"version":1,"phase":"critical"`), 0o600)
	_, errOut, code = talon(t, "--status", "--config", cfg, "--state-dir", dir)
	if code != 1 || !strings.Contains(errOut, "is corrupt") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("corrupt state: exit %d %q", code, errOut)
	}
}

// A failing policy test names its file:line, and talon test exits 1 with
// go test's closing lines.
func TestTalonTestReportsFailures(t *testing.T) {
	out, errOut, code := talon(t, "test", testdata(t, "failingtests"), "--config", testdata(t, "replay/config.toml"))
	want := "--- FAIL: test_fails (talon_test.star, 0.00s)\n" +
		"    talon_test.star:13:15: testing.eq: got \"critical\", want \"healthy\"\n" +
		"    talon_test.star:14:15: testing.eq: got 1, want 2: one page only\n" +
		"--- FAIL: test_errors (talon_test.star, 0.00s)\n" +
		"    talon_test.star:18:11: watchdog.down: the policy has no probe \"nope\"\n" +
		"--- FAIL: test_bomb (talon_test.star, 0.00s)\n" +
		"    talon_test.star:22:13: memory budget of 512 MiB exhausted: list of 1099511627776 elements; build smaller values in the test\n" +
		"FAIL\t" + testdata(t, "failingtests") + "\n" +
		"1 passed, 3 failed\n"
	// How long a test took depends on the machine: compare the rest.
	out = regexp.MustCompile(`\(talon_test\.star, \d+\.\d\ds\)`).ReplaceAllString(out, "(talon_test.star, 0.00s)")
	if code != 1 || errOut != "" || out != want {
		t.Fatalf("exit %d stderr %q\n%s\nwant\n%s", code, errOut, out, want)
	}
	out, _, code = talon(t, "test", testdata(t, "replay/a"), "--config", testdata(t, "replay/config.toml"))
	if code != 0 || out != "ok\t"+testdata(t, "replay/a")+"\n1 passed, 0 failed\n" {
		t.Fatalf("testing.replay: exit %d\n%s", code, out)
	}
	out, _, code = talon(t, "test", testdata(t, "failingtests"), "--run", "passes", "--config", testdata(t, "replay/config.toml"))
	if code != 0 || !strings.HasSuffix(out, "1 passed, 0 failed\n") {
		t.Fatalf("--run passes: exit %d\n%s", code, out)
	}
}

// journal cut keeps the records of a window, byte for byte, and the excerpt
// replays.
func TestJournalCut(t *testing.T) {
	src := filepath.Join(testdata(t, "replay"), "journal.jsonl")
	out, errOut, code := talon(t, "journal", "cut", "--since", "2026-11-23T03:08:00Z", "--until", "2026-11-23 03:42", src, "--config", testdata(t, "replay/config.toml"))
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d %q", code, errOut)
	}
	all, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(string(all)), "\n") {
		var r struct {
			T time.Time `json:"t"`
		}
		json.Unmarshal([]byte(line), &r)
		if !r.T.Before(time.Date(2026, 11, 23, 3, 8, 0, 0, time.UTC)) && !r.T.After(time.Date(2026, 11, 23, 3, 42, 0, 0, time.UTC)) {
			want = append(want, line)
		}
	}
	if len(want) != 37 || out != strings.Join(want, "\n")+"\n" {
		t.Fatalf("cut kept %d lines:\n%s\nwant %d", strings.Count(out, "\n"), out, len(want))
	}
	cut := filepath.Join(t.TempDir(), "incident.jsonl")
	os.WriteFile(cut, []byte(out), 0o600)
	rout, _, code := talon(t, "replay", cut, "--policy", testdata(t, "replay/a"), "--config", testdata(t, "replay/config.toml"))
	var r engine.ReplayResult
	if err := json.Unmarshal([]byte(rout), &r); err != nil || code != 0 || r.Mode != engine.ModeWhatIf || r.ModeReason != "the journal does not begin at a process start" || r.Summary.Incidents != 1 {
		t.Fatalf("replay of the cut: exit %d %v %+v", code, err, r)
	}
	_, errOut, code = talon(t, "journal", "cut", "--since", "yesterday", src)
	if code != 2 || errOut != "talon: --since: \"yesterday\" is neither a duration (2h, 30m, 1d) nor a time (15:04, 2006-01-02 15:04, RFC 3339) (times without a zone are UTC)\n" {
		t.Fatalf("bad --since: exit %d %q", code, errOut)
	}
}

func TestScanStateDir(t *testing.T) {
	t.Parallel()
	for doc, want := range map[string]string{
		"check_interval_secs = ]\nstate_dir = \"/var/lib/talon\"\n":        "/var/lib/talon",
		"state_dir = \"~/state\" # mine\n[worker\n":                        "~/state",
		"[health]\nstate_dir = \"/not/top-level\"\n":                       "",
		"x = 1\n  state_dir   =   \"rel/dir\"\nbroken = \n":                "rel/dir",
		"state_dir = 'literal strings are left to the parser'\nbroken =\n": "",
	} {
		if got := scanStateDir([]byte(doc)); got != want {
			t.Errorf("%q: got %q, want %q", doc, got, want)
		}
	}
}

// TestRunExitsOnlyWhenTheStateDirIsUnusable: a broken config.toml does not
// end talon run (it falls back and says so); a state directory it cannot
// use does, with what to do.
func TestRunExitsOnlyWhenTheStateDirIsUnusable(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("check_intervall_secs = 5\n"), 0o644)
	notADir := filepath.Join(dir, "state")
	os.WriteFile(notADir, []byte("x"), 0o600)
	_, stderr, code := talon(t, "run", "--config", cfg, "--state-dir", notADir)
	want := "talon: state dir: mkdir " + notADir + ": not a directory; talon cannot run without it: make it a directory talon's user can write (mode 0700), or choose another with state_dir or --state-dir\n"
	if code != 1 || stderr != want {
		t.Fatalf("exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
}

// TestValidateTextShowsWhatFailuresLeadTo: on a terminal, validate lists
// the probes under what their failure leads to.
func TestValidateTextShowsWhatFailuresLeadTo(t *testing.T) {
	out, _, err := talonText(t, "validate", "--config", testdata(t, "good/config.toml"), "--policy", testdata(t, "good"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  on failure, act and page (page): exec_ok http:worker\n",
		"  on failure, act, never page (act): script_ok http_local func_ok\n",
		"  on failure, only show (show): tcp_local script:always\n",
		"  ladder: note → heal → sos\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate lacks %q:\n%s", want, out)
		}
	}
}
