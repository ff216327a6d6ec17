package builtins_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// serviceAction declares src (one service.restart(...) expression) as the
// only action of a rung and returns it, or the load's error text.
func serviceAction(t *testing.T, src string, probes ...string) (*builtins.ServiceAction, string) {
	t.Helper()
	policy := ""
	for _, p := range probes {
		policy += "probe.exec(" + strconv.Quote(p) + ", [\"true\"])\n"
	}
	if len(probes) == 0 {
		policy += "probe.exec(\"a\", [\"true\"])\n"
	}
	policy += "ladder(rung(\"service-heal\", do = " + src + "))\n"
	res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": policy})})
	if res.Err() != nil {
		return nil, res.ErrorText()
	}
	return res.Policy.Ladder[0].Do[0].(*builtins.ServiceAction), ""
}

func TestServiceRestartDeclaration(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, describe, err string }{
		{`service.restart("com.joel.gateway", manager = "launchd")`, "launchctl kickstart -k (its domain)/com.joel.gateway", ""},
		{`service.restart("com.joel.gateway", manager = "launchd", scope = "system", if_failing = ["launchd:gw", "http:gw"])`,
			"launchctl kickstart -k system/com.joel.gateway, if launchd:gw or http:gw fails", ""},
		{`service.restart("voice.service", manager = "systemd", port = 8081, stale = [["python3", "main.py", "start"], ["uv", "run", "python", "main.py", "start"]])`,
			"systemctl --user restart voice.service, after clearing port 8081 of stale copies", ""},
		{`service.restart("voice.service", manager = "systemd", scope = "system", port = 8081, stale = ["main.py", "start"])`,
			"systemctl restart voice.service, after clearing port 8081 of stale copies", ""},
		{`service.restart("x.service", manager = "runit")`, "", `talon.star:4:49: service.restart: x.service: manager must be "launchd" or "systemd", got "runit"`},
		{`service.restart("has space", manager = "launchd")`, "", `talon.star:4:49: service.restart: "has space" is not a launchd label`},
		{`service.restart("-k", manager = "systemd")`, "", `talon.star:4:49: service.restart: "-k" is not a systemd unit name`},
		{`service.restart("x", manager = "launchd", scope = "session")`, "", `talon.star:4:49: service.restart: x: launchd scope must be "gui", "user" or "system", got "session"`},
		{`service.restart("x", manager = "systemd", scope = "gui")`, "", `talon.star:4:49: service.restart: x: systemd scope must be "user" or "system", got "gui"`},
		{`service.restart("x", manager = "systemd", port = 8081)`, "", `talon.star:4:49: service.restart: x: port= needs stale=, the command line of the service's own copies, so that clients and other programs on the port are never stopped`},
		{`service.restart("x", manager = "systemd", stale = ["a"])`, "", `talon.star:4:49: service.restart: x: stale= needs port=, the port its stale copies listen on`},
		{`service.restart("x", manager = "systemd", port = 1, stale = [])`, "", `talon.star:4:49: service.restart: x: stale: want at least one command`},
		{`service.restart("x", manager = "systemd", port = 1, stale = "main.py")`, "", `talon.star:4:49: service.restart: x: stale: want an argv (a list of strings) or a list of them, got string`},
		{`service.restart("x", manager = "systemd", port = 70000, stale = ["a"])`, "", `talon.star:4:49: service.restart: x: port must be between 1 and 65535, got 70000`},
		{`service.restart("x", manager = "systemd", if_failing = "typo")`, "", `talon.star:4:49: service.restart: x: if_failing names "typo", which is not a probe of this policy`},
	}
	for _, c := range cases {
		a, err := serviceAction(t, c.src, "a", "launchd:gw", "http:gw")
		if err != c.err {
			t.Errorf("%s:\n got error %q\nwant %q", c.src, err, c.err)
			continue
		}
		if a != nil && a.Describe() != c.describe {
			t.Errorf("%s: describe %q, want %q", c.src, a.Describe(), c.describe)
		}
	}
	a, _ := serviceAction(t, `service.restart("com.x", manager = "launchd")`)
	if got := strings.Join(a.Programs(), " "); got != "launchctl" {
		t.Errorf("programs %q", got)
	}
}

