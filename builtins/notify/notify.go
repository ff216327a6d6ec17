// Package notify holds Talon's paging channels: notify.telegram,
// notify.webhook, notify.command, notify.imessage and notify.alertmanager.
// Each builtin returns a value that is both a Starlark value and an
// engine.Pager; the loader puts them in the `notify` module by their
// qualified names (see probe.Register). notify.log lives with the loader.
//
// Every channel honours its own timeout inside Send, so SendAll can run them
// concurrently, and none ever writes a secret into an error, a description,
// a dry-run intent or a child's arguments.
package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// value gives the channel types the parts of starlark.Value they share;
// each type adds its own String. name, when set (name=), is the channel's
// identity in place of its host or program.
type value struct{ kind, name string }

// channel is the channel's identity: prefix and its name=, or prefix and
// what it is told apart by by default.
func (v value) channel(prefix, def string) string {
	if v.name != "" {
		return prefix + v.name
	}
	return prefix + def
}

var channelNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// checkName validates a channel's name=.
func checkName(name string) error {
	if name != "" && !channelNameRE.MatchString(name) {
		return fmt.Errorf("name: %q is not a channel name (letters, digits, '.', '_' and '-', at most 64)", name)
	}
	return nil
}

func (v value) Type() string          { return v.kind }
func (v value) Freeze()               {}
func (v value) Truth() starlark.Bool  { return true }
func (v value) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: %s", v.kind) }

// run is the common Action.Run of every channel.
func run(ctx context.Context, p engine.Pager, env *engine.ActionEnv) engine.ActionResult {
	return engine.RunPager(ctx, p, env)
}

// SendAll delivers msg through every pager at once, each under its own
// timeout, through engine.Deliver (the one delivery primitive). delivered
// lists the channels that succeeded, in the order of pagers; errs maps the
// channels that failed to their errors (nil when none failed). A page
// counts as delivered when delivered is not empty.
func SendAll(ctx context.Context, env *engine.ActionEnv, pagers []engine.Pager, msg engine.Message) (delivered []string, errs map[string]error) {
	for _, d := range engine.Deliver(ctx, env, pagers, msg, nil) {
		if d.OK {
			delivered = append(delivered, d.Channel)
			continue
		}
		if errs == nil {
			errs = map[string]error{}
		}
		key := d.Channel
		for n := 2; errs[key] != nil; n++ {
			key = fmt.Sprintf("%s#%d", d.Channel, n)
		}
		errs[key] = errors.New(d.Error)
	}
	return delivered, errs
}

// messageTime is the time a page is stamped with: the incident's clock when
// there is one (so replays are deterministic), else now.
func messageTime(env *engine.ActionEnv) time.Time {
	if env.Incident != nil && !env.Incident.Now.IsZero() {
		return env.Incident.Now.UTC()
	}
	return time.Now().UTC()
}

// checkURL validates a channel URL where it is built.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL, which may carry a credential.
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("URL scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("URL has no host")
	}
	if u.Fragment != "" {
		return nil, errors.New("URL must not have a #fragment")
	}
	return u, nil
}

// checkTimeout refuses a timeout of 0 (which Starlark's "0s" or 0 give)
// rather than silently taking the default; def names that default.
func checkTimeout(timeout time.Duration, def string) error {
	if timeout <= 0 {
		return fmt.Errorf("timeout must be more than 0 (leave it out for the default %s)", def)
	}
	return nil
}

// maxResponse caps what is read of a channel's HTTP answer.
const maxResponse = 64 << 10

// post sends body as JSON to target through eff under timeout. desc is what
// a dry run records instead of the URL. Errors never contain the URL.
func post(ctx context.Context, eff effect.Effects, timeout time.Duration, desc, target string, header http.Header, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = effect.WithDescription(ctx, desc)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(string(body)))
	if err != nil {
		return 0, nil, errors.New("cannot build the request")
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "talon")
	resp, err := eff.Do(req)
	if err != nil {
		return 0, nil, httpError(ctx, err, timeout)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return resp.StatusCode, data, fmt.Errorf("HTTP %d, reading the answer: %w", resp.StatusCode, httpError(ctx, err, timeout))
	}
	return resp.StatusCode, data, nil
}

// httpError strips the URL that net/http puts in its errors and names a
// timeout plainly.
func httpError(ctx context.Context, err error, timeout time.Duration) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("timed out after %s", timeout)
	case errors.Is(ctx.Err(), context.Canceled):
		return errors.New("canceled")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// snippet is a short single-line excerpt of an answer body for errors.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return s
}

// progName is the base name of a program, for channel names.
func progName(p string) string { return filepath.Base(p) }

// checkPositional enforces keyword-only parameters after the first n.
func checkPositional(b *starlark.Builtin, args starlark.Tuple, n int) error {
	if len(args) > n {
		return fmt.Errorf("%s: got %d positional arguments, want at most %d (the others are keyword arguments)", b.Name(), len(args), n)
	}
	return nil
}
