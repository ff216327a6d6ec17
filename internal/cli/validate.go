package cli

import (
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/talon-dev/talon/engine"
)

// validateReport is the output of `talon validate`.
type validateReport struct {
	OK                bool           `json:"ok"`
	ConfigPath        string         `json:"config_path"`
	ConfigFound       bool           `json:"config_found"`
	ServicesPath      string         `json:"services_path"`
	PolicyDir         string         `json:"policy_dir"`
	PolicyHash        string         `json:"policy_hash,omitempty"`
	Files             []string       `json:"files,omitempty"`
	CheckIntervalSecs int            `json:"check_interval_secs"`
	ProbeCount        int            `json:"probe_count"`
	ProbesByKind      map[string]int `json:"probes_by_kind"`
	HTTPProbeCount    int            `json:"http_probe_count"`
	LaunchdProbeCount int            `json:"launchd_probe_count"`
	ScriptProbeCount  int            `json:"script_probe_count"`
	Rungs             []string       `json:"rungs"`
	// OnFailure lists the probes by what their failure leads to: "page"
	// (act, and page when critical), "act" (never page), "show" (never act).
	OnFailure map[string][]string `json:"on_failure"`
	// NoProbes is probe.none's reason, for a policy without probes.
	NoProbes string             `json:"no_probes,omitempty"`
	Errors   []*engine.PosError `json:"errors"`
	Warnings []string           `json:"warnings"`
}

func (a *app) validate(args []string) error {
	var asJSON, strict bool
	if err := a.flagsOnly("validate", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "JSON output")
		fs.BoolVar(&strict, "strict", false, "warnings are errors")
	}); err != nil {
		return err
	}
	rep := validateReport{ProbesByKind: map[string]int{}, Rungs: []string{}, Errors: []*engine.PosError{}, Warnings: []string{},
		OnFailure: map[string][]string{engine.OnFailurePage: {}, engine.OnFailureAct: {}, engine.OnFailureShow: {}}}
	e, err := a.loadEnv()
	if err != nil {
		rep.ConfigPath = a.g.config
		rep.Errors = append(rep.Errors, asPosError(err))
	} else {
		rep.ConfigPath, rep.ConfigFound = e.cfg.File, e.cfg.Found
		rep.ServicesPath, rep.PolicyDir = e.cfg.ServicesFile, e.policyName()
		rep.CheckIntervalSecs = e.cfg.CheckIntervalSecs
		res := e.load()
		rep.PolicyHash, rep.Files = res.Hash, res.Files
		rep.Errors = append(rep.Errors, res.Errors...)
		rep.Warnings = append(rep.Warnings, res.Warnings...)
		if pol := res.Policy; pol != nil {
			rep.ProbeCount, rep.NoProbes = len(pol.Probes), pol.NoProbes
			for _, p := range pol.Probes {
				rep.ProbesByKind[p.Kind]++
				rep.OnFailure[p.OnFailure()] = append(rep.OnFailure[p.OnFailure()], p.Name)
				switch {
				case strings.HasPrefix(p.Name, "http:") || p.Kind == "http":
					rep.HTTPProbeCount++
				case strings.HasPrefix(p.Name, "launchd:") || p.Kind == "launchd":
					rep.LaunchdProbeCount++
				case strings.HasPrefix(p.Name, "script:") || p.Kind == "script":
					rep.ScriptProbeCount++
				}
			}
			for _, r := range pol.Ladder {
				rep.Rungs = append(rep.Rungs, r.Name)
			}
		}
	}
	sort.Strings(rep.Warnings)
	rep.OK = len(rep.Errors) == 0 && (!strict || len(rep.Warnings) == 0)
	code := 0
	if !rep.OK {
		code = 1
	}
	if a.wantJSON(asJSON) {
		return withCode(a.json(rep), code)
	}
	return withCode(a.validateText(rep), code)
}

func (a *app) validateText(r validateReport) error {
	var b strings.Builder
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error: %s\n", e.Error())
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	if len(r.Errors) == 0 {
		kinds := make([]string, 0, len(r.ProbesByKind))
		for k, n := range r.ProbesByKind {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(kinds)
		fmt.Fprintf(&b, "policy %s (%s)\n", r.PolicyDir, shortHash(r.PolicyHash))
		if r.NoProbes != "" {
			fmt.Fprintf(&b, "  no probes, on purpose: %s\n", r.NoProbes)
		} else {
			fmt.Fprintf(&b, "  %d probes: %s\n", r.ProbeCount, strings.Join(kinds, ", "))
		}
		for _, m := range []struct{ key, what string }{
			{engine.OnFailurePage, "act and page"}, {engine.OnFailureAct, "act, never page"}, {engine.OnFailureShow, "only show"}} {
			if names := r.OnFailure[m.key]; len(names) > 0 {
				fmt.Fprintf(&b, "  on failure, %s (%s): %s\n", m.what, m.key, strings.Join(names, " "))
			}
		}
		fmt.Fprintf(&b, "  ladder: %s\n", strings.Join(r.Rungs, " → "))
		fmt.Fprintf(&b, "  config %s%s, every %ds\n", r.ConfigPath, map[bool]string{false: " (not found: defaults)", true: ""}[r.ConfigFound], r.CheckIntervalSecs)
	}
	if r.OK {
		b.WriteString("ok\n")
	}
	_, err := fmt.Fprint(a.stdout, b.String())
	return err
}

// asPosError turns a config error into the report's error shape.
func asPosError(err error) *engine.PosError {
	if pe, ok := err.(*engine.PosError); ok {
		return pe
	}
	return &engine.PosError{Message: err.Error()}
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
