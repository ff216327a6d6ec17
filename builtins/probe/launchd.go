package probe

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/engine"
)

func init() {
	Register(Builtin{Name: "probe.launchd", Fn: launchdProbe, Doc: `def launchd(name, label, *, **common):
macOS only. Looks the job up with launchctl print gui/UID/LABEL, then
launchctl print system/LABEL (system LaunchDaemons), then launchctl list LABEL,
and passes when the job is running: "state = running" or a non-zero pid.
The detail carries the domain it was found in, its state, pid and last exit code.
On Linux it fails with a one-line explanation; use probe.systemd there.
name: unique probe name
label: the job's Label, e.g. "com.joel.gateway"`})
}

func launchdProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	var (
		c     Common
		name  string
		label string
	)
	if err := c.Unpack(b, args, kwargs, "name", &name, "label", &label); err != nil {
		return nil, err
	}
	if label == "" || flagLike(label) || strings.ContainsAny(label, " \t\n/") {
		return nil, fmt.Errorf("%s: %s: label %q is not a launchd label", b.Name(), name, label)
	}
	p, err := c.Spec(thread, b, name, "launchd", launchdCheck(label), label)
	if err != nil {
		return nil, err
	}
	p.Programs = []string{"launchctl"}
	p.OS = "darwin"
	return Declare(thread, b, p)
}

func launchdCheck(label string) engine.Check {
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		if runtime.GOOS != "darwin" {
			return engine.Failf("probe.launchd: launchd exists only on macOS; use probe.systemd")
		}
		return launchdLookup(ctx, env, label)
	}
}

// launchdLookup asks launchctl about label: print in the user's gui domain,
// print in the system domain, then list.
func launchdLookup(ctx context.Context, env *engine.ProbeEnv, label string) engine.Outcome {
	timeout := env.Probe.EffectiveTimeout()
	var misses []string
	for _, domain := range []string{fmt.Sprintf("gui/%d", os.Getuid()), "system"} {
		r := env.Effects.Exec(ctx, env.Command("launchctl", "print", domain+"/"+label))
		if r.TimedOut || r.Err != nil {
			return engine.ExecOutcome(r, timeout)
		}
		if r.ExitCode == 0 {
			job := parseLaunchctlPrint(r.Stdout)
			if job.Domain == "" {
				job.Domain = domain
			}
			return launchdOutcome(label, job)
		}
		misses = append(misses, domain)
	}
	r := env.Effects.Exec(ctx, env.Command("launchctl", "list", label))
	if r.TimedOut || r.Err != nil {
		return engine.ExecOutcome(r, timeout)
	}
	if r.ExitCode == 0 {
		return launchdOutcome(label, parseLaunchctlList(r.Stdout))
	}
	msg := engine.CombineOutput(r.Stdout, r.Stderr)
	return engine.Failf("launchd job %s not found in %s or launchctl list: %s", label, strings.Join(misses, ", "), msg)
}

// launchdJob is what launchctl says about a job.
type launchdJob struct {
	Domain   string // "gui/501", "system"; "launchctl list" when found by list
	State    string // "running", "not running", ...; empty from launchctl list
	PID      int
	LastExit string
}

// parseLaunchctlPrint reads the top level of `launchctl print DOMAIN/LABEL`:
//
//	gui/501/com.joel.gateway = {
//		state = running
//		pid = 1184
//		last exit code = 0
//		resource coalition = {
//			state = active      <- nested: not the job's state
//		}
//	}
func parseLaunchctlPrint(out string) launchdJob {
	var j launchdJob
	depth := 0
	for _, raw := range strings.Split(out, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "}") {
			depth--
			continue
		}
		key, val, isKV := strings.Cut(line, " = ")
		if depth == 1 && isKV {
			switch key {
			case "state":
				j.State = val
			case "pid":
				j.PID, _ = strconv.Atoi(val)
			case "last exit code":
				j.LastExit = val
			case "domain":
				// "gui/501 [100009]": the first word, whatever the blanks.
				if f := strings.Fields(val); len(f) > 0 {
					j.Domain = f[0]
				}
			}
		}
		if strings.HasSuffix(line, "{") {
			depth++
		}
	}
	return j
}

// parseLaunchctlList reads the property list `launchctl list LABEL` prints:
//
//	{
//		"Label" = "com.joel.gateway";
//		"LastExitStatus" = 0;
//		"PID" = 1184;
//		"ProgramArguments" = (
//			"/bin/bash";
//		);
//	};
func parseLaunchctlList(out string) launchdJob {
	j := launchdJob{Domain: "launchctl list"}
	depth := 0
	for _, raw := range strings.Split(out, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "}") || strings.HasPrefix(line, ")") {
			depth--
			continue
		}
		key, val, isKV := strings.Cut(line, " = ")
		if depth == 1 && isKV {
			val = strings.Trim(strings.TrimSuffix(val, ";"), `"`)
			switch key {
			case `"PID"`:
				j.PID, _ = strconv.Atoi(val)
			case `"LastExitStatus"`:
				j.LastExit = val
			}
		}
		if strings.HasSuffix(line, "{") || strings.HasSuffix(line, "(") {
			depth++
		}
	}
	return j
}

// launchdOutcome passes a running job: state = running or a non-zero pid.
func launchdOutcome(label string, j launchdJob) engine.Outcome {
	detail := map[string]string{"domain": j.Domain}
	if j.State != "" {
		detail["state"] = j.State
	}
	if j.PID != 0 {
		detail["pid"] = strconv.Itoa(j.PID)
	}
	if j.LastExit != "" {
		detail["last_exit"] = j.LastExit
	}
	if j.State == "running" || j.PID > 0 {
		out := "running"
		if j.PID > 0 {
			out += " pid " + strconv.Itoa(j.PID)
		}
		return engine.Outcome{Passed: true, Output: out + " (" + j.Domain + ")", Detail: detail}
	}
	var why []string
	if j.State != "" {
		why = append(why, "state = "+j.State)
	} else {
		why = append(why, "no pid")
	}
	if j.LastExit != "" {
		why = append(why, "last exit "+j.LastExit)
	}
	return engine.Outcome{Output: fmt.Sprintf("%s is not running in %s (%s)", label, j.Domain, strings.Join(why, ", ")), Detail: detail}
}
