package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/engine"
)

func init() {
	Register(Builtin{Name: "probe.tcp", Fn: tcpProbe, Doc: `def tcp(name, address, **common):
Opens a TCP connection and closes it; a completed connection passes.
name: unique probe name
address: "host:port", e.g. "127.0.0.1:8108"`})
}

func tcpProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		c    Common
		name string
		addr string
	)
	if err := c.Unpack(b, args, kwargs, "name", &name, "address", &addr); err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("%s: %s: address %q: want \"host:port\"", b.Name(), name, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("%s: %s: address %q: port must be a number between 1 and 65535", b.Name(), name, addr)
	}
	p, err := c.Spec(thread, b, name, "tcp", TCPCheck(addr), addr)
	if err != nil {
		return nil, err
	}
	return Declare(thread, b, p)
}

// TCPCheck connects to addr; a completed connection passes.
func TCPCheck(addr string) engine.Check {
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		conn, err := env.Effects.Dial(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() != nil || isTimeout(err) {
				return engine.Outcome{Output: fmt.Sprintf("timeout after %s connecting to %s", env.Probe.EffectiveTimeout(), addr), TimedOut: true}
			}
			return engine.Failf("%v", err)
		}
		conn.Close()
		return engine.Outcome{Passed: true, Output: "connected to " + addr}
	}
}

// isTimeout reports whether err is a network timeout (a deadline that fired
// just before the context noticed its own).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
