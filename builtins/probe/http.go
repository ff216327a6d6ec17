package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

func init() {
	Register(Builtin{Name: "probe.http", Fn: httpProbe, Doc: `def http(name, url, *, method="GET", expect_status=None, headers=None, **common):
Sends one HTTP request; redirects are not followed. By default any 2xx status passes.
expect, expect_regex and expect_exact match the response body (the first 64 KiB).
name: unique probe name
url: http:// or https:// URL
method: request method
expect_status: status code, or list of codes, that pass (e.g. 200 or [200, 204])
headers: dict of request headers`})
}

// maxHTTPBody is how much of a response body is read and matched.
const maxHTTPBody = 64 << 10

func httpProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		c       Common
		name    string
		rawURL  string
		method                 = "GET"
		status  starlark.Value = starlark.None
		headers star.StringMap
	)
	if err := c.Unpack(b, args, kwargs, "name", &name, "url", &rawURL, "method?", &method,
		"expect_status?", &status, "headers?", &headers); err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: %s: url %q: want an absolute http:// or https:// URL", b.Name(), name, rawURL)
	}
	method = strings.ToUpper(method)
	if method == "" || strings.ContainsAny(method, " \t\r\n") {
		return nil, fmt.Errorf("%s: %s: bad method %q", b.Name(), name, method)
	}
	codes, err := statusCodes(status)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: expect_status: %v", b.Name(), name, err)
	}
	for k, v := range headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") || strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("%s: %s: bad header %q", b.Name(), name, k)
		}
	}
	key := []string{method, rawURL, fmt.Sprint(codes)}
	key = append(key, envKey(headers)...)
	p, err := c.Spec(thread, b, name, "http", HTTPCheck(method, rawURL, codes, headers), key...)
	if err != nil {
		return nil, err
	}
	return Declare(thread, b, p)
}

func statusCodes(v starlark.Value) ([]int, error) {
	var items []starlark.Value
	switch x := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Int:
		items = []starlark.Value{x}
	case *starlark.List:
		for i := 0; i < x.Len(); i++ {
			items = append(items, x.Index(i))
		}
	case starlark.Tuple:
		items = x
	default:
		return nil, fmt.Errorf("want a status code or a list of them, got %s", v.Type())
	}
	if len(items) == 0 {
		return nil, errors.New("want at least one status code")
	}
	var codes []int
	for _, it := range items {
		n, err := starlark.AsInt32(it)
		if err != nil || n < 100 || n > 599 {
			return nil, fmt.Errorf("want status codes between 100 and 599, got %s", it)
		}
		codes = append(codes, n)
	}
	return codes, nil
}

// HTTPCheck sends method to rawURL with headers; a status in codes passes
// (any 2xx when codes is empty). The outcome's Subject is the body.
func HTTPCheck(method, rawURL string, codes []int, headers map[string]string) engine.Check {
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		timeout := func() engine.Outcome {
			return engine.Outcome{Output: fmt.Sprintf("timeout after %s", env.Probe.EffectiveTimeout()), TimedOut: true}
		}
		req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
		if err != nil {
			return engine.Failf("%v", err)
		}
		for _, k := range star.Keys(headers) {
			req.Header.Set(k, headers[k])
		}
		resp, err := env.Effects.Do(req)
		if err != nil {
			if ctx.Err() != nil || isTimeout(err) {
				return timeout()
			}
			return engine.Failf("%s", unwrapURLError(err))
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
		if err != nil && (ctx.Err() != nil || isTimeout(err)) {
			return timeout()
		}
		text := strings.ToValidUTF8(string(body), "\uFFFD")
		passed := false
		if len(codes) == 0 {
			passed = resp.StatusCode >= 200 && resp.StatusCode < 300
		}
		for _, c := range codes {
			passed = passed || resp.StatusCode == c
		}
		out := fmt.Sprintf("HTTP %d", resp.StatusCode)
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
			out += " (redirect to " + loc + " not followed)"
		}
		if s := snippet(text, 200); s != "" {
			out += ": " + s
		}
		return engine.Outcome{
			Passed:  passed,
			Output:  out,
			Subject: text, SubjectSet: true,
			Detail: map[string]string{"status": strconv.Itoa(resp.StatusCode)},
		}
	}
}

// snippet is the first n bytes of s on one line.
func snippet(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// unwrapURLError drops the `Get "url":` prefix of *url.Error; the probe's
// output is shown next to its name and URL already.
func unwrapURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
