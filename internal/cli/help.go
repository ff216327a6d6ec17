package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
)

// command is one entry of the help: the synopsis shown in the overview and
// in `talon help CMD`, and the longer text of `talon help CMD` alone.
type command struct {
	name     string
	synopsis string // flags and arguments, after "talon NAME"
	short    string // one line for the overview
	long     string // paragraphs for `talon help NAME`
}

// commands lists every command word in the order the overview shows them.
var commands = []command{
	{"run", "[--dry-run] [--bind ADDR] [--worker-only]", "the daemon: probes, escalation, the worker, /health (the default)",
		`Runs the watchdog in the foreground: probes on their intervals, the escalation
ladder beside them, the supervised worker ([worker] in config.toml) and the
health endpoint. Bare "talon" does the same. SIGHUP (and "talon reload")
reloads the policy; SIGTERM stops cleanly.

Under a service manager (stdout not a terminal, or JOURNAL_STREAM or
INVOCATION_ID set) it also writes one-line info records to stderr, where
journalctl and launchd's log files look.

--dry-run runs a policy in shadow mode: real probes, every action only
recorded, in <state_dir>/dry-run. --worker-only supervises the worker alone.`},
	{"validate", "[--json] [--strict]", "load config, services and policy; print a summary",
		`Loads config.toml, the services file and the policy, and prints a summary.
Exits 1 with file:line:col errors when anything fails to load; --strict
also fails on warnings (a program missing from the children's PATH).`},
	{"check", "[--json] [--probe NAME]...", "one probe cycle; exit 1 if a probe fails",
		`Runs every probe once (or only the named ones), concurrently, and prints the
results. No state changes and nothing escalates. Exits 1 if a probe fails.`},
	{"status", "[--json] [--watch] [--interval 2s]", "the daemon's state and its probes, like monit summary",
		`Shows the state machine's position and every probe (name, state, last
output, since when): from the running daemon's /health, else from the state
file. --watch redraws it every --interval until interrupted. Beside the
pauses in force it shows the last "talon resume" of the past day: when, who
asked and which pauses it lifted (last_resume in JSON).

The daemon is the one holding the state directory (--config or
--state-dir). When this user can read its control.token, only a server that
proves it holds that token is believed, as for pause and ack: a program that
took the health port is refused in one line on stderr, and the state file is
shown instead, saying so (daemon_error in JSON). When this user cannot read
it (another user's daemon), or there is none, the configured address is
asked and its answer marked UNVERIFIED, with why ("verified": false in JSON).

A broken config.toml is read leniently for what status needs (the state
directory, [health]), and its error is shown in one line with file:line and
what to do (config_error in JSON; on stderr too when the output is JSON).

Exit status: 0 whenever a state is shown, from the daemon or the state file,
even with a broken config.toml or a refused server: status informs, and
"talon validate" is the command that fails on a bad config. 1 when there is
nothing to show (no daemon answers and there is no state file, or it is
corrupt); 2 for a usage error.`},
	{"events", "[--since 2h] [--until TIME] [--incident ID] [--follow] [--json]", "the journal as a story: what happened, when and why",
		`Reads the journal (journal.jsonl in the state directory, with its rotated
generations) and tells what happened: probes going down and up, incidents,
rungs and how they ended, pages and the channels that took them, reloads.
--since and --until take a duration before now (2h, 30m) or a time
(15:04, 2006-01-02T15:04:05Z07:00, 2006-01-02 15:04); --incident shows one
incident; --follow keeps printing as the daemon writes. JSON lines when
piped or with --json.`},
	{"reload", "", "ask the running daemon to reload its policy now",
		`Asks the running daemon to reload its policy (POST /reload on the health
endpoint named by the state directory's control.token, with its token, once
the server there proved it holds it; else SIGHUP through the pid file) and
prints the new policy hash, or the error that kept the last good policy
running.`},
	{"pause", "[--for 30m] [--probe NAME|--tag T|--rung R] [--reason TEXT]", "stop the ladder for a while: no rungs, no pages",
		`Pauses the running daemon's ladder (POST /pause on the loopback health
endpoint, found through the state directory's control.token, with --config
or --state-dir; a broken config.toml is read leniently): for everything, one
probe, the probes of a tag, or one rung; for --for (1h when not given, at
most 24h: every pause ends), or until "talon resume". A pause of everything
makes /health not ok. Who asked (user and uid) is recorded with it.
Probes keep running and recording. What is paused does not drive the ladder:
a paused rung is passed over, paused probes do not escalate, and a pause of
everything holds every rung and every page. Pages of what still escalates
say what is paused. A pause that expires while an incident is open lets the
ladder go on from where it was. It is journaled, survives a restart, and
shows on /health, in "talon status" and in /metrics; replay honours it.

A paused or acknowledged incident is the only exception to "a critical
outage pages".`},
	{"resume", "[--probe NAME|--tag T|--rung R]", "lift pauses (all of them, or the one named)",
		`Lifts the pauses of the running daemon that match (POST /resume): the pause
of one probe, tag or rung, or, with none named, every pause. Who asked (user
and uid) is recorded with it, as for pause: in the journal, the log,
"talon events" and, for a day, "talon status".`},
	{"ack", "[INCIDENT] [--reason TEXT]", "acknowledge the open incident: no further rungs or pages",
		`Acknowledges the open incident (POST /ack; INCIDENT, when given, must be its
id): someone is on it. It runs no further rung and sends no further page,
repeats included, until it resolves ("resolved" still goes to whoever was
paged) or gets worse: a probe that was up when it was acknowledged goes
down, and the ladder resumes where it was. Journaled, kept across a
restart, shown on /health and in "talon status".`},
	{"drill", "[RUNG]", "send a page marked DRILL through a rung's channels",
		`Sends a test page marked DRILL through the real channels of RUNG (default:
every rung that pages). Runs no heal and no agent.`},
	{"replay", "JOURNAL [--diff OTHER_DIR] [--since T] [--until T] [--as-recorded [--with DIR]...] [--json]",
		"what a policy would have decided on a recorded journal",
		`Feeds a recorded journal (journal.jsonl or its directory) through the policy's
decision core with the journal's own clock and prints what it decided.
Faithful when the journal was written by this very policy: rungs last as long
as they did, verifications are the recorded ones, and any decision that
differs from what the daemon journaled is reported (exit 1). What-if
otherwise: the same core, with recorded rung outcomes where they exist and
the documented assumptions (docs/journal.md) where they do not.

--diff compares with the policy in OTHER_DIR incident by incident; --since
and --until limit the window; --as-recorded switches policy where the journal
recorded a reload, among the policy, --diff and --with versions.`},
	{"test", "[DIR] [--run REGEX] [-v]", "run a policy's *_test.star files",
		`Runs the test_* functions of the *_test.star files next to a policy
(default: the policy in use). The testing module scripts probe results over a
fake clock, or loads a journal excerpt, and asserts on phases, incidents,
rungs and pages through the same decision core as the daemon. Prints failures
with file:line and "N passed, N failed"; exits 1 if a test fails.`},
	{"journal", "cut [--since T] [--until T] [JOURNAL]", "a time window of a journal, as a fixture",
		`Prints the journal's records in a time window, so a real incident becomes a
fixture that "talon test" and "talon replay" load:

  talon journal cut --since 03:00 --until 04:00 > incident.jsonl`},
	{"service", "install|uninstall|status|print [--launchd|--systemd] [--user|--system] [--replace-predecessor] [--force]",
		"install Talon as a launchd agent or a systemd unit",
		`Writes, loads and removes the service definition that runs "talon run" under
launchd (macOS) or systemd (Linux); the default is the platform's own, for
the current user.

  print      print the plist or unit that install would write
  install    write it, then load it (launchctl bootstrap / systemctl enable --now)
  uninstall  undo exactly what install did
  status     installed? loaded? running?

Install refuses to overwrite a file it did not write, or one edited since
(--force overwrites it). The predecessor's LaunchAgent com.joel.talon is
detected; --replace-predecessor unloads it and sets its plist aside, and
uninstall puts it back.`},
	{"version", "", "print the version, commit and Go version", `Prints the module version, the commit it was built from and the Go version.`},
	{"help", "[COMMAND]", "this overview, or one command's help", `Prints the overview, or the help of one command.`},
}

