package service

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"howett.net/plist"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("output differs from %s (run go test -update and review the diff):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func spec(manager string, system bool) Spec {
	s := Spec{Manager: manager, System: system, Name: DefaultUnit,
		Argv:     []string{"/Users/joel/.local/bin/talon", "--config", "/Users/joel/.config/talon/config.toml", "run"},
		Path:     []string{"/opt/homebrew/bin", "/Users/joel/.local/bin", "/usr/bin", "/bin"},
		Home:     "/Users/joel",
		StateDir: "/Users/joel/.local/state/talon", UID: 501}
	if manager == Launchd {
		s.Name = DefaultLabel
	}
	if system {
		s.RunAs = "joel"
		// Values that need quoting in a unit and escaping in a plist.
		s.Env = map[string]string{"TALON_LOG": "debug", "ODD": `a b&<"x"> $HOME 100%`}
	}
	return s
}

func TestRenderGolden(t *testing.T) {
	for _, c := range []struct {
		name    string
		manager string
		system  bool
	}{
		{"systemd_user", Systemd, false},
		{"systemd_system", Systemd, true},
		{"launchd_user", Launchd, false},
		{"launchd_system", Launchd, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := spec(c.manager, c.system).Render(Manifest{})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name, b)
			if _, ours, edited := Inspect(b); !ours || edited {
				t.Fatalf("a rendered file must read as ours and unedited: ours %v edited %v", ours, edited)
			}
		})
	}
}

// The plist is read back by a real plist decoder, with the values launchd
// will act on.
func TestPlistDecodes(t *testing.T) {
	for _, system := range []bool{false, true} {
		s := spec(Launchd, system)
		s.Argv = append(s.Argv[:len(s.Argv)-1], "--policy", "/Users/joel/policies & <tests>", "run")
		s.Env = map[string]string{"TZ": "Europe/Zurich"}
		b, err := s.Render(Manifest{Replaced: &Replaced{Label: PredecessorLabel, Path: "/x", MovedTo: "/y", Loaded: true}})
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Label             string            `plist:"Label"`
			ProgramArguments  []string          `plist:"ProgramArguments"`
			RunAtLoad         bool              `plist:"RunAtLoad"`
			KeepAlive         bool              `plist:"KeepAlive"`
			ProcessType       string            `plist:"ProcessType"`
			ThrottleInterval  int               `plist:"ThrottleInterval"`
			ExitTimeOut       int               `plist:"ExitTimeOut"`
			UserName          string            `plist:"UserName"`
			Env               map[string]string `plist:"EnvironmentVariables"`
			StandardOutPath   string            `plist:"StandardOutPath"`
			StandardErrorPath string            `plist:"StandardErrorPath"`
		}
		format, err := plist.Unmarshal(b, &doc)
		if err != nil || format != plist.XMLFormat {
			t.Fatalf("plist does not decode: format %d, %v\n%s", format, err, b)
		}
		wantArgs := "/Users/joel/.local/bin/talon --config /Users/joel/.config/talon/config.toml --policy /Users/joel/policies & <tests> run"
		if doc.Label != DefaultLabel || strings.Join(doc.ProgramArguments, " ") != wantArgs || !doc.RunAtLoad || !doc.KeepAlive ||
			doc.ProcessType != "Standard" || doc.ThrottleInterval != 10 || doc.ExitTimeOut != 30 ||
			doc.Env["PATH"] != "/opt/homebrew/bin:/Users/joel/.local/bin:/usr/bin:/bin" || doc.Env["TZ"] != "Europe/Zurich" ||
			doc.StandardErrorPath != "/Users/joel/.local/state/talon/launchd.stderr.log" ||
			doc.StandardOutPath != "/Users/joel/.local/state/talon/launchd.stdout.log" {
			t.Fatalf("decoded plist: %+v", doc)
		}
		if (doc.UserName == "joel") != system {
			t.Fatalf("UserName %q for system=%v", doc.UserName, system)
		}
		m, ours, edited := Inspect(b)
		if !ours || edited || m.Replaced == nil || m.Replaced.MovedTo != "/y" {
			t.Fatalf("manifest %+v ours %v edited %v", m, ours, edited)
		}
	}
}

