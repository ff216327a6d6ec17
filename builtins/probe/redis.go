package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/secret"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

func init() {
	Register(Builtin{Name: "probe.redis", Fn: redisProbe, Doc: `def redis(name, addr, *, password=None, username=None, info=None, **common):
Speaks the Redis protocol (RESP) directly, no redis-cli: AUTH when a password
is given, then PING, which must answer PONG; with info, one INFO whose fields
must equal the given values. Every read and write is bounded by the deadline.
name: unique probe name
addr: "host:port", or the path of a unix socket
password: AUTH password: a string or a secret, e.g. secret("redis", env = "REDIS_PASSWORD"),
  resolved each time the probe runs and never shown
username: ACL user for AUTH (Redis 6+); default user when omitted
info: dict of INFO field to expected value, e.g. {"aof_last_bgrewrite_status": "ok"}`})
}

type redisTarget struct {
	network, addr string
	username      string
	password      *secret.Secret // nil: no AUTH
	info          map[string]string
}

func redisProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	var (
		c        Common
		name     string
		t        redisTarget
		password = secret.Arg{Name: "redis_password"}
		info     star.StringMap
	)
	if err := c.Unpack(b, args, kwargs, "name", &name, "addr", &t.addr, "password?", &password, "username?", &t.username, "info?", &info); err != nil {
		return nil, err
	}
	t.password = password.Secret
	t.network = "tcp"
	if strings.HasPrefix(t.addr, "/") {
		t.network = "unix"
	} else if err := checkHostPort(t.addr); err != nil {
		return nil, fmt.Errorf("%s: %s: addr %q: %v", b.Name(), name, t.addr, err)
	}
	if t.username != "" && t.password == nil {
		return nil, fmt.Errorf("%s: %s: username needs a password", b.Name(), name)
	}
	for _, k := range star.Keys(info) {
		if k == "" || strings.ContainsAny(k, ":\r\n") {
			return nil, fmt.Errorf("%s: %s: info field %q is not an INFO field name", b.Name(), name, k)
		}
	}
	t.info = info
	key := []string{t.network, t.addr, t.username, redisPasswordKey(t.password)}
	for _, k := range star.Keys(info) {
		key = append(key, k+"="+info[k])
	}
	p, err := c.Spec(thread, b, name, "redis", redisCheck(t), key...)
	if err != nil {
		return nil, err
	}
	if t.password != nil {
		p.Programs = t.password.Programs() // a lease command, for talon validate
	}
	return Declare(thread, b, p)
}

// redisPasswordKey is the password's part of the probe's digest: a plain
// string as before (so existing state survives), a secret by its source.
func redisPasswordKey(s *secret.Secret) string {
	if s == nil {
		return ""
	}
	if v, ok := s.Plain(); ok {
		return v
	}
	return "secret " + s.Origin()
}

// checkHostPort wants "host:port" with a numeric port.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New(`want "host:port"`)
	}
	if host == "" {
		return errors.New("missing host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

func redisCheck(t redisTarget) engine.Check {
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		timeout := env.Probe.EffectiveTimeout()
		var password string // resolved at run time; never in an output
		hide := func(s string) string {
			if len(password) >= 4 {
				s = strings.ReplaceAll(s, password, t.password.String())
			}
			return s
		}
		if t.password != nil {
			var err error
			password, err = t.password.Resolve(ctx, env.Effects, env.Env)
			if err != nil {
				if ctx.Err() != nil {
					return engine.Outcome{TimedOut: true, Output: fmt.Sprintf("timeout after %s: resolving the password of %s: %v", timeout, t.addr, err)}
				}
				return engine.Failf("redis %s: password: %v", t.addr, err)
			}
		}
		step := "connect"
		fail := func(err error) engine.Outcome {
			if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
				return engine.Outcome{TimedOut: true, Output: fmt.Sprintf("timeout after %s: no answer from %s to %s", timeout, t.addr, step)}
			}
			var re redisError
			if errors.As(err, &re) {
				return engine.Failf("redis %s: %s: %s", t.addr, step, hide(string(re)))
			}
			return engine.Failf("redis %s: %s: %s", t.addr, step, hide(err.Error()))
		}
		conn, err := env.Effects.Dial(ctx, t.network, t.addr)
		if err != nil {
			return fail(err)
		}
		defer conn.Close()
		if dl, ok := ctx.Deadline(); ok {
			conn.SetDeadline(dl)
		}
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
		defer stop()
		rc := &respConn{w: conn, r: bufio.NewReaderSize(conn, 64<<10)}

		if t.password != nil {
			step = "AUTH"
			args := []string{"AUTH", password}
			if t.username != "" {
				args = []string{"AUTH", t.username, password}
			}
			v, err := rc.do(args...)
			if err != nil {
				return fail(err)
			}
			if v != "OK" {
				return fail(fmt.Errorf("unexpected reply %q", v))
			}
		}
		step = "PING"
		v, err := rc.do("PING")
		if err != nil {
			return fail(err)
		}
		if v != "PONG" {
			return fail(fmt.Errorf("want PONG, got %q", v))
		}
		o := engine.Outcome{Passed: true, Output: "PONG"}
		if len(t.info) == 0 {
			return o
		}
		step = "INFO"
		text, err := rc.do("INFO", "all")
		if err != nil {
			return fail(err)
		}
		fields := parseRedisInfo(text)
		o.Detail = map[string]string{}
		for _, k := range []string{"redis_version", "role"} {
			if v, ok := fields[k]; ok {
				o.Detail[k] = v
			}
		}
		var got, bad []string
		for _, k := range star.Keys(t.info) {
			v, ok := fields[k]
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("%s is missing, want %q", k, t.info[k]))
				continue
			case v != t.info[k]:
				bad = append(bad, fmt.Sprintf("%s = %q, want %q", k, v, t.info[k]))
			}
			o.Detail["info."+k] = v
			got = append(got, k+"="+v)
		}
		if len(bad) > 0 {
			return engine.Outcome{Output: "INFO " + strings.Join(bad, "; "), Detail: o.Detail}
		}
		o.Output = "PONG; " + strings.Join(got, " ")
		return o
	}
}

// parseRedisInfo reads the "field:value" lines of an INFO reply.
func parseRedisInfo(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out
}

// redisError is an error reply ("-ERR ...", "-NOAUTH ...") from the server.
type redisError string

func (e redisError) Error() string { return string(e) }

// respConn is the few parts of RESP2 a probe needs: commands as arrays of
// bulk strings; simple, error, integer and bulk replies.
type respConn struct {
	w io.Writer
	r *bufio.Reader
}

// maxRESPBulk bounds a bulk reply (INFO is a few kilobytes).
const maxRESPBulk = 4 << 20

func (c *respConn) do(args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c.w, b.String()); err != nil {
		return "", err
	}
	line, err := c.line()
	if err != nil {
		return "", err
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", redisError(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n > maxRESPBulk {
			return "", fmt.Errorf("bad bulk length %q", line)
		}
		if n < 0 {
			return "", errors.New("nil reply")
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q (is this a Redis server?)", redisClip(line, 60))
}

func (c *respConn) line() (string, error) {
	raw, err := c.r.ReadSlice('\n')
	switch {
	case err == io.EOF:
		return "", errors.New("connection closed by the server")
	case errors.Is(err, bufio.ErrBufferFull):
		return "", fmt.Errorf("reply line longer than %d bytes (is this a Redis server?)", c.r.Size())
	case err != nil:
		return "", err
	}
	line := strings.TrimRight(string(raw), "\r\n")
	if line == "" {
		return "", errors.New("empty reply line")
	}
	return line, nil
}

func redisClip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
