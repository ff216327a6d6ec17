package probe

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/engine"
)

func init() {
	Register(Builtin{Name: "probe.docker", Fn: dockerProbe, Doc: `def docker(name, container, *, host=None, **common):
Asks the docker CLI for a container's state
(docker inspect --type=container --format={{.State.Status}} CONTAINER);
passes when it is "running". The result's detail carries the state.
name: unique probe name
container: container name or ID, e.g. "joelclaw-controlplane-1"
host: Docker daemon to ask (DOCKER_HOST): "unix:///path", "tcp://host:port",
  "ssh://user@host" (no other scheme), or a socket path such as "~/.colima/default/docker.sock";
  default: the docker CLI's own choice (DOCKER_HOST from the config's environment, or its context)`})
}

// dockerName matches container names and IDs as the Docker daemon accepts them.
var dockerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func dockerProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	var (
		c         Common
		name      string
		container string
		host      string
	)
	if err := c.Unpack(b, args, kwargs, "name", &name, "container", &container, "host?", &host); err != nil {
		return nil, err
	}
	if !dockerName.MatchString(container) {
		return nil, fmt.Errorf("%s: %s: container %q is not a container name or ID", b.Name(), name, container)
	}
	if host != "" && !dockerHostOK(host) {
		return nil, fmt.Errorf("%s: %s: host %q: want a unix://, tcp:// or ssh:// URL (as in DOCKER_HOST) or a socket path", b.Name(), name, host)
	}
	p, err := c.Spec(thread, b, name, "docker", dockerCheck(container, host), container, host)
	if err != nil {
		return nil, err
	}
	p.Programs = []string{"docker"}
	return Declare(thread, b, p)
}

// dockerSchemes are the DOCKER_HOST schemes the docker CLI speaks on the
// hosts Talon runs on (npipe:// is Windows-only).
var dockerSchemes = []string{"unix://", "tcp://", "ssh://"}

// dockerHostOK accepts a DOCKER_HOST URL with one of dockerSchemes and
// something after it, or a socket path (absolute or ~/).
func dockerHostOK(host string) bool {
	if strings.HasPrefix(host, "/") || strings.HasPrefix(host, "~/") {
		return true
	}
	for _, s := range dockerSchemes {
		if rest, ok := strings.CutPrefix(host, s); ok {
			return rest != ""
		}
	}
	return false
}

// dockerHost turns a socket path into a DOCKER_HOST URL.
func dockerHost(host string, env []string) string {
	if strings.Contains(host, "://") {
		return host
	}
	return "unix://" + userPath(host, env)
}

func dockerCheck(container, host string) engine.Check {
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		cmd := env.Command("docker", "inspect", "--type=container", "--format={{.State.Status}}", container)
		if host != "" {
			// Clip: the runner shares env.Env among concurrent probes; append
			// must copy, never write into its spare capacity.
			cmd.Env = append(slices.Clip(cmd.Env), "DOCKER_HOST="+dockerHost(host, env.Env))
		}
		r := env.Effects.Exec(ctx, cmd)
		if !r.OK() {
			return engine.ExecOutcome(r, env.Probe.EffectiveTimeout())
		}
		status := strings.ToLower(strings.Trim(strings.TrimSpace(r.Stdout), `'"`))
		o := engine.Outcome{Output: status, Detail: map[string]string{"status": status}}
		switch status {
		case "running":
			o.Passed = true
		case "":
			o.Output = fmt.Sprintf("container %s: docker printed no state", container)
		default:
			o.Output = fmt.Sprintf("container %s is %s", container, status)
		}
		return o
	}
}
