// Package service writes, loads and removes the service definition that
// runs `talon run` under launchd (a LaunchAgent or LaunchDaemon plist) or
// systemd (a user or system unit).
//
// Every file it writes carries a marker line, "talon-managed:", holding a
// manifest: a checksum of the rest of the file and what else the install
// did (a predecessor it set aside). Install refuses to overwrite a file
// without the marker (someone else's) or whose checksum no longer matches
// (edited since), unless forced; uninstall reads the manifest and undoes
// exactly what install did.
//
// The commands it runs (launchctl, systemctl) go through Host.Run, so tests
// run them against a real systemd user manager, and launchd, which cannot
// exist on Linux, against a stand-in that records its arguments.
package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"howett.net/plist"

	"github.com/talon-dev/talon/engine"
)

// Managers.
const (
	Launchd = "launchd"
	Systemd = "systemd"
)

// Defaults.
const (
	DefaultLabel = "com.talon.watchdog" // launchd
	DefaultUnit  = "talon"              // systemd: talon.service
	// PredecessorLabel is the Rust Talon's LaunchAgent.
	PredecessorLabel = "com.joel.talon"
	markerKey        = "talon-managed:"
)

// Spec says what to install.
type Spec struct {
	Manager string // Launchd or Systemd
	System  bool   // a system service (LaunchDaemon, /etc/systemd/system) rather than the user's
	// Name is the launchd label or the systemd unit name without ".service".
	Name string
	// Argv is the command line: the absolute binary, then its arguments.
	Argv []string
	// Path is the PATH of the service's own environment.
	Path []string
	// Env holds further variables of the service's environment.
	Env map[string]string
	// RunAs is the user a system service runs as ("" for root).
	RunAs string
	// Home is the home directory of the user the service runs for.
	Home string
	// ConfigHome is $XDG_CONFIG_HOME ("" means Home/.config): systemd user
	// units live in ConfigHome/systemd/user.
	ConfigHome string
	// StateDir is Talon's state directory: launchd's stdout and stderr
	// files go there, beside talon.log.
	StateDir string
	// UID is the user's id, for launchd's gui/UID domain.
	UID int
}

// Unit is the systemd unit's full name.
func (s Spec) Unit() string { return s.Name + ".service" }

// Domain is the launchd domain: gui/UID for an agent, system for a daemon.
func (s Spec) Domain() string {
	if s.System {
		return "system"
	}
	return "gui/" + strconv.Itoa(s.UID)
}

// Target is the launchd service target, DOMAIN/LABEL.
func (s Spec) Target() string { return s.Domain() + "/" + s.Name }

// File is where the definition goes.
func (s Spec) File() string {
	switch {
	case s.Manager == Launchd && s.System:
		return filepath.Join("/Library/LaunchDaemons", s.Name+".plist")
	case s.Manager == Launchd:
		return filepath.Join(s.Home, "Library", "LaunchAgents", s.Name+".plist")
	case s.System:
		return filepath.Join("/etc/systemd/system", s.Unit())
	}
	ch := s.ConfigHome
	if ch == "" {
		ch = filepath.Join(s.Home, ".config")
	}
	return filepath.Join(ch, "systemd", "user", s.Unit())
}

// StdoutPath and StderrPath are launchd's log files.
func (s Spec) StdoutPath() string { return filepath.Join(s.StateDir, "launchd.stdout.log") }

// StderrPath is where launchd sends Talon's stderr.
func (s Spec) StderrPath() string { return filepath.Join(s.StateDir, "launchd.stderr.log") }

