package loader

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/watch"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// site is a config.toml, a policy and a services file under a real
// directory, reached through a link: root/link → root/real.
type site struct {
	root, real string
}

func newSite(t *testing.T) site {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := site{root: root, real: filepath.Join(root, "real")}
	write(t, filepath.Join(s.real, "config.toml"), "services_file = \"services.toml\"\nstate_dir = \"state\"\n")
	write(t, filepath.Join(s.real, "services.toml"), "[script.svc]\ncommand = \"true\"\n")
	write(t, filepath.Join(s.real, "policy", "talon.star"), "load(\"lib/x.star\", \"x\")\nprobe.exec(\"a\", [\"true\"])\nservices()\n")
	write(t, filepath.Join(s.real, "policy", "lib", "x.star"), "x = 1\n")
	symlink(t, "real", filepath.Join(root, "link"))
	return s
}

// TestPathsAreCanonical: however config.toml and the policy directory are
// spelled — relative, "./", through a linked directory — the load names
// every file by its canonical path, the link as given is watched too, and
// the hash is the same.
func TestPathsAreCanonical(t *testing.T) {
	s := newSite(t)
	t.Chdir(s.root)
	want := []string{
		filepath.Join(s.real, "config.toml"),
		filepath.Join(s.real, "policy", "lib", "x.star"),
		filepath.Join(s.real, "policy", "talon.star"),
		filepath.Join(s.real, "services.toml"),
	}
	var hash string
	for _, c := range []struct {
		config, policy string
		aliases        []string
	}{
		{filepath.Join(s.real, "config.toml"), filepath.Join(s.real, "policy"), nil},
		{"real/config.toml", "real/policy", nil},
		{"./real/config.toml", "./real/policy/", nil},
		{"link/config.toml", "link/policy", []string{filepath.Join(s.root, "link")}},
		{"./link/../link/config.toml", "link/./policy", []string{filepath.Join(s.root, "link")}},
	} {
		res := New(Options{ConfigFile: c.config, ConfigRequired: true, PolicyDir: c.policy, Daemon: true}).Load()
		if err := res.Err(); err != nil {
			t.Fatalf("%s, %s: %s", c.config, c.policy, res.ErrorText())
		}
		files := slices.Clone(want)
		files = append(files, c.aliases...)
		slices.Sort(files)
		if !slices.Equal(res.Files, files) {
			t.Errorf("%s, %s: files\n got %q\nwant %q", c.config, c.policy, res.Files, files)
		}
		if res.Policy.Dir != filepath.Join(s.real, "policy") {
			t.Errorf("%s: policy dir %s", c.policy, res.Policy.Dir)
		}
		if p := res.Policy.Probe("script:svc"); p == nil || !strings.HasPrefix(p.Pos, filepath.Join(s.real, "services.toml")+":") {
			t.Errorf("%s: services probe at %v", c.config, p)
		}
		if hash == "" {
			hash = res.Hash
		} else if res.Hash != hash {
			t.Errorf("%s, %s: hash %s, want %s (the spelling of a path is not the policy)", c.config, c.policy, res.Hash, hash)
		}
	}
}

// TestEmbeddedDefaultUntilTalonStarAppears: a policy directory nobody named
// (the config's default) without talon.star runs the embedded default and
// watches for the file; once it appears, the next load is the real policy.
func TestEmbeddedDefaultUntilTalonStarAppears(t *testing.T) {
	s := newSite(t)
	// The config names no policy_dir: its default is under $HOME, so
	// point the loader at a config whose default we control.
	cfg := filepath.Join(s.real, "config.toml")
	write(t, cfg, "services_file = \"services.toml\"\n")
	home := filepath.Join(s.root, "home")
	t.Setenv("HOME", home) // config's default policy_dir: ~/.config/talon/policies
	var notes []string
	l := New(Options{ConfigFile: cfg, Daemon: true, Note: func(msg string, kv ...any) { notes = append(notes, msg) }})
	res := l.Load()
	if err := res.Err(); err != nil {
		t.Fatal(res.ErrorText())
	}
	entry := filepath.Join(home, ".config", "talon", "policies", "talon.star")
	if l.PolicyName() != EmbeddedName || res.Policy.Probe("root_disk") == nil || !slices.Contains(res.Files, entry) {
		t.Fatalf("without talon.star: %s, files %q", l.PolicyName(), res.Files)
	}
	if len(notes) != 1 {
		t.Errorf("notes %q", notes)
	}
	write(t, entry, "probe.exec(\"mine\", [\"true\"])\n")
	res = l.Load()
	if err := res.Err(); err != nil {
		t.Fatal(res.ErrorText())
	}
	if l.PolicyName() != filepath.Dir(entry) || res.Policy.Probe("mine") == nil {
		t.Fatalf("after talon.star appeared: %s, probes %d", l.PolicyName(), len(res.Policy.Probes))
	}
	// It is part of the running policy now: deleting it is an error of the
	// reload, not a silent switch back to the default.
	os.Remove(entry)
	res = l.Load()
	if want := entry + ": this file was part of the running policy and is gone; restore it, or remove it from the policy, to reload"; res.ErrorText() != want {
		t.Fatalf("deleted talon.star: %q, want %q", res.ErrorText(), want)
	}
}