// The unit's command line survives systemd's quoting: spaces, quotes,
// percent signs (specifiers) and dollars (variables).
func TestSystemdQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/talon":       "/usr/bin/talon",
		"/a b/talon":           `"/a b/talon"`,
		"50%":                  "50%%",
		"$HOME":                "$$HOME",
		`say "hi"`:             `"say \"hi\""`,
		`back\slash`:           `"back\\slash"`,
		"PATH=/usr/bin:/a b":   `"PATH=/usr/bin:/a b"`,
		"semi;colon":           `"semi;colon"`,
		"":                     `""`,
		"/Users/joel/%h/talon": "/Users/joel/%%h/talon",
	} {
		if got := systemdQuote(in); got != want {
			t.Errorf("systemdQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestInspectEditedAndForeign(t *testing.T) {
	b, err := spec(Systemd, false).Render(Manifest{})
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(b, []byte("RestartSec=5"), []byte("RestartSec=1"), 1)
	if _, ours, ed := Inspect(edited); !ours || !ed {
		t.Fatalf("an edit must show: ours %v edited %v", ours, ed)
	}
	if _, ours, _ := Inspect([]byte("[Unit]\nDescription=Talon watchdog\n")); ours {
		t.Fatal("a unit without the marker is not ours")
	}
	old, _ := os.ReadFile("../../docs/examples/talon.service")
	if _, ours, _ := Inspect(old); ours && len(old) > 0 && !bytes.Contains(old, []byte(markerKey)) {
		t.Fatal("the old example unit is not ours")
	}
}

func TestValidate(t *testing.T) {
	s := spec(Systemd, false)
	for _, c := range []struct {
		mod  func(*Spec)
		want string
	}{
		{func(s *Spec) { s.Manager = "runit" }, `service manager "runit": want launchd or systemd`},
		{func(s *Spec) { s.Name = "a/b" }, `service name "a/b": want a label without slashes or spaces`},
		{func(s *Spec) { s.Argv = []string{"talon", "run"} }, "the service needs the absolute path of the talon binary"},
		{func(s *Spec) { s.StateDir = "state" }, `state directory "state" is not absolute`},
		{func(s *Spec) { s.Argv = append(s.Argv, "a\nb") }, `argument "a\nb" has a line break`},
	} {
		x := s
		x.Argv = append([]string(nil), s.Argv...)
		c.mod(&x)
		if _, err := x.Render(Manifest{}); err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %s", err, c.want)
		}
	}
}

// recorder stands in for launchctl and systemctl: it records every command
// and answers as the manager would for a service in the given state.
type recorder struct {
	calls  []string
	loaded map[string]bool // launchd targets, or systemd units that are active
}

func (r *recorder) run(_ context.Context, argv ...string) (string, error) {
	line := strings.Join(argv, " ")
	r.calls = append(r.calls, line)
	switch {
	case argv[0] == "launchctl" && argv[1] == "print":
		if r.loaded[argv[2]] {
			return "state = running\n\tpid = 4242\n", nil
		}
		return "", errors.New("exit status 113: Could not find service")
	case argv[0] == "systemctl" && argv[2] == "is-active":
		if !r.loaded[argv[4]] {
			return "", errors.New("exit status 3")
		}
	case argv[0] == "launchctl" && argv[1] == "bootout":
		delete(r.loaded, argv[2])
	case argv[0] == "launchctl" && argv[1] == "bootstrap":
		label := strings.TrimSuffix(filepath.Base(argv[3]), ".plist")
		r.loaded[argv[2]+"/"+label] = true
	}
	return "", nil
}

func TestLaunchdInstallReplacesThePredecessorAndUninstallPutsItBack(t *testing.T) {
	home := t.TempDir()
	s := spec(Launchd, false)
	s.Home, s.StateDir = home, filepath.Join(home, "state")
	pred := filepath.Join(home, "Library", "LaunchAgents", PredecessorLabel+".plist")
	predBody := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>Label</key><string>com.joel.talon</string>
<key>ProgramArguments</key><array><string>/Users/joel/.local/bin/talon-rs</string></array></dict></plist>
`)
	if err := os.MkdirAll(filepath.Dir(pred), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(pred, predBody, 0o644)
	rec := &recorder{loaded: map[string]bool{"gui/501/" + PredecessorLabel: true}}
	var said []string
	h := Host{Run: rec.run, Say: func(f string, a ...any) { said = append(said, f) }, Warn: func(string, ...any) {}}
	ctx := context.Background()

	err := Install(ctx, h, s, InstallOptions{})
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Msg != "the predecessor's LaunchAgent com.joel.talon is installed at "+pred+
		" (it runs /Users/joel/.local/bin/talon-rs); two watchdogs would heal and page twice. Pass --replace-predecessor to unload it and set its plist aside (talon service uninstall puts it back)" {
		t.Fatalf("install beside the predecessor: %v", err)
	}
	if _, err := os.Stat(s.File()); !os.IsNotExist(err) {
		t.Fatal("a refused install wrote its file")
	}
	rec.calls = nil
	if err := Install(ctx, h, s, InstallOptions{ReplacePredecessor: true}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"launchctl print gui/501/com.joel.talon",
		"launchctl bootout gui/501/com.joel.talon",
		"launchctl print gui/501/com.talon.watchdog",
		"launchctl enable gui/501/com.talon.watchdog",
		"launchctl bootstrap gui/501 " + s.File(),
	}
	if strings.Join(rec.calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("install ran:\n%s\nwant:\n%s", strings.Join(rec.calls, "\n"), strings.Join(want, "\n"))
	}
	if _, err := os.Stat(pred); !os.IsNotExist(err) {
		t.Fatal("the predecessor's plist is still in place")
	}
	if st := Status(ctx, h, s); !st.Installed || !st.Ours || !st.Loaded || !st.Running || st.PID != 4242 || st.Replaced == nil {
		t.Fatalf("status after install: %+v", st)
	}

	// A re-install keeps the record of the predecessor and reloads.
	rec.calls = nil
	if err := Install(ctx, h, s, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(rec.calls, "\n") != strings.Join([]string{
		"launchctl print gui/501/com.talon.watchdog",
		"launchctl bootout gui/501/com.talon.watchdog",
		"launchctl enable gui/501/com.talon.watchdog",
		"launchctl bootstrap gui/501 " + s.File(),
	}, "\n") {
		t.Fatalf("re-install ran:\n%s", strings.Join(rec.calls, "\n"))
	}

	rec.calls = nil
	if err := Uninstall(ctx, h, s); err != nil {
		t.Fatal(err)
	}
	if strings.Join(rec.calls, "\n") != strings.Join([]string{
		"launchctl print gui/501/com.talon.watchdog",
		"launchctl bootout gui/501/com.talon.watchdog",
		"launchctl bootstrap gui/501 " + pred,
	}, "\n") {
		t.Fatalf("uninstall ran:\n%s", strings.Join(rec.calls, "\n"))
	}
	if b, err := os.ReadFile(pred); err != nil || !bytes.Equal(b, predBody) {
		t.Fatalf("the predecessor's plist was not put back as it was: %v", err)
	}
	if _, err := os.Stat(s.File()); !os.IsNotExist(err) {
		t.Fatal("uninstall left the plist")
	}
	if !rec.loaded["gui/501/"+PredecessorLabel] || rec.loaded["gui/501/"+DefaultLabel] {
		t.Fatalf("after uninstall: loaded %v", rec.loaded)
	}
}

func TestInstallRefusesForeignAndEditedFiles(t *testing.T) {
	home := t.TempDir()
	s := spec(Systemd, false)
	s.Home, s.StateDir = home, filepath.Join(home, "state")
	rec := &recorder{loaded: map[string]bool{}}
	h := Host{Run: rec.run, Say: func(string, ...any) {}, Warn: func(string, ...any) {}}
	ctx := context.Background()
	os.MkdirAll(filepath.Dir(s.File()), 0o755)
	os.WriteFile(s.File(), []byte("[Service]\nExecStart=/usr/bin/talon\n"), 0o644)
	var ref *Refusal
	if err := Install(ctx, h, s, InstallOptions{}); !errors.As(err, &ref) ||
		ref.Msg != s.File()+" exists and was not written by talon service install; move it away, or pass --force to overwrite it" {
		t.Fatalf("foreign file: %v", err)
	}
	if err := Uninstall(ctx, h, s); !errors.As(err, &ref) ||
		ref.Msg != s.File()+" was not written by talon service install; remove it yourself if you mean to" {
		t.Fatalf("uninstall of a foreign file: %v", err)
	}
	if len(rec.calls) != 0 {
		t.Fatalf("a refusal ran %v", rec.calls)
	}
	if err := Install(ctx, h, s, InstallOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(s.File())
	os.WriteFile(s.File(), append(b, []byte("# my tweak\n")...), 0o644)
	if err := Install(ctx, h, s, InstallOptions{}); !errors.As(err, &ref) || !strings.Contains(ref.Msg, "was edited since talon service install wrote it") {
		t.Fatalf("edited file: %v", err)
	}
	if err := Uninstall(ctx, h, s); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.calls, "\n"); got != strings.Join([]string{
		"systemctl --user daemon-reload",
		"systemctl --user is-active --quiet talon.service",
		"systemctl --user enable --now talon.service",
		"systemctl --user disable --now talon.service",
		"systemctl --user daemon-reload",
	}, "\n") {
		t.Fatalf("systemctl calls:\n%s", got)
	}
}

// A system unit is driven without --user, from /etc/systemd/system, and
// runs as the user; a LaunchDaemon lives in the system domain. (Writing
// those paths needs root, so this test checks the plan, not the files.)
func TestSystemScope(t *testing.T) {
	s := spec(Systemd, true)
	if s.File() != "/etc/systemd/system/talon.service" || strings.Join(s.systemctl("enable", "--now", s.Unit()), " ") != "systemctl enable --now talon.service" {
		t.Fatalf("system unit: %s %v", s.File(), s.systemctl("enable"))
	}
	b, _ := s.Render(Manifest{})
	if !strings.Contains(string(b), "\nUser=joel\n") || !strings.Contains(string(b), "\nWantedBy=multi-user.target\n") || !strings.Contains(string(b), "\nAfter=network.target\n") {
		t.Fatalf("system unit:\n%s", b)
	}
	l := spec(Launchd, true)
	if l.File() != "/Library/LaunchDaemons/com.talon.watchdog.plist" || l.Target() != "system/com.talon.watchdog" {
		t.Fatalf("LaunchDaemon: %s %s", l.File(), l.Target())
	}
	u := spec(Systemd, false)
	u.ConfigHome = "/xdg"
	if u.File() != "/xdg/systemd/user/talon.service" {
		t.Fatalf("XDG_CONFIG_HOME: %s", u.File())
	}
}