const globalHelp = `global flags (also TALON_CONFIG, TALON_POLICY, TALON_STATE_DIR):
  --config FILE        config.toml (default ~/.config/talon/config.toml)
  --policy DIR         policy directory holding talon.star (default: config policy_dir,
                       else the embedded default policy)
  --state-dir DIR      state directory (default ~/.local/state/talon)
  --format table|json  output style of every command (default: a table on a
                       terminal, JSON when piped)
`

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// usage is the overview of `talon help`.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: talon [global flags] [command] [flags]\n\ncommands:\n")
	for _, c := range commands {
		line := "  " + c.name
		if c.synopsis != "" {
			line += " " + c.synopsis
		}
		if len(line) > 28 {
			b.WriteString(line + "\n" + strings.Repeat(" ", 29))
		} else {
			b.WriteString(fmt.Sprintf("%-29s", line))
		}
		b.WriteString(c.short + "\n")
	}
	b.WriteString("\n" + globalHelp)
	b.WriteString(`
"talon help COMMAND" or "talon COMMAND --help" shows one command's help.
Old spellings kept: --check, --status, --validate, validate, --dry-run (print
the resolved config and policy), --worker-only, --version.
`)
	return b.String()
}

// commandHelp is `talon help NAME`: synopsis, text, and the command's own
// flags as the flag set defines them.
func commandHelp(name string, fs *flag.FlagSet) string {
	c := findCommand(name)
	if c == nil {
		return usage()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "usage: talon %s %s\n\n%s\n", c.name, c.synopsis, c.long)
	if fs != nil {
		var own []*flag.Flag
		fs.VisitAll(func(f *flag.Flag) {
			if !isGlobalFlag(f.Name) {
				own = append(own, f)
			}
		})
		if len(own) > 0 {
			b.WriteString("\nflags:\n")
			sort.Slice(own, func(i, j int) bool { return own[i].Name < own[j].Name })
			for _, f := range own {
				arg, text := flag.UnquoteUsage(f)
				left := "  --" + f.Name
				if arg != "" {
					left += " " + arg
				}
				if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
					text += " (default " + f.DefValue + ")"
				}
				fmt.Fprintf(&b, "%-24s %s\n", left, text)
			}
		}
	}
	b.WriteString("\n" + globalHelp)
	return b.String()
}

