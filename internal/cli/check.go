package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func (a *app) check(args []string) error {
	var asJSON bool
	var only stringsFlag
	if err := a.flagsOnly("check", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "JSON output")
		fs.Var(&only, "probe", "run only this probe (repeatable)")
	}); err != nil {
		return err
	}
	e, err := a.loadEnv()
	if err != nil {
		return err
	}
	res := e.load()
	if res.Err() != nil {
		return fail(1, "%s", oneLine(res.ErrorText()))
	}
	probes := res.Policy.Probes
	if len(only) > 0 {
		probes = nil
		for _, name := range only {
			p := res.Policy.Probe(name)
			if p == nil {
				return fail(2, "check: no probe named %q in %s", name, e.policyName())
			}
			probes = append(probes, p)
		}
	}
	// SIGINT or SIGTERM during a check kills the running probes' groups.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &engine.Runner{Effects: effect.NewLive(), Env: e.cfg.ChildEnv(os.Environ()), Parallel: e.cfg.Parallel}
	results := r.Run(ctx, probes)
	code := 0
	for _, r := range results {
		if !r.Passed {
			code = 1
		}
	}
	var werr error
	if a.wantJSON(asJSON) {
		if results == nil {
			results = []engine.Result{}
		}
		werr = a.json(results)
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROBE\tRESULT\tTIME\tOUTPUT")
		for _, r := range results {
			verdict := "ok"
			switch {
			case !r.Passed && r.Critical:
				verdict = "FAIL (critical)"
			case !r.Passed:
				verdict = "FAIL"
			case r.Warning:
				verdict = "warn"
			}
			fmt.Fprintf(tw, "%s\t%s\t%dms\t%s\n", r.Name, verdict, r.DurationMS, firstLine(r.Output, 100))
		}
		werr = tw.Flush()
	}
	return withCode(werr, code)
}

// firstLine is the first line of s, cut to at most n bytes at a character
// boundary (a probe's output may be any UTF-8).
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	return s
}
