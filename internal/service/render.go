package service

import (
	"path/filepath"
	"slices"
	"strings"
)

// The unit and the plist are written by plain Go code rather than
// text/template: executing a template makes the linker keep every exported
// method of every type in the binary (templates call methods by name through
// reflection), which made the daemon 2.2 MB larger and cost it 1.9 MiB of
// resident memory against issue 12's 15 MiB idle budget. The goldens in
// testdata hold the output to the bytes.

// renderSystemd is the unit file, without its marker line.
func (s Spec) renderSystemd() []byte {
	user := !s.System
	scope, userFlag, wanted := "system", "", "multi-user.target"
	if user {
		scope, userFlag, wanted = "user", "--user ", "default.target"
	}
	var argv []string
	for _, a := range s.Argv {
		argv = append(argv, systemdQuote(a))
	}
	var b strings.Builder
	w := func(parts ...string) {
		for _, p := range parts {
			b.WriteString(p)
		}
	}
	w("# Talon watchdog (", scope, " unit), written by `talon service install`.\n",
		"# `talon service uninstall` undoes the install; `talon service print` shows\n",
		"# what install would write now. Configure Talon in config.toml, not here:\n",
		"# install refuses to overwrite this file once it has been edited (--force).\n",
		"#\n",
		"#   journalctl ", userFlag, "-u ", s.Unit(), "      its log (info and up; full JSON log: ", s.logFile(), ")\n",
		"#   systemctl ", userFlag, "reload ", s.Unit(), "   reload the policy (SIGHUP)\n",
		"#   talon status                 what it sees\n",
		"[Unit]\n",
		"Description=Talon watchdog")
	if !user {
		w(`
# Stop after the network at shutdown, so "resolved" messages and pages in
# flight still go out; never wait for network-online: a watchdog must run
# (and report) when the network is what is down.
After=network.target`)
	}
	w(`
# Never stop restarting: the default gives up after 5 starts in 10 s, and a
# watchdog that gave up is worse than one that keeps trying.
StartLimitIntervalSec=0

[Service]
# exec: a binary that cannot be executed fails the start; otherwise systemd
# counts Talon as started once it runs.
Type=exec
ExecStart=`, strings.Join(argv, " "), `
# SIGHUP reloads the policy (and config.toml) the same way a file save does.
ExecReload=/bin/kill -HUP $MAINPID
# Come back whatever ended it, a clean exit included.
Restart=always
RestartSec=5
# KillMode=process: on stop, SIGTERM goes to Talon alone, and Talon stops
# what it owns: running probes (each in its own process group, killed), an
# in-flight heal or agent (SIGTERM to its group, SIGKILL after a grace
# period), the supervised worker (drained, then SIGKILL); then it saves its
# state and exits. What a heal script deliberately started in the background
# to bring a service back (a daemon, the Colima VM) must outlive a restart
# of the watchdog. control-group would SIGTERM all of it at once; mixed would
# SIGKILL whatever is left in the cgroup after Talon exits.
KillMode=process
KillSignal=SIGTERM
# Talon's own shutdown takes a few seconds (plus the worker's
# drain_timeout_secs); after this, SIGKILL.
TimeoutStopSec=30`)
	if s.RunAs != "" {
		w("\nUser=", s.RunAs)
	}
	w(`
# Talon gives its children the PATH from config.toml; this one is for what
# Talon runs itself.
Environment=`, systemdQuote("PATH="+strings.Join(s.Path, ":")))
	for _, k := range s.envKeys() {
		w("\nEnvironment=", systemdQuote(k+"="+s.Env[k]))
	}
	w(`
SyslogIdentifier=talon
# Secrets pass through Talon's memory: keep them out of core files.
LimitCORE=0
# No sandboxing, deliberately: Talon's probes and heals must see the host as
# the operator does. ProtectHome= would hide ~/.colima, ~/.kube and ~/.ssh;
# PrivateTmp= would hide sockets and files other services share in /tmp;
# ProtectSystem= breaks heal scripts that repair /etc or /usr/local;
# NoNewPrivileges= breaks sudo and setuid helpers in heal scripts; and
# PrivateUsers= drops supplementary groups, so the docker socket refuses.
# `)
	if user {
		w("In a user manager every filesystem or system-call sandboxing option\n# also implies NoNewPrivileges=yes.")
	} else {
		w("Every system-call filter implies NoNewPrivileges=yes for a User= service.")
	}
	w("\n\n[Install]\nWantedBy=", wanted, "\n")
	return []byte(b.String())
}