// Validate checks what Render needs.
func (s Spec) Validate() error {
	switch {
	case s.Manager != Launchd && s.Manager != Systemd:
		return fmt.Errorf("service manager %q: want launchd or systemd", s.Manager)
	case s.Name == "" || strings.ContainsAny(s.Name, "/ \t\n"):
		return fmt.Errorf("service name %q: want a label without slashes or spaces", s.Name)
	case len(s.Argv) == 0 || !filepath.IsAbs(s.Argv[0]):
		return fmt.Errorf("the service needs the absolute path of the talon binary")
	case s.Home == "" && !s.System:
		return errors.New("no home directory")
	case s.StateDir == "" || !filepath.IsAbs(s.StateDir):
		return fmt.Errorf("state directory %q is not absolute", s.StateDir)
	}
	for _, a := range s.Argv {
		if strings.ContainsAny(a, "\n\r") {
			return fmt.Errorf("argument %q has a line break", a)
		}
	}
	return nil
}

// Render is the file install writes, marker included, with manifest m
// (whose Sum it sets).
func (s Spec) Render(m Manifest) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	body := s.renderSystemd()
	if s.Manager == Launchd {
		body = s.renderLaunchd()
	}
	return seal(s.Manager, body, m)
}

// Manifest is what the marker line records.
type Manifest struct {
	// Sum is the SHA-256 of the file without its marker line.
	Sum string `json:"sum"`
	// Replaced is a predecessor install set aside.
	Replaced *Replaced `json:"replaced,omitempty"`
}

// Replaced is a predecessor's service that install unloaded and moved.
type Replaced struct {
	Label   string `json:"label"`
	Path    string `json:"path"`
	MovedTo string `json:"moved_to"`
	Loaded  bool   `json:"loaded"` // it was loaded: uninstall loads it again
}

// seal inserts the marker line: first in a unit, after the XML declaration
// in a plist (nothing may come before that).
func seal(manager string, body []byte, m Manifest) ([]byte, error) {
	sum := sha256.Sum256(body)
	m.Sum = hex.EncodeToString(sum[:])
	j, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if manager == Systemd {
		return append([]byte("# "+markerKey+" "+string(j)+"\n"), body...), nil
	}
	first, rest, _ := bytes.Cut(body, []byte("\n"))
	var b bytes.Buffer
	b.Write(first)
	b.WriteString("\n<!-- " + markerKey + " " + string(j) + " -->\n")
	b.Write(rest)
	return b.Bytes(), nil
}

// Inspect reads a service file: ours reports whether it has the marker,
// edited whether its content no longer matches the checksum.
func Inspect(content []byte) (m Manifest, ours, edited bool) {
	lines := bytes.SplitAfter(content, []byte("\n"))
	for i, l := range lines {
		if i > 1 {
			break
		}
		t := strings.TrimSpace(string(l))
		t = strings.TrimPrefix(strings.TrimPrefix(t, "#"), "<!--")
		t = strings.TrimSpace(strings.TrimSuffix(t, "-->"))
		rest, ok := strings.CutPrefix(t, markerKey)
		if !ok {
			continue
		}
		if json.Unmarshal([]byte(strings.TrimSpace(rest)), &m) != nil {
			return m, true, true
		}
		body := bytes.Join(append(append([][]byte(nil), lines[:i]...), lines[i+1:]...), nil)
		sum := sha256.Sum256(body)
		return m, true, hex.EncodeToString(sum[:]) != m.Sum
	}
	return m, false, false
}

// systemdQuote quotes one word of a unit file's command line or
// Environment= assignment: specifiers (%) and variables ($) are escaped,
// and words with spaces, quotes or backslashes are double-quoted.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

func xmlEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Host is how the package touches the machine.
type Host struct {
	// Run runs a command and returns its standard output; an error carries
	// the exit status and standard error.
	Run func(ctx context.Context, argv ...string) (string, error)
	// Say reports one thing done, for the operator.
	Say func(format string, args ...any)
	// Warn reports something the operator should act on.
	Warn func(format string, args ...any)
}

// Refusal is an install or uninstall that stopped before touching anything.
type Refusal struct{ Msg string }

func (r *Refusal) Error() string { return r.Msg }

func refuse(format string, args ...any) error { return &Refusal{Msg: fmt.Sprintf(format, args...)} }