// fakeLaunchctl puts a launchctl on a PATH of its own that records its
// arguments and answers print in the gui domain with "not found" (113) and
// in the system domain with success: a LaunchDaemon.
func fakeLaunchctl(t *testing.T, kickstartExit int) (env []string, argvLog string) {
	t.Helper()
	dir := t.TempDir()
	argvLog = filepath.Join(dir, "argv")
	script := `#!/bin/sh
echo "$*" >> ` + argvLog + `
case "$1 $2" in
  "print gui/"*) echo "Could not find service in domain" >&2; exit 113 ;;
  "print system/"*) echo "state = running"; exit 0 ;;
  "kickstart -k") exit ` + strconv.Itoa(kickstartExit) + ` ;;
esac
exit 64
`
	if err := os.WriteFile(filepath.Join(dir, "launchctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"PATH=" + dir + ":/usr/bin:/bin"}, argvLog
}

func runAction(a engine.Action, fx effect.Effects, env []string, inc *engine.IncidentView) engine.ActionResult {
	return a.Run(context.Background(), &engine.ActionEnv{Effects: fx, Env: env, Incident: inc, Rung: "service-heal"})
}

// TestServiceRestartLaunchd: launchd exists only on macOS, so the launchd
// path is tested up to its command line, against a launchctl that records
// its argv: the job is looked for in the gui domain, found in the system
// domain, and kickstarted there.
func TestServiceRestartLaunchd(t *testing.T) {
	t.Parallel()
	uid := strconv.Itoa(os.Getuid())
	env, argvLog := fakeLaunchctl(t, 0)
	a, _ := serviceAction(t, `service.restart("com.joel.gateway", manager = "launchd")`)
	res := runAction(a, effect.NewLive(), env, nil)
	b, _ := os.ReadFile(argvLog)
	want := "print gui/" + uid + "/com.joel.gateway\nprint system/com.joel.gateway\nkickstart -k system/com.joel.gateway\n"
	if !res.OK || string(b) != want || res.Output != "launchctl kickstart -k system/com.joel.gateway: ok" {
		t.Fatalf("ok=%v output %q\nlaunchctl ran:\n%s\nwant:\n%s", res.OK, res.Output, b, want)
	}

	// A scope skips the lookup; a failing kickstart fails the action.
	env, argvLog = fakeLaunchctl(t, 3)
	a, _ = serviceAction(t, `service.restart("com.joel.voice", manager = "launchd", scope = "gui")`)
	res = runAction(a, effect.NewLive(), env, nil)
	b, _ = os.ReadFile(argvLog)
	if res.OK || string(b) != "kickstart -k gui/"+uid+"/com.joel.voice\n" || res.Output != "launchctl kickstart -k gui/"+uid+"/com.joel.voice: exit status 3" {
		t.Fatalf("ok=%v output %q; launchctl ran %q", res.OK, res.Output, b)
	}

	// A job loaded nowhere is an error that says so; nothing is kickstarted.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "launchctl"), []byte("#!/bin/sh\necho \"$*\" >> "+dir+"/argv\nexit 113\n"), 0o755)
	res = runAction(a2(t, `service.restart("com.joel.gone", manager = "launchd")`), effect.NewLive(), []string{"PATH=" + dir + ":/usr/bin:/bin"}, nil)
	b, _ = os.ReadFile(filepath.Join(dir, "argv"))
	if res.OK || res.Output != "launchd job com.joel.gone is not loaded in gui/"+uid+" or system; load it (launchctl bootstrap) or set scope" || strings.Contains(string(b), "kickstart") {
		t.Fatalf("ok=%v output %q; launchctl ran %q", res.OK, res.Output, b)
	}
}

func a2(t *testing.T, src string) *builtins.ServiceAction {
	a, err := serviceAction(t, src)
	if err != "" {
		t.Fatal(err)
	}
	return a
}

// TestServiceRestartIfFailing: with if_failing, only a service whose probe
// fails in the incident is restarted; the others succeed doing nothing.
func TestServiceRestartIfFailing(t *testing.T) {
	t.Parallel()
	res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": `
probe.exec("launchd:gw", ["true"], critical = True)
probe.exec("http:gw", ["true"])
probe.exec("launchd:voice", ["true"], critical = True)
ladder(rung("service-heal", do = [
    service.restart("com.joel.gateway", manager = "launchd", scope = "gui", if_failing = ["launchd:gw", "http:gw"]),
    service.restart("com.joel.voice", manager = "launchd", scope = "gui", if_failing = "launchd:voice"),
]))
`})})
	if res.Err() != nil {
		t.Fatal(res.ErrorText())
	}
	var ran []string
	fx := &effect.Fake{ExecFunc: func(_ context.Context, c effect.Command) effect.ExecResult {
		ran = append(ran, strings.Join(c.Argv, " "))
		return effect.ExecResult{}
	}}
	inc := &engine.IncidentView{ID: "i", Failing: []engine.Result{{Name: "http:gw"}}, Passing: []engine.Result{{Name: "launchd:voice", Passed: true}}}
	uid := strconv.Itoa(os.Getuid())
	var outputs []string
	for _, a := range res.Policy.Ladder[0].Do {
		r := runAction(a, fx, nil, inc)
		if !r.OK {
			t.Fatalf("%s: %s", a.Describe(), r.Output)
		}
		outputs = append(outputs, r.Output)
	}
	if got := strings.Join(ran, "; "); got != "launchctl kickstart -k gui/"+uid+"/com.joel.gateway" {
		t.Fatalf("ran %q", got)
	}
	if outputs[1] != "com.joel.voice: not restarted: launchd:voice is not failing" {
		t.Fatalf("output %q", outputs[1])
	}
}

// TestServiceRestartDryRun: in shadow mode the restart, and the kill of a
// stale copy, are recorded, never performed.
func TestServiceRestartDryRun(t *testing.T) {
	t.Parallel()
	rec := &effect.Recorder{}
	a := a2(t, `service.restart("com.joel.gateway", manager = "launchd")`)
	if r := runAction(a, rec, nil, nil); !r.OK {
		t.Fatal(r.Output)
	}
	var got []string
	for _, in := range rec.Intents() {
		got = append(got, in.Detail)
	}
	uid := strconv.Itoa(os.Getuid())
	if strings.Join(got, "; ") != "launchctl print gui/"+uid+"/com.joel.gateway; launchctl kickstart -k gui/"+uid+"/com.joel.gateway" {
		t.Fatalf("intents %q", got)
	}
}