func isGlobalFlag(name string) bool {
	switch name {
	case "config", "policy", "state-dir", "format":
		return true
	}
	return false
}

// help is `talon help [COMMAND]`. A command's help comes from running it with
// --help, so the flags listed are the ones it really parses.
func (a *app) help(args []string) error {
	args, err := a.flags("help", args, nil)
	if err != nil {
		return err
	}
	switch {
	case len(args) == 0:
		_, err := io.WriteString(a.stdout, usage())
		return err
	case len(args) > 1:
		return fail(2, "help takes one command, got %d; see talon help", len(args))
	}
	name := args[0]
	if name == "help" {
		_, err := io.WriteString(a.stdout, commandHelp("help", nil))
		return err
	}
	if findCommand(name) == nil {
		return fail(2, "help: unknown command %q; see talon help", name)
	}
	return a.dispatch([]string{name, "--help"})
}

// buildInfo is what `talon version` reports.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	CommitAt  string `json:"commit_time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// linkedVersion is set by the Makefile (-ldflags -X) to `git describe`, for
// builds that carry no module version ("(devel)") and, in a git worktree or
// with -buildvcs=false, no VCS stamp either.
var linkedVersion string

func readBuildInfo() buildInfo {
	bi := buildInfo{Version: "(unknown)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return bi
	}
	if v := info.Main.Version; v != "" {
		bi.Version = v
	}
	if linkedVersion != "" && (bi.Version == "(devel)" || bi.Version == "(unknown)") {
		bi.Version = linkedVersion
	}
	if info.GoVersion != "" {
		bi.GoVersion = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			bi.Commit = s.Value
		case "vcs.time":
			bi.CommitAt = s.Value
		case "vcs.modified":
			bi.Modified = s.Value == "true"
		}
	}
	return bi
}

func (bi buildInfo) String() string {
	s := "talon " + bi.Version
	if bi.Commit != "" {
		c := bi.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += " commit " + c
		if bi.Modified {
			s += "+modified"
		}
		if bi.CommitAt != "" {
			s += " (" + bi.CommitAt + ")"
		}
	}
	return s + " " + bi.GoVersion + " " + bi.Platform
}

// version is `talon version` / `talon --version`: one line of text, which is
// what scripts grep, unless --json or --format json asks for JSON.
func (a *app) version(args []string) error {
	var asJSON bool
	if err := a.flagsOnly("version", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "JSON output")
	}); err != nil {
		return err
	}
	bi := readBuildInfo()
	if asJSON || a.g.format == "json" {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(bi)
	}
	_, err := fmt.Fprintln(a.stdout, bi.String())
	return err
}