// renderLaunchd is the property list, without its marker line.
func (s Spec) renderLaunchd() []byte {
	scope, kind := "system", "LaunchDaemon"
	if !s.System {
		scope, kind = "user", "LaunchAgent"
	}
	var b strings.Builder
	w := func(parts ...string) {
		for _, p := range parts {
			b.WriteString(p)
		}
	}
	w(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Talon watchdog (`, scope, " ", kind, `), written by `+"`talon service install`"+`.
     `+"`talon service uninstall`"+` undoes the install; `+"`talon service print`"+` shows
     what install would write now. Configure Talon in config.toml, not here:
     install refuses to overwrite this file once it has been edited (force).

       launchctl print `, s.Domain(), "/", s.Name, `   loaded? running?
       launchctl kill HUP `, s.Domain(), "/", s.Name, `   reload the policy
       talon status                 what it sees -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>`, s.Name, `</string>
  <!-- Absolute paths: launchd expands neither ~ nor $HOME. -->
  <key>ProgramArguments</key>
  <array>`)
	for _, a := range s.Argv {
		w("\n    <string>", xmlEscape(a), "</string>")
	}
	w("\n  </array>")
	if s.RunAs != "" {
		w("\n  <key>UserName</key>\n  <string>", xmlEscape(s.RunAs), "</string>")
	}
	w(`
  <!-- Start at load (login), and again whenever it exits, however it exits. -->
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <true/>
  <!-- At most one start every 10 s (launchd's default, stated). -->
  <key>ThrottleInterval</key>
  <integer>10</integer>
  <!-- Standard: not Background, whose CPU and I/O throttling would make probes
       time out and page falsely; not Interactive, which is meant for apps. -->
  <key>ProcessType</key>
  <string>Standard</string>
  <!-- Talon's shutdown (stop in-flight rungs, drain the worker, save state)
       takes a few seconds; after this launchd sends SIGKILL. Talon starts every
       child in its own process group, so what a heal started on purpose is not
       killed with Talon's group when it exits. -->
  <key>ExitTimeOut</key>
  <integer>30</integer>
  <key>EnvironmentVariables</key>
  <dict>
    <!-- launchd's own PATH is /usr/bin:/bin:/usr/sbin:/sbin. Talon gives its
         children the PATH from config.toml; this one is for what Talon runs
         itself (launchctl). -->
    <key>PATH</key>
    <string>`, xmlEscape(strings.Join(s.Path, ":")), "</string>")
	for _, k := range s.envKeys() {
		w("\n    <key>", xmlEscape(k), "</key>\n    <string>", xmlEscape(s.Env[k]), "</string>")
	}
	w(`
  </dict>
  <!-- Under launchd Talon writes one-line info records to stderr (and its full
       JSON log to `, xmlEscape(s.logFile()), `); it keeps the stderr file under 10 MiB
       itself, since nothing rotates it. -->
  <key>StandardOutPath</key>
  <string>`, xmlEscape(s.StdoutPath()), `</string>
  <key>StandardErrorPath</key>
  <string>`, xmlEscape(s.StderrPath()), `</string>
</dict>
</plist>
`)
	return []byte(b.String())
}

// logFile is Talon's own JSON log.
func (s Spec) logFile() string { return filepath.Join(s.StateDir, "talon.log") }

// envKeys are the names of s.Env, sorted.
func (s Spec) envKeys() []string {
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