// TestNamedPolicyDirWithoutTalonStar: a policy directory named on purpose
// (--policy, or policy_dir in config.toml) without talon.star is an error,
// and the file is watched so that creating it loads it.
func TestNamedPolicyDirWithoutTalonStar(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	dir := filepath.Join(s.real, "empty")
	os.MkdirAll(dir, 0o755)
	cfg := filepath.Join(s.real, "config.toml")
	write(t, cfg, "services_file = \"services.toml\"\npolicy_dir = \"empty\"\n")
	for _, opts := range []Options{{ConfigFile: cfg}, {ConfigFile: cfg, PolicyDir: dir}} {
		res := New(opts).Load()
		want := "talon.star: no talon.star in policy directory " + dir + "; create it or point policy_dir elsewhere"
		if res.ErrorText() != want || !slices.Contains(res.Files, filepath.Join(dir, "talon.star")) {
			t.Errorf("%+v: %q, files %q", opts, res.ErrorText(), res.Files)
		}
	}
}

// TestDaemonKeepsTheLastGoodFiles: in daemon mode config.toml is read at
// every load; a config or services file emptied or deleted while the
// daemon runs fails the load (the last good policy keeps running) and says
// which file and why.
func TestDaemonKeepsTheLastGoodFiles(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	cfg := filepath.Join(s.real, "config.toml")
	services := filepath.Join(s.real, "services.toml")
	l := New(Options{ConfigFile: cfg, ConfigRequired: true, PolicyDir: filepath.Join(s.real, "policy"), Daemon: true})
	good := l.Load()
	if err := good.Err(); err != nil {
		t.Fatal(good.ErrorText())
	}
	steps := []struct {
		name   string
		change func()
		want   string
	}{
		{"config emptied", func() { write(t, cfg, "") }, cfg + ": the file is empty; write at least a comment in it to run with every default"},
		{"config restored", func() { write(t, cfg, "services_file = \"services.toml\"\ncheck_interval_secs = 7\n") }, ""},
		{"config deleted", func() { os.Remove(cfg) }, cfg + ": config file does not exist; fix --config / TALON_CONFIG or create it"},
		{"config back", func() { write(t, cfg, "services_file = \"services.toml\"\n") }, ""},
		{"services emptied", func() { write(t, services, "\n\n") }, services + ": the file is empty; write at least a comment in it to declare no service"},
		{"services deleted", func() { os.Remove(services) }, services + ": this file was part of the running policy and is gone; restore it, or remove it from the policy, to reload"},
		{"services with a comment", func() { write(t, services, "# none for now\n") }, ""},
		{"config typo", func() { write(t, cfg, "services_file = \"services.toml\"\ncheck_intervall_secs = 7\n") }, cfg + `:2:1: unknown key "check_intervall_secs"; did you mean "check_interval_secs"?`},
	}
	for _, st := range steps {
		st.change()
		res := l.Load()
		if res.ErrorText() != st.want {
			t.Fatalf("%s: got %q, want %q", st.name, res.ErrorText(), st.want)
		}
		if st.name == "config restored" && res.Policy.Interval != 7*time.Second {
			t.Errorf("the config edit did not take effect: interval %s", res.Policy.Interval)
		}
		if st.name == "services with a comment" && res.Policy.Probe("script:svc") != nil {
			t.Error("the service is still declared")
		}
		if !slices.Contains(res.Files, cfg) {
			t.Errorf("%s: config.toml is not watched: %q", st.name, res.Files)
		}
	}
}

