package builtins

import (
	"errors"
	"fmt"
	"io/fs"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
)

// ServicesDoc documents services().
const ServicesDoc = `def services(path=None):
Declares one probe per table of a services file (the predecessor's schema):
[http.NAME] url → probe.http("http:NAME", url); [script.NAME] command → probe.script("script:NAME", command);
[launchd.NAME] label → probe.launchd("launchd:NAME", label). Each table may set critical,
critical_after_consecutive_failures (the probe's after=) and timeout_secs (default
config.probes.service_timeout_secs), and on_failure. A critical service pages (on_failure "page");
any other is only shown, never acted on (on_failure "show"), as the predecessor treated its services,
unless its table says on_failure = "act". A missing file declares nothing; a bad or empty one fails
the load, so a reload keeps the last good policy. The file is watched like the policy.
It returns the services it declared, sorted by kind and name, as structs: kind ("http", "launchd", "script"),
name, probe (the probe's name, "launchd:NAME"), label, url, command (the one of its kind; "" otherwise),
port (an http service's port), critical and on_failure. A policy can so act on them, e.g. restart a
failing launchd service with service.restart(s.label, if_failing = [s.probe]).
path: the services file, "~" expanded, relative to the policy directory (default config.services_file)`

// serviceKinds maps a services.toml kind to the probe builtin it declares with.
var serviceKinds = map[string]string{"http": "probe.http", "script": "probe.script", "launchd": "probe.launchd"}

func servicesBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	c, err := policyCollector(thread, b)
	if err != nil {
		return nil, err
	}
	var path string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path??", &path); err != nil {
		return nil, err
	}
	explicit := path != ""
	if !explicit {
		path = c.cfg.ServicesFile
	}
	home, _ := os.UserHomeDir()
	path = config.ExpandHome(path, home)
	if !filepath.IsAbs(path) {
		path = filepath.Join(c.dir, path)
	}
	for _, link := range config.Links(path) {
		c.alias(link) // re-pointing a link on the way reloads too
	}
	path = config.Canonical(path)
	c.servicesRead = append(c.servicesRead, path)
	pos := star.Pos(thread)
	var data []byte
	if c.readServices != nil {
		data, err = c.readServices(path)
	} else {
		data, err = config.ReadFile(path, c.perms)
	}
	// Watched even when missing or bad. The hash key is the path relative to
	// the policy when the file lives inside it, so the same policy has the
	// same hash wherever it is checked out.
	key := path
	if rel, err := filepath.Rel(c.dir, path); err == nil && !strings.HasPrefix(rel, "..") {
		key = rel
	}
	c.record("services:"+key, path, data)
	s := &config.Services{File: path}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		switch {
		case explicit:
			c.warn("%s: services file %s does not exist; no service probes declared", pos, path)
		case c.cfg.IsSet("services_file"):
			// Named on purpose, so its absence is a mistake, not a fresh machine.
			c.warn("%s", c.cfg.ErrorAt("services_file", "services_file names %s, which does not exist: no service is watched; create it or fix the path", path).Error())
		}
	case err != nil:
		return nil, &engine.PosError{File: path, Message: config.FileErrorMessage(err)}
	default:
		if s, err = config.ParseServices(path, data); err != nil {
			return nil, err
		}
	}
	var declared []starlark.Value
	registered := map[string]probe.Builtin{}
	for _, rb := range probe.Registered("probe") {
		registered[rb.Name] = rb
	}
	for _, sv := range s.List {
		at := func(format string, args ...any) error {
			return &engine.PosError{File: path, Line: sv.Line, Col: sv.Col, Message: fmt.Sprintf("%s.%s: ", sv.Kind, sv.Name) + fmt.Sprintf(format, args...)}
		}
		rb, ok := registered[serviceKinds[sv.Kind]]
		if !ok {
			return nil, at("%s is not available in this build of talon; remove the table", serviceKinds[sv.Kind])
		}
		timeout := sv.TimeoutSecs
		if timeout == 0 {
			timeout = c.cfg.Probes.ServiceTimeoutSecs
		}
		kw := []starlark.Tuple{
			{starlark.String("on_failure"), starlark.String(serviceOnFailure(sv))},
			{starlark.String("timeout"), starlark.MakeInt(timeout)},
		}
		if sv.After > 0 {
			kw = append(kw, starlark.Tuple{starlark.String("after"), starlark.MakeInt(sv.After)})
		}
		n := len(c.probes)
		_, err := starlark.Call(thread, starlark.NewBuiltin(rb.Name, rb.Fn), starlark.Tuple{starlark.String(sv.ProbeName()), starlark.String(sv.Target)}, kw)
		if err != nil {
			var ee *starlark.EvalError
			if errors.As(err, &ee) {
				return nil, at("%s", ee.Msg)
			}
			return nil, at("%v", err)
		}
		for _, p := range c.probes[n:] {
			p.Pos = fmt.Sprintf("%s:%d:%d", path, sv.Line, sv.Col)
		}
		declared = append(declared, serviceValue(sv))
	}
	return starlark.NewList(declared), nil
}

// serviceValue is a service as services() returns it, so that a policy can
// act on the services it declared (restart a launchd job by its label).
func serviceValue(sv config.Service) starlark.Value {
	label, url, command := "", "", ""
	port := 0
	switch sv.Kind {
	case "launchd":
		label = sv.Target
	case "http":
		url = sv.Target
		if u, err := neturl.Parse(sv.Target); err == nil {
			port, _ = strconv.Atoi(u.Port())
			if port == 0 {
				port = map[string]int{"http": 80, "https": 443}[u.Scheme]
			}
		}
	case "script":
		command = sv.Target
	}
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"kind": starlark.String(sv.Kind), "name": starlark.String(sv.Name), "probe": starlark.String(sv.ProbeName()),
		"label": starlark.String(label), "url": starlark.String(url), "command": starlark.String(command),
		"port": starlark.MakeInt(port), "critical": starlark.Bool(sv.Critical), "on_failure": starlark.String(serviceOnFailure(sv)),
	})
}

// serviceOnFailure is what a failing service leads to: its on_failure, else
// "page" for a critical service and "show" for any other. A non-critical
// service is watched, never acted on: the predecessor's rule for its
// services (an idle endpoint answering 503 must not run heals and agents).
func serviceOnFailure(sv config.Service) string {
	switch {
	case sv.OnFailure != "":
		return sv.OnFailure
	case sv.Critical:
		return engine.OnFailurePage
	}
	return engine.OnFailureShow
}
