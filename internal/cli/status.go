package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/health"
	"github.com/talon-dev/talon/engine/journal"
)

// statusReport is `talon status`: the daemon's snapshot when it answers,
// else the persisted state; and the probes, like `monit summary`.
type statusReport struct {
	Source string `json:"source"` // "daemon" or "state_file"
	// Addr is the health endpoint asked: the one the state directory's
	// control.token names, else the configured bind.
	Addr string `json:"addr,omitempty"`
	// Verified says the daemon's answer came from a server that proved it
	// holds the state directory's control.token. False with source
	// "daemon" when this user cannot read the token (another user's
	// daemon): the answer is whatever listens on Addr.
	Verified bool `json:"verified"`
	// DaemonError is why the state file is shown instead of the daemon's
	// answer, when something did answer: a server that could not prove it
	// is this state directory's daemon, say.
	DaemonError string `json:"daemon_error,omitempty"`
	// ConfigError is config.toml's error (file:line:col: message) when it
	// did not load: status then read it leniently.
	ConfigError string           `json:"config_error,omitempty"`
	Health      *engine.Snapshot `json:"health,omitempty"`
	State       *engine.State    `json:"state,omitempty"`
	// LastResume is the last talon resume of the past day (from the
	// journal): who lifted which pauses, when.
	LastResume *resumeNote `json:"last_resume,omitempty"`
	Probes     []probeRow  `json:"probes"`
	// unverified is why Verified is false with source "daemon", for the
	// text.
	unverified string
	// refused: DaemonError is a server that failed the identity check.
	refused bool
}

// probeRow is one probe in `talon status`.
type probeRow struct {
	Name     string     `json:"name"`
	State    string     `json:"state"` // ok, warn, failing, down
	Critical bool       `json:"critical"`
	Fails    int        `json:"consecutive_failures"`
	Since    *time.Time `json:"since,omitempty"` // the last probe_down or probe_up in the journal
	Checked  time.Time  `json:"last_check"`
	Output   string     `json:"output"`
}

// resumeNote is one talon resume: when, who asked, and the pauses it
// lifted, in words.
type resumeNote struct {
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
	Lifted []string  `json:"lifted"`
}

// statusResumeWindow is how long status shows the last resume: as long as
// the longest pause.
const statusResumeWindow = engine.MaxPause

// statusSinceWindow is how far back the journal is read for when each
// probe last went down or up (with a seek, so the cost is that window).
const statusSinceWindow = 7 * 24 * time.Hour