// InstallOptions change what Install may do.
type InstallOptions struct {
	// Force overwrites a file Talon did not write or that was edited.
	Force bool
	// ReplacePredecessor unloads the predecessor's LaunchAgent and sets its
	// plist aside (uninstall puts it back).
	ReplacePredecessor bool
}

// Predecessor is the Rust Talon's LaunchAgent, if present.
type Predecessor struct {
	Path    string   `json:"path"`
	Exists  bool     `json:"exists"`
	Loaded  bool     `json:"loaded"`
	Program []string `json:"program,omitempty"` // its ProgramArguments, read from the plist
}

// FindPredecessor looks for com.joel.talon: its plist in ~/Library/LaunchAgents
// and the service in the gui domain.
func FindPredecessor(ctx context.Context, h Host, s Spec) *Predecessor {
	if s.Manager != Launchd {
		return nil
	}
	p := &Predecessor{Path: filepath.Join(s.Home, "Library", "LaunchAgents", PredecessorLabel+".plist")}
	if b, err := os.ReadFile(p.Path); err == nil {
		p.Exists = true
		var doc struct {
			ProgramArguments []string `plist:"ProgramArguments"`
			Program          string   `plist:"Program"`
		}
		if _, err := plist.Unmarshal(b, &doc); err == nil {
			p.Program = doc.ProgramArguments
			if len(p.Program) == 0 && doc.Program != "" {
				p.Program = []string{doc.Program}
			}
		}
	}
	if _, err := h.Run(ctx, "launchctl", "print", "gui/"+strconv.Itoa(s.UID)+"/"+PredecessorLabel); err == nil {
		p.Loaded = true
	}
	if !p.Exists && !p.Loaded {
		return nil
	}
	return p
}

// Install writes the service file and loads it.
func Install(ctx context.Context, h Host, s Spec, opts InstallOptions) error {
	path := s.File()
	var m Manifest
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	default:
		om, ours, edited := Inspect(old)
		switch {
		case !ours && !opts.Force:
			return refuse("%s exists and was not written by talon service install; move it away, or pass --force to overwrite it", path)
		case edited && !opts.Force:
			return refuse("%s was edited since talon service install wrote it; pass --force to overwrite your edits (or uninstall first)", path)
		}
		if ours {
			m.Replaced = om.Replaced // keep what uninstall must put back
		}
	}
	if s.Manager == Launchd && m.Replaced == nil && s.Name != PredecessorLabel {
		if p := FindPredecessor(ctx, h, s); p != nil {
			if !opts.ReplacePredecessor {
				what := "is loaded"
				if p.Exists {
					what = "is installed at " + p.Path
				}
				if len(p.Program) > 0 {
					what += " (it runs " + strings.Join(p.Program, " ") + ")"
				}
				return refuse("the predecessor's LaunchAgent %s %s; two watchdogs would heal and page twice. Pass --replace-predecessor to unload it and set its plist aside (talon service uninstall puts it back)", PredecessorLabel, what)
			}
			r, err := setAside(ctx, h, s, p)
			if err != nil {
				return err
			}
			m.Replaced = r
		}
	}
	b, err := s.Render(m)
	if err != nil {
		return err
	}
	if err := writeFile(path, b); err != nil {
		return err
	}
	h.Say("wrote %s", path)
	if s.Manager == Launchd {
		return loadLaunchd(ctx, h, s)
	}
	return loadSystemd(ctx, h, s)
}

// setAside unloads the predecessor and renames its plist.
func setAside(ctx context.Context, h Host, s Spec, p *Predecessor) (*Replaced, error) {
	r := &Replaced{Label: PredecessorLabel, Path: p.Path, Loaded: p.Loaded}
	if p.Loaded {
		if _, err := h.Run(ctx, "launchctl", "bootout", "gui/"+strconv.Itoa(s.UID)+"/"+PredecessorLabel); err != nil {
			return nil, fmt.Errorf("unload the predecessor %s: %w", PredecessorLabel, err)
		}
		h.Say("unloaded the predecessor %s", PredecessorLabel)
	}
	if p.Exists {
		r.MovedTo = p.Path + ".replaced-by-talon"
		if err := os.Rename(p.Path, r.MovedTo); err != nil {
			return nil, fmt.Errorf("set the predecessor's plist aside: %w", err)
		}
		h.Say("moved %s to %s", p.Path, r.MovedTo)
	}
	return r, nil
}

