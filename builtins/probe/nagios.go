package probe

import (
	"context"
	"fmt"
	"strings"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

func init() {
	Register(Builtin{Name: "probe.nagios", Fn: nagiosProbe, Doc: `def nagios(name, argv, *, warning_fails=False, **common):
Runs a Nagios / Monitoring Plugins check (no shell) and maps its exit status:
0 OK passes, 1 WARNING passes with a warning (fails with warning_fails=True),
2 CRITICAL and 3 UNKNOWN fail. The output is the first line's text; its
performance data ("label=value[UOM];warn;crit;min;max" after "|", on the
first line and after "|" in the long output) goes into the result's detail as
perf.<label> = value with its unit, e.g. perf./ = "16004415488B".
The plugin directory (e.g. /usr/lib/nagios/plugins) must be on the PATH from
the config, or argv[0] an absolute path.
name: unique probe name
argv: plugin and arguments, e.g. ["check_disk", "-w", "10%", "-c", "5%", "-p", "/"]
warning_fails: treat WARNING as a failure`})
}

func nagiosProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	var (
		c            Common
		name         string
		argv         star.StringList
		warningFails bool
	)
	if err := c.Unpack(b, args, kwargs, "name", &name, "argv", &argv, "warning_fails?", &warningFails); err != nil {
		return nil, err
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%s: %s: argv must name a plugin", b.Name(), name)
	}
	p, err := c.Spec(thread, b, name, "nagios", nagiosCheck(argv, warningFails), append([]string{fmt.Sprint(warningFails)}, argv...)...)
	if err != nil {
		return nil, err
	}
	p.Programs = []string{argv[0]}
	return Declare(thread, b, p)
}

// nagiosStatus names the plugin exit codes.
var nagiosStatus = []string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

func nagiosCheck(argv []string, warningFails bool) engine.Check {
	argv = append([]string(nil), argv...)
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		r := env.Effects.Exec(ctx, env.Command(argv...))
		if r.TimedOut || r.Err != nil {
			return engine.ExecOutcome(r, env.Probe.EffectiveTimeout())
		}
		out := parseNagios(r.Stdout)
		text := out.Text
		if text == "" {
			text = strings.TrimSpace(r.Stderr)
		}
		o := engine.Outcome{Output: text, Detail: map[string]string{}}
		o.Subject = strings.TrimSpace(text + "\n" + out.Long)
		for _, p := range out.Perf {
			o.Detail["perf."+p.Label] = p.Value
		}
		if r.ExitCode < 0 || r.ExitCode >= len(nagiosStatus) {
			o.Output = fmt.Sprintf("exit status %d is not a plugin status: %s", r.ExitCode, text)
			return o
		}
		status := nagiosStatus[r.ExitCode]
		o.Detail["status"] = status
		if o.Output == "" {
			o.Output = fmt.Sprintf("%s (exit status %d) with no output", status, r.ExitCode)
		}
		switch r.ExitCode {
		case 0:
			o.Passed = true
		case 1:
			o.Passed, o.Warning = !warningFails, true
		}
		return o
	}
}

// nagiosOutput is a plugin's standard output, split as the plugin API says:
//
//	TEXT OUTPUT | OPTIONAL PERFDATA
//	LONG TEXT LINE 1
//	LONG TEXT LINE N | PERFDATA LINE 2
//	PERFDATA LINE 3
type nagiosOutput struct {
	Text string
	Long string
	Perf []perfDatum
}

// perfDatum is one label=value[UOM];warn;crit;min;max item.
type perfDatum struct {
	Label                string
	Value                string // with its unit of measure, e.g. "0.012s", "83%", "U"
	Warn, Crit, Min, Max string
}

func parseNagios(stdout string) nagiosOutput {
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	var out nagiosOutput
	var perf []string
	first, p1, _ := strings.Cut(lines[0], "|")
	out.Text = strings.TrimSpace(first)
	perf = append(perf, p1)
	var long []string
	inPerf := false
	for _, line := range lines[1:] {
		if inPerf {
			perf = append(perf, line)
			continue
		}
		if before, after, ok := strings.Cut(line, "|"); ok {
			long = append(long, before)
			perf = append(perf, after)
			inPerf = true
			continue
		}
		long = append(long, line)
	}
	out.Long = strings.TrimSpace(strings.Join(long, "\n"))
	for _, p := range perf {
		out.Perf = append(out.Perf, parsePerfData(p)...)
	}
	return out
}

// parsePerfData reads space-separated perfdata items; a label may be in
// single quotes, a quote inside doubled, to hold spaces or "=".
func parsePerfData(s string) []perfDatum {
	var out []perfDatum
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r') {
			i++
		}
		if i >= len(s) {
			return out
		}
		var label strings.Builder
		if s[i] == '\'' {
			i++
			for i < len(s) {
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						label.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				label.WriteByte(s[i])
				i++
			}
		} else {
			for i < len(s) && s[i] != '=' && s[i] != ' ' {
				label.WriteByte(s[i])
				i++
			}
		}
		if i >= len(s) || s[i] != '=' {
			// Not label=value: skip the malformed word.
			for i < len(s) && s[i] != ' ' {
				i++
			}
			continue
		}
		i++
		start := i
		for i < len(s) && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		fields := strings.Split(s[start:i], ";")
		d := perfDatum{Label: label.String(), Value: fields[0]}
		for j, dst := range []*string{&d.Warn, &d.Crit, &d.Min, &d.Max} {
			if j+1 < len(fields) {
				*dst = fields[j+1]
			}
		}
		if d.Label != "" && d.Value != "" {
			out = append(out, d)
		}
	}
}
