package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// drill sends a page marked DRILL through the real channels of one rung (by
// default every rung that pages) and runs nothing else.
func (a *app) drill(args []string) error {
	rest, err := a.flags("drill", args, nil)
	if err != nil {
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
	var pagers []engine.Pager
	var rungs []string
	for _, r := range res.Policy.Ladder {
		if len(rest) > 0 && r.Name != rest[0] {
			continue
		}
		for _, act := range r.Do {
			if p, ok := act.(engine.Pager); ok {
				pagers = append(pagers, p)
				rungs = append(rungs, r.Name)
			}
		}
	}
	if len(pagers) == 0 {
		if len(rest) > 0 {
			return fail(1, "drill: no rung %q with a notify channel in %s", rest[0], e.policyName())
		}
		return fail(1, "drill: no rung of %s sends pages", e.policyName())
	}
	host, _ := os.Hostname()
	msg := engine.Message{Kind: "drill", Incident: "drill-" + time.Now().UTC().Format("20060102T150405Z"),
		Text: fmt.Sprintf("🧪 TALON DRILL on %s: a test page from rung %s. No action needed.", host, strings.Join(unique(rungs), ", "))}
	env := &engine.ActionEnv{Effects: effect.NewLive(), Env: e.cfg.ChildEnv(os.Environ()), Rung: "drill", Message: msg,
		Log: func(string, ...any) {}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The same delivery primitive as the daemon's pages: every channel at
	// once, each one's fate reported.
	delivered, failed := 0, 0
	for i, d := range engine.Deliver(ctx, env, pagers, msg, nil) {
		verdict := "delivered"
		if !d.OK {
			verdict = "FAILED: " + oneLine(d.Error)
			failed++
		} else {
			delivered++
		}
		if _, werr := fmt.Fprintf(a.stdout, "%s\t%s\t%s\n", rungs[i], d.Channel, verdict); werr != nil {
			return werr
		}
	}
	// A drill exists to find a broken channel: any failure fails it, even
	// when another channel (notify.log, say) took the page.
	switch {
	case delivered == 0:
		return fail(1, "drill: no channel accepted the page")
	case failed > 0:
		return fail(1, "drill: %d of %d channels failed", failed, len(pagers))
	}
	return nil
}

func unique(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
