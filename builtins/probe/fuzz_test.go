package probe

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

func addFileSeeds(f *testing.F, glob string) {
	paths, _ := filepath.Glob(glob)
	if len(paths) == 0 {
		f.Fatalf("no seeds at %s", glob)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
}

// FuzzLaunchctl feeds mutated `launchctl print` and `launchctl list` output
// to their parsers and the verdict: never a panic, a one-line verdict. Round
// trip: the job a parser read, printed back in the same format, reads back
// the same.
func FuzzLaunchctl(f *testing.F) {
	addFileSeeds(f, "testdata/launchd/*.txt")
	f.Add("gui/501/x = {\n\tstate = running {\n\tpid = -1\n}\n}\n")
	f.Fuzz(func(t *testing.T, out string) {
		for _, parse := range []struct {
			name   string
			read   func(string) launchdJob
			format func(launchdJob) string
		}{{"print", parseLaunchctlPrint, formatLaunchctlPrint}, {"list", parseLaunchctlList, formatLaunchctlList}} {
			j := parse.read(out)
			o := launchdOutcome("com.x", j)
			if o.Output == "" || strings.ContainsAny(o.Output, "\n") {
				t.Fatalf("%s: verdict is not one line: %q", parse.name, o.Output)
			}
			if opens(j.State) || opens(j.LastExit) || opens(j.Domain) {
				continue // a value that opens a block changes the nesting: no round trip
			}
			if again := parse.read(parse.format(j)); again != j {
				t.Fatalf("%s: round trip: %+v read back as %+v from\n%s", parse.name, j, again, parse.format(j))
			}
		}
	})
}

func opens(v string) bool { return strings.HasSuffix(v, "{") || strings.HasSuffix(v, "(") }

func formatLaunchctlPrint(j launchdJob) string {
	var b strings.Builder
	b.WriteString("gui/501/com.x = {\n")
	if j.Domain != "" {
		b.WriteString("\tdomain = " + j.Domain + "\n")
	}
	if j.State != "" {
		b.WriteString("\tstate = " + j.State + "\n")
	}
	if j.PID != 0 {
		b.WriteString("\tpid = " + strconv.Itoa(j.PID) + "\n")
	}
	if j.LastExit != "" {
		b.WriteString("\tlast exit code = " + j.LastExit + "\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func formatLaunchctlList(j launchdJob) string {
	var b strings.Builder
	b.WriteString("{\n")
	if j.PID != 0 {
		b.WriteString("\t\"PID\" = " + strconv.Itoa(j.PID) + ";\n")
	}
	if j.LastExit != "" {
		b.WriteString("\t\"LastExitStatus\" = " + j.LastExit + ";\n")
	}
	b.WriteString("};\n")
	return b.String()
}

// FuzzSystemctlShow feeds mutated `systemctl show` output to the parser
// and the verdict: never a panic, a one-line verdict; the properties read,
// written back as KEY=VALUE lines, read back the same.
func FuzzSystemctlShow(f *testing.F) {
	addFileSeeds(f, "testdata/systemd/*.txt")
	f.Add("ActiveState=active\r\nLoadState=loaded\n=x\nMainPID=0\nA=b=c\n")
	f.Fuzz(func(t *testing.T, out string) {
		props := parseSystemctlShow(out)
		o := systemdOutcome("u.service", props)
		if o.Output == "" || strings.ContainsAny(o.Output, "\n") {
			t.Fatalf("verdict is not one line: %q", o.Output)
		}
		keys := make([]string, 0, len(props))
		for k := range props {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k + "=" + props[k] + "\n")
		}
		if again := parseSystemctlShow(b.String()); !reflect.DeepEqual(again, props) {
			t.Fatalf("round trip: %q read back as %q", props, again)
		}
	})
}

// FuzzNagiosPerfdata feeds mutated plugin output to the Nagios parser:
// never a panic; the text is the first line before any "|"; every datum
// has a label and a value; perfdata written back (labels quoted, quotes
// doubled) reads back the same.
func FuzzNagiosPerfdata(f *testing.F) {
	f.Add("PING OK - Packet loss = 0%\n")
	f.Add("TCP OK - 0.000 second response time on 127.0.0.1 port 22|time=0.000113s;;;0.000000;10.000000\n")
	f.Add("DISK OK | '/' =1B 'a b'=83%;80;90;0;100 'it''s'=U load1=0.5;1;2\n")
	f.Add("DISK OK - free space: / 3326 MB (56%);| /=2643MB;5948;5958;0;5968\n/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n/home=69357MB;253404;253409;0;253414\n/var/log=818MB;970;975;0;980\n")
	f.Add("x|'unterminated=1 a=;;; =5 b=1;2;3;4;5;6\tc=2\r\n")
	f.Fuzz(func(t *testing.T, stdout string) {
		out := parseNagios(stdout)
		if strings.ContainsAny(out.Text, "|\n") {
			t.Fatalf("text %q holds a | or a newline", out.Text)
		}
		for _, d := range out.Perf {
			if d.Label == "" || d.Value == "" {
				t.Fatalf("datum without a label or value: %+v", d)
			}
		}
		perf := parsePerfData(stdout)
		var b strings.Builder
		for _, d := range perf {
			b.WriteString(" '" + strings.ReplaceAll(d.Label, "'", "''") + "'=" + strings.Join([]string{d.Value, d.Warn, d.Crit, d.Min, d.Max}, ";"))
		}
		again := parsePerfData(b.String())
		if len(again) != len(perf) || len(perf) > 0 && !reflect.DeepEqual(again, perf) {
			t.Fatalf("round trip: %+v read back as %+v from %q", perf, again, b.String())
		}
	})
}
