package cli

import (
	"fmt"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/talon-dev/talon/engine/config"
)

// print is the old `talon --dry-run`: the resolved configuration and policy.
func (a *app) print(args []string) error {
	if err := a.flagsOnly("print", args, nil); err != nil {
		return err
	}
	e, err := a.loadEnv()
	if err != nil {
		return err
	}
	res := e.load()
	type probeView struct {
		Name         string   `json:"name"`
		Kind         string   `json:"kind"`
		Critical     bool     `json:"critical"`
		Witness      bool     `json:"witness,omitempty"`
		After        int      `json:"after,omitempty"`
		RecoverAfter int      `json:"recover_after,omitempty"`
		Timeout      string   `json:"timeout"`
		Every        string   `json:"every,omitempty"`
		DependsOn    []string `json:"depends_on,omitempty"`
		Expect       string   `json:"expect,omitempty"`
		Pos          string   `json:"pos"`
	}
	type rungView struct {
		Name     string   `json:"name"`
		Do       []string `json:"do"`
		When     bool     `json:"when,omitempty"`
		After    string   `json:"after,omitempty"`
		Timeout  string   `json:"timeout,omitempty"`
		Cooldown string   `json:"cooldown,omitempty"`
		Repeat   string   `json:"repeat,omitempty"`
		State    string   `json:"state,omitempty"`
		Verify   bool     `json:"verify"`
	}
	out := struct {
		Config     any         `json:"config"`
		PolicyDir  string      `json:"policy_dir"`
		PolicyHash string      `json:"policy_hash"`
		Errors     any         `json:"errors,omitempty"`
		Thresholds any         `json:"thresholds,omitempty"`
		Probes     []probeView `json:"probes"`
		Ladder     []rungView  `json:"ladder"`
	}{PolicyDir: e.policyName(), PolicyHash: res.Hash, Probes: []probeView{}, Ladder: []rungView{}}
	if out.Config, err = tomlKeys(e.cfg); err != nil {
		return err
	}
	if res.Err() != nil {
		out.Errors = res.Errors
	}
	dur := func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return d.String()
	}
	if pol := res.Policy; pol != nil {
		out.Thresholds = map[string]any{"failed_after": pol.Thresholds.FailedAfter,
			"critical_after": pol.Thresholds.CriticalAfter.String(), "recover_after": pol.Thresholds.RecoverAfter}
		for _, p := range pol.Probes {
			v := probeView{Name: p.Name, Kind: p.Kind, Critical: p.Critical, Witness: p.Witness, After: p.After,
				RecoverAfter: p.RecoverAfter, Timeout: p.EffectiveTimeout().String(), Every: dur(p.Every), DependsOn: p.DependsOn, Pos: p.Pos}
			if p.Expect != nil {
				v.Expect = p.Expect.String()
			}
			out.Probes = append(out.Probes, v)
		}
		for _, r := range pol.Ladder {
			v := rungView{Name: r.Name, When: r.When != nil, After: dur(r.After), Timeout: dur(r.Timeout),
				Cooldown: dur(r.Cooldown), Repeat: dur(r.Repeat), State: r.State, Verify: r.Verify}
			for _, act := range r.Do {
				v.Do = append(v.Do, act.Describe())
			}
			out.Ladder = append(out.Ladder, v)
		}
	}
	if err := a.json(out); err != nil {
		return err
	}
	if res.Err() != nil {
		return &exitError{code: 1}
	}
	return nil
}

// tomlKeys is the resolved configuration under its TOML keys (the ones
// config.toml and the policy's config.* use), not the Go field names.
func tomlKeys(c *config.Config) (map[string]any, error) {
	b, err := toml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("print config: %w", err)
	}
	m := map[string]any{}
	if err := toml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("print config: %w", err)
	}
	return m, nil
}