// TestEditsReloadThroughAnySpelling drives the real watcher with the files
// of real loads: whether the daemon was given relative, "./" or linked
// paths, an edit saved by rename (vim, VS Code) in the real directory
// reloads, and so does an edit of config.toml and of services.toml.
func TestEditsReloadThroughAnySpelling(t *testing.T) {
	for _, sp := range []struct{ name, config, policy string }{
		{"relative", "real/config.toml", "real/policy"},
		{"dot", "./real/config.toml", "./real/policy"},
		{"linked directory", "link/config.toml", "link/policy"},
	} {
		t.Run(sp.name, func(t *testing.T) {
			s := newSite(t)
			t.Chdir(s.root)
			l := New(Options{ConfigFile: sp.config, ConfigRequired: true, PolicyDir: sp.policy, Daemon: true})
			d := newDaemonish(t, l)
			saveByRename := func(path, body string) {
				tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
				write(t, tmp, body)
				if err := os.Rename(tmp, path); err != nil {
					t.Fatal(err)
				}
			}
			edits := []struct {
				what, path, body, probe string
			}{
				{"talon.star saved by rename", filepath.Join(s.real, "policy", "talon.star"), "load(\"lib/x.star\", \"x\")\nprobe.exec(\"b\", [\"true\"])\nservices()\n", "b"},
				{"a library edited in place", filepath.Join(s.real, "policy", "lib", "x.star"), "x = 2\nprobe.exec(\"lib\", [\"true\"])\n", "lib"},
				{"services.toml saved by rename", filepath.Join(s.real, "services.toml"), "[script.other]\ncommand = \"true\"\n", "script:other"},
				{"config.toml saved by rename", filepath.Join(s.real, "config.toml"), "services_file = \"services.toml\"\ncheck_interval_secs = 9\n", ""},
			}
			for _, e := range edits {
				before := d.hash()
				if !strings.Contains(e.what, "rename") {
					write(t, e.path, e.body)
				} else {
					saveByRename(e.path, e.body)
				}
				res := d.reloaded(t, e.what, before)
				if e.probe != "" && res.Policy.Probe(e.probe) == nil {
					t.Fatalf("%s: probe %s missing", e.what, e.probe)
				}
				if e.probe == "" && res.Policy.Interval != 9*time.Second {
					t.Fatalf("%s: interval %s", e.what, res.Policy.Interval)
				}
			}
		})
	}
}

// daemonish is the part of the daemon the watcher talks to: the files of
// the last load and a reload that loads again. The debounce fires when the
// test says, so nothing here depends on the machine's speed.
type daemonish struct {
	l       *Loader
	last    chan *engine.LoadResult // the current load, passed hand to hand
	reloads chan *engine.LoadResult
	armed   chan chan time.Time
}

func newDaemonish(t *testing.T, l *Loader) *daemonish {
	d := &daemonish{l: l, last: make(chan *engine.LoadResult, 1), reloads: make(chan *engine.LoadResult, 100), armed: make(chan chan time.Time, 1000)}
	first := l.Load()
	if err := first.Err(); err != nil {
		t.Fatal(first.ErrorText())
	}
	d.last <- first
	files := func() []string {
		r := <-d.last
		d.last <- r
		return r.Files
	}
	w, err := watch.New(watch.Options{Files: files, Logger: log.New(io.Discard),
		Reload: func(context.Context) (string, error) {
			res := l.Load()
			<-d.last
			d.last <- res
			d.reloads <- res
			return res.Hash, res.Err()
		},
		After: func(time.Duration) <-chan time.Time {
			c := make(chan time.Time, 1)
			d.armed <- c
			return c
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go w.Run(ctx)
	return d
}

func (d *daemonish) hash() string {
	r := <-d.last
	d.last <- r
	return r.Hash
}

// reloaded fires each debounce the watcher arms until a reload yields a
// policy whose hash differs from before.
func (d *daemonish) reloaded(t *testing.T, what, before string) *engine.LoadResult {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case c := <-d.armed:
			c <- time.Now()
		case res := <-d.reloads:
			if res.Err() != nil {
				t.Fatalf("%s: %s", what, res.ErrorText())
			}
			if res.Hash != before {
				return res
			}
		case <-timeout:
			t.Fatalf("%s: no reload", what)
		}
	}
}

// TestRepointedPolicyLinkReloads: a policy directory given as a link that a
// deploy switches to another release reloads, though no file changed.
func TestRepointedPolicyLinkReloads(t *testing.T) {
	s := newSite(t)
	for _, rel := range []string{"v1", "v2"} {
		write(t, filepath.Join(s.root, "releases", rel, "talon.star"), "probe.exec(\""+rel+"\", [\"true\"])\n")
	}
	current := filepath.Join(s.root, "current")
	symlink(t, "releases/v1", current)
	l := New(Options{ConfigFile: filepath.Join(s.real, "config.toml"), PolicyDir: current, Daemon: true})
	d := newDaemonish(t, l)
	tmp := filepath.Join(s.root, "current.new")
	symlink(t, "releases/v2", tmp)
	if err := os.Rename(tmp, current); err != nil {
		t.Fatal(err)
	}
	res := d.reloaded(t, "the switched link", d.hash())
	if res.Policy.Probe("v2") == nil || res.Policy.Dir != filepath.Join(s.root, "releases", "v2") {
		t.Fatalf("after the switch: dir %s", res.Policy.Dir)
	}
}
