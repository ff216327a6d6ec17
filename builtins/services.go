package builtins

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.starlark.net/starlark"

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
		if explicit {
			c.warn("%s: services file %s does not exist; no service probes declared", pos, path)
		}
	case err != nil:
		return nil, &engine.PosError{File: path, Message: config.FileErrorMessage(err)}
	default:
		if s, err = config.ParseServices(path, data); err != nil {
			return nil, err
		}
	}
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
	}
	return starlark.None, nil
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