func loadLaunchd(ctx context.Context, h Host, s Spec) error {
	if _, err := h.Run(ctx, "launchctl", "print", s.Target()); err == nil {
		// Loaded already (a re-install): unload first, or bootstrap fails.
		if _, err := h.Run(ctx, "launchctl", "bootout", s.Target()); err != nil {
			return fmt.Errorf("unload the running %s: %w", s.Target(), err)
		}
		h.Say("unloaded the running %s", s.Target())
	}
	// A service disabled earlier (launchctl disable) refuses to bootstrap.
	if _, err := h.Run(ctx, "launchctl", "enable", s.Target()); err != nil {
		return fmt.Errorf("launchctl enable %s: %w", s.Target(), err)
	}
	if _, err := h.Run(ctx, "launchctl", "bootstrap", s.Domain(), s.File()); err != nil {
		return fmt.Errorf("launchctl bootstrap %s %s: %w", s.Domain(), s.File(), err)
	}
	h.Say("loaded %s (launchctl bootstrap %s)", s.Target(), s.Domain())
	return nil
}

func (s Spec) systemctl(args ...string) []string {
	argv := []string{"systemctl"}
	if !s.System {
		argv = append(argv, "--user")
	}
	return append(argv, args...)
}

func loadSystemd(ctx context.Context, h Host, s Spec) error {
	if _, err := h.Run(ctx, s.systemctl("daemon-reload")...); err != nil {
		return fmt.Errorf("systemctl daemon-reload: %w", err)
	}
	_, activeErr := h.Run(ctx, s.systemctl("is-active", "--quiet", s.Unit())...)
	if _, err := h.Run(ctx, s.systemctl("enable", "--now", s.Unit())...); err != nil {
		return fmt.Errorf("systemctl enable --now %s: %w", s.Unit(), err)
	}
	h.Say("enabled and started %s", s.Unit())
	if activeErr == nil {
		// It was running the old unit: enable --now leaves it be.
		if _, err := h.Run(ctx, s.systemctl("restart", s.Unit())...); err != nil {
			return fmt.Errorf("systemctl restart %s: %w", s.Unit(), err)
		}
		h.Say("restarted %s on the new unit", s.Unit())
	}
	if !s.System {
		user := filepath.Base(s.Home)
		if u := os.Getenv("USER"); u != "" {
			user = u
		}
		if _, err := os.Stat(filepath.Join("/var/lib/systemd/linger", user)); err != nil {
			h.Warn("lingering is off for %s: the user manager, and Talon with it, stops at logout and starts only at login; `loginctl enable-linger %s` keeps it running", user, user)
		}
	}
	return nil
}