func (a *app) status(args []string) error {
	var asJSON, watch bool
	interval := 2 * time.Second
	if err := a.flagsOnly("status", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "JSON output")
		fs.BoolVar(&watch, "watch", false, "redraw every --interval until interrupted")
		fs.DurationVar(&interval, "interval", interval, "how often --watch redraws")
	}); err != nil {
		return err
	}
	if interval < 200*time.Millisecond {
		return fail(2, "status --interval %s: want at least 200ms", interval)
	}
	// A broken config.toml is what the daemon may be running around (on
	// its last good policy): status reads what it needs of it leniently
	// (the state directory, [health]), as pause and ack do, and says so.
	e, cfgErr := a.daemonEnv()
	var cfgLine string
	if cfgErr != nil {
		if _, err := os.Stat(e.cfgPath); e.cfgRequired && errors.Is(err, fs.ErrNotExist) {
			return cfgErr // --config names no file: a typo
		}
		cfgLine = configErrorLine(cfgErr, e.stateDir)
	}
	since := &probeTransitions{path: journal.Path(e.stateDir), at: map[string]time.Time{}}
	defer since.close()
	report := func() (*statusReport, error) {
		rep, err := a.statusReport(e, since)
		if rep != nil && cfgErr != nil {
			rep.ConfigError = oneLine(cfgErr.Error())
		}
		return rep, err
	}
	if !watch {
		rep, err := report()
		if err != nil {
			if cfgLine != "" {
				fmt.Fprintf(a.stderr, "talon: %s\n", cfgLine)
			}
			return err
		}
		if rep.refused {
			fmt.Fprintf(a.stderr, "talon: %s\n", rep.DaemonError)
		}
		if cfgLine != "" && a.wantJSON(asJSON) {
			fmt.Fprintf(a.stderr, "talon: %s\n", cfgLine)
		}
		return a.printStatus(rep, cfgLine, asJSON, false)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	if cfgLine != "" && a.wantJSON(asJSON) {
		fmt.Fprintf(a.stderr, "talon: %s\n", cfgLine)
	}
	for {
		rep, err := report()
		if err != nil {
			// The daemon may be restarting: say so and keep watching.
			rep = nil
			if a.wantJSON(asJSON) {
				if err := a.json(map[string]string{"error": oneLine(err.Error())}); err != nil {
					return err
				}
			} else if _, err := fmt.Fprintf(a.stdout, "%s%s%s\n", clearScreen(a.tty), textLine(cfgLine), oneLine(err.Error())); err != nil {
				return err
			}
		}
		if rep != nil {
			if err := a.printStatus(rep, cfgLine, asJSON, true); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func clearScreen(tty bool) string {
	if tty {
		return "\x1b[H\x1b[2J"
	}
	return ""
}

// configErrorLine is the one line status gives a config.toml that did
// not load: the error with its file:line:col, and what to do.
func configErrorLine(err error, stateDir string) string {
	return fmt.Sprintf("config error: %s; status read the file leniently (state directory %s): fix it and check with talon validate", oneLine(err.Error()), stateDir)
}

// textLine is line and a newline, or nothing.
func textLine(line string) string {
	if line == "" {
		return ""
	}
	return line + "\n"
}

// askDaemon fills rep from the running daemon's /health. When this user
// can read the state directory's control.token, only a server that proves
// it holds that token is believed (at the address the token names): a
// program that took the port cannot pass for the daemon, and the state file
// is shown instead. When the token cannot be read (another user's daemon,
// whose state directory is closed to this one; no token there) the
// configured address is asked without that proof, and the report says it
// is unverified, and why.
func askDaemon(e *env, rep *statusReport) {
	ctx, cancel := context.WithTimeout(context.Background(), health.GetTimeout)
	defer cancel()
	cf, cfErr := health.ReadControlFile(e.stateDir)
	if cfErr == nil {
		rep.Addr = cf.Addr
		snap, err := health.GetVerified(ctx, cf.Addr, cf.Token)
		switch {
		case err == nil:
			rep.Source, rep.Health, rep.Verified = "daemon", &snap, true
		case errors.Is(err, health.ErrNotOurDaemon):
			rep.DaemonError, rep.refused = oneLine(err.Error()), true
		case errors.Is(err, health.ErrNotRunning):
			// Nothing listens: the daemon is not running (a token left
			// by kill -9) or is restarting.
		default:
			rep.DaemonError = oneLine(err.Error())
		}
		return
	}
	if !e.cfg.Health.Enabled {
		return
	}
	rep.Addr = e.cfg.Health.Bind
	rep.unverified = "this user cannot read the state directory's " + health.TokenFile
	if errors.Is(cfErr, fs.ErrNotExist) {
		// This user sees the state directory and there is no token in
		// it: whatever answers is not its daemon's endpoint (which writes
		// the token once it listens), or a daemon of another state
		// directory: asked all the same, and said so.
		rep.unverified = "no " + health.TokenFile + " in the state directory"
		if held, known := lockHeld(e.stateDir); known && !held {
			rep.unverified = "no daemon holds the state directory " + e.stateDir
		}
	}
	snap, err := health.Get(ctx, rep.Addr)
	switch {
	case err == nil:
		rep.Source, rep.Health = "daemon", &snap
	case !errors.Is(err, health.ErrNotRunning):
		rep.DaemonError = oneLine(err.Error())
	}
}

func (a *app) statusReport(e *env, since *probeTransitions) (*statusReport, error) {
	rep := &statusReport{Probes: []probeRow{}}
	askDaemon(e, rep)
	st, err := engine.LoadState(engine.StatePath(e.stateDir))
	switch {
	case rep.Health == nil && errors.Is(err, engine.ErrNoState):
		why := ""
		if rep.DaemonError != "" {
			why = " (" + rep.DaemonError + ")"
		}
		if rep.Addr == "" {
			return nil, fail(1, "no daemon to ask (no control.token in %s, and [health] enabled = false) and there is no state file in %s yet", e.stateDir, e.stateDir)
		}
		return nil, fail(1, "no daemon answers on %s and there is no state file in %s yet%s", rep.Addr, e.stateDir, why)
	case rep.Health == nil && err != nil:
		return nil, err
	case rep.Health == nil:
		rep.Source, rep.State = "state_file", st
	}
	if rep.Health != nil && err != nil {
		st = nil // another user's state file, say: the daemon's answer is enough
	}
	since.update()
	if r := since.resume; r != nil && time.Since(r.At) < statusResumeWindow {
		rep.LastResume = r
	}
	// The probes: the daemon's last results (else the state file's), with
	// the debounce counts of the state file when there is one.
	var results []engine.Result
	if rep.Health != nil {
		results = rep.Health.Probes
	} else {
		for _, ps := range st.Probes {
			if ps.Last != nil {
				results = append(results, *ps.Last)
			}
		}
	}
	for _, r := range results {
		row := probeRow{Name: r.Name, Critical: r.Critical, Checked: r.At, Output: r.Output, State: "ok"}
		switch {
		case !r.Passed:
			row.State = "failing"
		case r.Warning:
			row.State = "warn"
		}
		if st != nil {
			if ps := st.Probes[r.Name]; ps != nil {
				row.Fails = ps.Fails
				if ps.Down {
					row.State = "down"
				}
			}
		}
		if t, ok := since.at[r.Name]; ok {
			t := t
			row.Since = &t
		}
		rep.Probes = append(rep.Probes, row)
	}
	sort.Slice(rep.Probes, func(i, j int) bool { return rep.Probes[i].Name < rep.Probes[j].Name })
	return rep, nil
}

func (a *app) printStatus(rep *statusReport, cfgLine string, asJSON, watch bool) error {
	if a.wantJSON(asJSON) {
		if watch { // one object per line, a stream
			enc := json.NewEncoder(a.stdout)
			enc.SetEscapeHTML(false)
			return enc.Encode(rep)
		}
		return a.json(rep)
	}
	now := time.Now()
	var b strings.Builder
	if watch {
		b.WriteString(clearScreen(a.tty))
	}
	b.WriteString(textLine(cfgLine))
	if s := rep.Health; s != nil {
		unverified := ""
		if !rep.Verified {
			unverified = ", UNVERIFIED: " + rep.unverified
		}
		fmt.Fprintf(&b, "state %s (daemon on %s%s; updated %s)\n", s.State, rep.Addr, unverified, time.Unix(s.UpdatedAtUnix, 0).Format(time.RFC3339))
		fmt.Fprintf(&b, "policy %s, %d probes, %d failing %s\n", shortHash(s.PolicyHash), s.ProbeCount, s.FailedProbeCount, strings.Join(s.FailedProbes, " "))
		switch {
		case s.Fallback != nil:
			fmt.Fprintf(&b, "NOT THE POLICY ASKED FOR: %s\n", s.Fallback.Summary())
			for _, line := range strings.Split(s.Fallback.Error, "\n") {
				fmt.Fprintf(&b, "  %s\n", line)
			}
			if s.PolicyError != nil && *s.PolicyError != s.Fallback.Error {
				fmt.Fprintf(&b, "last reload: %s\n", *s.PolicyError)
			}
		case s.PolicyError != nil:
			fmt.Fprintf(&b, "policy error (last good policy still running): %s\n", *s.PolicyError)
		}
		if s.Incident != nil {
			fmt.Fprintf(&b, "incident %s since %s: %s\n", s.Incident.ID, s.Incident.Started.Format(time.RFC3339), strings.Join(s.Incident.Probes, " "))
			printAck(&b, s.Incident.Acked)
		}
		if s.Rung != nil {
			fmt.Fprintf(&b, "running rung %s\n", *s.Rung)
		}
		for _, p := range s.Paused {
			fmt.Fprintf(&b, "paused: %s\n", p.Text)
		}
		printResume(&b, rep.LastResume, now)
		if len(s.Flapping) > 0 {
			fmt.Fprintf(&b, "flapping: %s\n", strings.Join(s.Flapping, " "))
		}
	} else {
		s := rep.State
		why := "; no daemon answered"
		switch {
		case rep.refused:
			why = ": the server on " + rep.Addr + " is not this state directory's daemon: it could not prove it holds " + health.TokenFile
		case rep.DaemonError != "":
			why = ": the daemon did not answer: " + firstLine(rep.DaemonError, 160)
		}
		fmt.Fprintf(&b, "state %s since %s (from the state file%s)\n", s.Phase, s.PhaseSince.Format(time.RFC3339), why)
		if inc := s.Incident; inc != nil {
			fmt.Fprintf(&b, "incident %s since %s: %s\n", inc.ID, inc.Started.Format(time.RFC3339), strings.Join(inc.Probes, " "))
			printAck(&b, inc.Ack)
		}
		for _, p := range s.Pauses {
			fmt.Fprintf(&b, "paused: %s\n", p.Describe())
		}
		printResume(&b, rep.LastResume, now)
		var flapping []string
		for name, ps := range s.Probes {
			if ps.Flapping {
				flapping = append(flapping, name)
			}
		}
		if len(flapping) > 0 {
			sort.Strings(flapping)
			fmt.Fprintf(&b, "flapping: %s\n", strings.Join(flapping, " "))
		}
	}
	if len(rep.Probes) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROBE\tSTATE\tSINCE\tCHECKED\tLAST OUTPUT")
		for _, p := range rep.Probes {
			state := p.State
			if p.State == "failing" || p.State == "down" {
				state = fmt.Sprintf("%s ×%d", p.State, p.Fails)
			}
			if p.Critical && p.State != "ok" {
				state += " critical"
			}
			since := "-"
			if p.Since != nil {
				since = p.Since.Local().Format("Jan 02 15:04:05") + " (" + ago(now, *p.Since) + ")"
			}
			checked := "-"
			if !p.Checked.IsZero() {
				checked = ago(now, p.Checked)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, state, since, checked, firstLine(p.Output, 80))
		}
		tw.Flush()
	}
	_, err := fmt.Fprint(a.stdout, b.String())
	return err
}

func printAck(b *strings.Builder, a *engine.Ack) {
	if a == nil {
		return
	}
	fmt.Fprintf(b, "acknowledged at %s", a.At.Format(time.RFC3339))
	if a.By != "" {
		fmt.Fprintf(b, " by %s", a.By)
	}
	if a.Reason != "" {
		fmt.Fprintf(b, ": %s", a.Reason)
	}
	b.WriteString("\n")
}

// printResume is the last resume's line: "resumed 5 min ago by joel (uid
// 501): everything until …".
func printResume(b *strings.Builder, r *resumeNote, now time.Time) {
	if r == nil || len(r.Lifted) == 0 {
		return
	}
	fmt.Fprintf(b, "resumed %s", ago(now, r.At))
	if r.By != "" {
		fmt.Fprintf(b, " by %s", r.By)
	}
	fmt.Fprintf(b, ": %s\n", strings.Join(r.Lifted, "; "))
}

// probeTransitions finds in the journal when each probe last went down or
// up: the "since" of `talon status`. Under --watch it follows the journal
// instead of reading it again.
type probeTransitions struct {
	path   string
	at     map[string]time.Time
	cursor *journal.Cursor
	done   bool
	// resume is the last talon resume: its record, then its events.
	resume *resumeNote
}

func (p *probeTransitions) note(r engine.Record) error {
	if r.Type == "resume" && r.Control != nil {
		p.resume = &resumeNote{At: r.Time, By: r.Control.By, Lifted: []string{}}
	}
	e := r.Event
	switch {
	case e == nil:
	case e.Type == "probe_down" || e.Type == "probe_up":
		p.at[e.Probe] = e.At
	case e.Type == "resume" && p.resume != nil && e.At.Equal(p.resume.At):
		p.resume.Lifted = append(p.resume.Lifted, e.Reason)
	}
	return nil
}

func (p *probeTransitions) update() {
	if p.cursor != nil {
		p.cursor.Next(p.note)
		return
	}
	if p.done {
		return
	}
	res, err := journal.ScanWindow(p.path, journal.ScanOptions{Since: time.Now().Add(-statusSinceWindow),
		Want: func(typ string, line []byte) bool {
			return typ == "resume" || typ == "event" && (strings.Contains(string(line), `"type":"probe_down"`) ||
				strings.Contains(string(line), `"type":"probe_up"`) || strings.Contains(string(line), `"type":"resume"`))
		}}, p.note)
	if err != nil {
		return // no journal yet: no "since"
	}
	p.done = true
	p.cursor = res.Cursor
}

func (p *probeTransitions) close() { p.cursor.Close() }

func (a *app) reload(args []string) error {
	if err := a.flagsOnly("reload", args, nil); err != nil {
		return err
	}
	e, cfgErr := a.daemonEnv() // the reload reports a config error itself
	if cfgErr != nil && !e.cfg.Found {
		return cfgErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The daemon's control file names its address and token; without one
	// (no endpoint: [health] enabled = false, or it could not bind) a
	// signal is the way to it.
	var hash string
	cf, err := health.ReadControlFile(e.stateDir)
	noEndpoint := err != nil
	if err == nil {
		hash, err = health.PostReload(ctx, cf.Addr, cf.Token)
	}
	var refused *health.ReloadError
	if errors.As(err, &refused) {
		return fail(1, "reload refused; the last good policy keeps running: %s", oneLine(refused.Message))
	}
	// Only when nothing answers on /health is a signal the way to the daemon.
	if err != nil && (noEndpoint || errors.Is(err, health.ErrNotRunning)) {
		if sent, serr := signalDaemon(e.stateDir); sent {
			_, werr := fmt.Fprintf(a.stdout, "sent SIGHUP to the daemon (its /health did not answer: %v)\n", oneLine(err.Error()))
			return werr
		} else if serr != nil {
			return fail(1, "reload: %v; and %v", oneLine(err.Error()), serr)
		}
		return fail(1, "reload: %s", oneLine(err.Error()))
	}
	if err != nil {
		return fail(1, "reload: %s", oneLine(err.Error()))
	}
	_, err = fmt.Fprintf(a.stdout, "reloaded: policy %s\n", shortHash(hash))
	return err
}