// Uninstall unloads and removes what Install wrote, and puts back a
// predecessor it set aside. Without a file it reports that nothing is
// installed and succeeds.
func Uninstall(ctx context.Context, h Host, s Spec) error {
	path := s.File()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		h.Say("nothing to uninstall: %s does not exist", path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	m, ours, _ := Inspect(b)
	if !ours {
		return refuse("%s was not written by talon service install; remove it yourself if you mean to", path)
	}
	if s.Manager == Launchd {
		if _, err := h.Run(ctx, "launchctl", "print", s.Target()); err == nil {
			if _, err := h.Run(ctx, "launchctl", "bootout", s.Target()); err != nil {
				return fmt.Errorf("launchctl bootout %s: %w", s.Target(), err)
			}
			h.Say("unloaded %s", s.Target())
		}
	} else {
		if _, err := h.Run(ctx, s.systemctl("disable", "--now", s.Unit())...); err != nil {
			return fmt.Errorf("systemctl disable --now %s: %w", s.Unit(), err)
		}
		h.Say("stopped and disabled %s", s.Unit())
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	h.Say("removed %s", path)
	if s.Manager == Systemd {
		if _, err := h.Run(ctx, s.systemctl("daemon-reload")...); err != nil {
			return fmt.Errorf("systemctl daemon-reload: %w", err)
		}
	}
	if r := m.Replaced; r != nil {
		if r.MovedTo != "" {
			if _, err := os.Stat(r.Path); err == nil {
				h.Warn("did not restore the predecessor: %s exists again; its old plist stays at %s", r.Path, r.MovedTo)
				return nil
			}
			if err := os.Rename(r.MovedTo, r.Path); err != nil {
				return fmt.Errorf("put the predecessor's plist back: %w", err)
			}
			h.Say("put the predecessor's plist back at %s", r.Path)
		}
		if r.Loaded && r.MovedTo != "" {
			if _, err := h.Run(ctx, "launchctl", "bootstrap", "gui/"+strconv.Itoa(s.UID), r.Path); err != nil {
				return fmt.Errorf("load the predecessor %s again: %w", r.Label, err)
			}
			h.Say("loaded the predecessor %s again, as it was before the install", r.Label)
		}
	}
	return nil
}

// Report is `talon service status`.
type Report struct {
	Manager     string       `json:"manager"`
	Name        string       `json:"name"`
	File        string       `json:"file"`
	Installed   bool         `json:"installed"`
	Ours        bool         `json:"written_by_talon"`
	Edited      bool         `json:"edited"`
	Loaded      bool         `json:"loaded"`
	Running     bool         `json:"running"`
	PID         int          `json:"pid,omitempty"`
	State       string       `json:"state,omitempty"` // the manager's word: "running", "active (running)", …
	Replaced    *Replaced    `json:"replaced,omitempty"`
	Predecessor *Predecessor `json:"predecessor,omitempty"`
}

// Status says whether the service is installed, loaded and running.
func Status(ctx context.Context, h Host, s Spec) Report {
	r := Report{Manager: s.Manager, Name: s.Name, File: s.File()}
	if s.Manager == Systemd {
		r.Name = s.Unit()
	}
	if b, err := os.ReadFile(r.File); err == nil {
		r.Installed = true
		var m Manifest
		m, r.Ours, r.Edited = Inspect(b)
		r.Replaced = m.Replaced
	}
	if s.Manager == Launchd {
		if out, err := h.Run(ctx, "launchctl", "print", s.Target()); err == nil {
			r.Loaded = true
			r.State, r.PID = launchdState(out)
			r.Running = r.State == "running"
		}
		if r.Replaced == nil {
			r.Predecessor = FindPredecessor(ctx, h, s)
		}
		return r
	}
	out, err := h.Run(ctx, s.systemctl("show", "--property=LoadState,ActiveState,SubState,MainPID,UnitFileState", s.Unit())...)
	if err != nil {
		return r
	}
	props := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			props[k] = strings.TrimSpace(v)
		}
	}
	r.Loaded = props["LoadState"] == "loaded" && props["UnitFileState"] == "enabled"
	r.State = props["ActiveState"] + " (" + props["SubState"] + ")"
	r.PID, _ = strconv.Atoi(props["MainPID"])
	r.Running = props["ActiveState"] == "active" && r.PID > 0
	return r
}

// launchdState reads "state = running" and "pid = 123" from launchctl print.
func launchdState(out string) (string, int) {
	var state string
	var pid int
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), " = ")
		if !ok {
			continue
		}
		switch k {
		case "state":
			if state == "" {
				state = v
			}
		case "pid":
			if pid == 0 {
				pid, _ = strconv.Atoi(v)
			}
		}
	}
	return state, pid
}

// writeFile writes path atomically (temp file, fsync, rename), mode 0644,
// creating its directory (0755: launchd and systemd read it) if needed.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := engine.WriteFileAtomic(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
