package engine

import (
	"maps"
	"strings"
	"time"
)

// journal appends a record, stamped with the time and the policy in force
// when it carries neither; callers hold d.mu.
func (d *Daemon) journal(r Record) {
	if d.opts.Journal == nil {
		return
	}
	if r.Time.IsZero() {
		r.Time = d.now()
	}
	if r.Policy == "" {
		r.Policy = d.policy().Hash
	}
	if err := d.opts.Journal.Append(r); err != nil {
		d.writeFailed("journal", &d.journalFault, err)
		d.journalFault.room = false
		return
	}
	if f := d.journalFault; f != nil && (f.room || d.opts.StateFile == "") {
		d.writeOK("journal", &d.journalFault)
	}
}

// syncJournal flushes the journal to disk; callers hold d.mu.
func (d *Daemon) syncJournal() {
	if d.opts.Journal == nil {
		return
	}
	if err := d.opts.Journal.Sync(); err != nil {
		d.writeFailed("journal", &d.journalFault, err)
		d.journalFault.room = false
	}
}

// SaveEvery bounds how often the state is saved for changes the core did
// not ask to save at once (probe results that move only counts): such
// changes are saved together, at most once per SaveEvery. A decision is
// always saved before anything else happens.
const SaveEvery = time.Second

// writeFault is a write failure in progress: a full or read-only state
// directory. The daemon keeps probing and escalating meanwhile, says so on
// /health, logs it once and retries.
type writeFault struct {
	err   string
	since time.Time
	count int // failed writes (journal: records lost; state: saves)
	// room says a state save succeeded since the journal's last failed
	// append. On a full disk a short record may still fit in the journal's
	// last page while the next does not: a journal append alone does not
	// show that space came back; a new state file does.
	room bool
}

// writeFailed records a failed write of what ("state" or "journal"): the
// first failure of a run of them is logged, the others only counted.
func (d *Daemon) writeFailed(what string, f **writeFault, err error) {
	if *f == nil {
		*f = &writeFault{since: d.now()}
		msg := "state file not saved; talon goes on probing and escalating and saves again once it can"
		if what == "journal" {
			msg = "journal not written; talon goes on probing and escalating, and records are lost until it can write again"
		}
		d.log.Error(msg, "err", err)
	}
	(*f).err = err.Error()
	(*f).count++
}

// writeOK ends a run of failed writes of what, saying so in the log.
func (d *Daemon) writeOK(what string, f **writeFault) {
	if *f == nil {
		return
	}
	kv := []any{"since", (*f).since, "failures", (*f).count}
	if what == "journal" {
		kv = []any{"since", (*f).since, "records_lost", (*f).count}
	}
	*f = nil
	d.log.Info(what+" written again", kv...)
}

// publishIfFault publishes when a write failure began or ended since the
// last snapshot; callers hold d.mu.
func (d *Daemon) publishIfFault() {
	if p := d.snapshot.Load(); p != nil && (p.WriteError != nil) != (d.stateFault != nil || d.journalFault != nil) {
		d.publish()
	}
}

// record journals and logs one decision of the core.
func (d *Daemon) record(e Event) {
	e2 := e
	d.journal(Record{Type: "event", Event: &e2, Time: e.At})
	switch e.Type {
	case "transition":
		d.log.Info("state transition", "from", e.From, "to", e.To, "incident", e.Incident)
	case "incident_open":
		d.log.Warn("incident opened", "incident", e.Incident, "probes", e.Reason)
	case "incident_resolved":
		d.log.Info("incident resolved", "incident", e.Incident, "reason", e.Reason)
	case "probe_down":
		d.log.Warn("probe down", "probe", e.Probe, "output", e.Reason)
	case "probe_up":
		d.log.Info("probe up", "probe", e.Probe)
	case "rung_start":
		d.rungRuns[e.Rung]++
		d.log.Info("rung started", "rung", e.Rung, "incident", e.Incident)
	case "rung_done":
		d.log.Info("rung finished", "rung", e.Rung, "outcome", e.Reason)
	case "rung_skip":
		if strings.HasPrefix(e.Reason, whenFailed) {
			// A predicate that errors disables its rung: never quietly.
			d.log.Error("rung skipped: its when= predicate failed", "rung", e.Rung, "err", e.Reason)
		} else {
			d.log.Info("rung skipped", "rung", e.Rung, "reason", e.Reason)
		}
	case "page_failed":
		d.log.Error("page not delivered", "rung", e.Rung, "reason", e.Reason)
	case "ladder_empty":
		d.log.Error("nothing can act for the incident: the policy has no rung", "incident", e.Incident)
	}
}

// summary logs one line per launched cycle.
func (d *Daemon) summary(rs []Result) {
	var failing []string
	var slowest int64
	for _, r := range rs {
		if !r.Passed {
			failing = append(failing, r.Name)
		}
		slowest = max(slowest, r.DurationMS)
	}
	st := d.state()
	kv := []any{"state", st.Phase, "probes", len(rs), "failed", len(failing), "dur", time.Duration(slowest) * time.Millisecond}
	if len(failing) > 0 {
		kv = append(kv, "failing", strings.Join(failing, ","))
	}
	if inc := st.Incident; inc != nil {
		kv = append(kv, "incident", inc.ID)
	}
	d.log.Info("cycle", kv...)
}

// persist saves the core's state now; callers hold d.mu. A failed save is
// tried again SaveEvery later (the disk may have room again by then).
func (d *Daemon) persist() {
	if d.opts.StateFile == "" {
		return
	}
	now := d.now()
	st := d.state()
	st.UpdatedAt = now
	d.lastSave, d.saveDue = now, time.Time{}
	if err := SaveState(d.opts.StateFile, st); err != nil {
		d.saveDue = now.Add(SaveEvery)
		d.writeFailed("state", &d.stateFault, err)
		return
	}
	d.writeOK("state", &d.stateFault)
	if d.journalFault != nil {
		d.journalFault.room = true
	}
}

// persistSoon saves the state within SaveEvery: at once when the last save
// is that old, else when it will be, together with whatever else changes
// meanwhile (the loop's timer is armed for it). Callers hold d.mu.
func (d *Daemon) persistSoon() {
	if d.opts.StateFile == "" || !d.saveDue.IsZero() {
		return
	}
	due := d.lastSave.Add(SaveEvery)
	if !d.now().Before(due) {
		d.persist()
		return
	}
	d.saveDue = due
}

// persistPending saves now if a save is pending; callers hold d.mu.
func (d *Daemon) persistPending() {
	if !d.saveDue.IsZero() {
		d.persist()
	}
}

// noteReported notes the probes that reported (and, after a start or a
// reload, forgets the ones no longer in the policy); once every probe has
// reported since the start, the daemon is no longer "starting".
func (d *Daemon) noteReported(rs []Result) {
	if d.unreported == nil {
		return // reported already
	}
	for _, r := range rs {
		delete(d.unreported, r.Name)
	}
	if len(rs) == 0 {
		for name := range d.unreported {
			if d.policy().Probe(name) == nil {
				delete(d.unreported, name)
			}
		}
	}
	if len(d.unreported) == 0 {
		d.unreported = nil
		close(d.reported)
	}
}

// PublishEvery bounds how often probe results that decide nothing are
// published: they wait at most this long for /health, together with the
// others. Anything decided is published at once.
const PublishEvery = 100 * time.Millisecond

// publishSoon publishes within PublishEvery: at once when the last
// snapshot is that old, else when it will be (the loop's timer is armed
// for it). Callers hold d.mu.
func (d *Daemon) publishSoon() {
	if !d.pubDue.IsZero() {
		return
	}
	due := d.lastPub.Add(PublishEvery)
	if !d.now().Before(due) {
		d.publish()
		return
	}
	d.pubDue = due
}

// publish rebuilds the snapshot; callers hold d.mu. Every decision is
// saved before it is published (feed): /health never shows a decision a
// crash could still lose. Probe counts may be published up to SaveEvery
// before they are saved.
func (d *Daemon) publish() {
	pol, st := d.policy(), d.state()
	// The loop is stuck when no result came for three times the longest
	// gap between two runs of any probe (its interval plus its timeout).
	longest := time.Duration(0)
	for _, p := range pol.Probes {
		longest = max(longest, d.interval(p)+p.EffectiveTimeout())
	}
	d.longestTimeout.Store(longest)
	s := Snapshot{State: st.Phase, ConsecutiveFailures: st.ConsecutiveFailures,
		ProbeCount: len(pol.Probes), WorkerRestarts: st.WorkerRestarts,
		UpdatedAtUnix: d.now().Unix(), PolicyHash: pol.Hash, LastCycle: d.lastCycle,
		DryRun: d.opts.DryRun, Reloads: d.reloads, FailedProbes: []string{},
		RungRuns: maps.Clone(d.rungRuns), Pages: int(d.pages.Load())}
	for _, p := range pol.Probes {
		if ps := st.Probes[p.Name]; ps != nil && ps.Last != nil {
			s.Probes = append(s.Probes, *ps.Last)
			if !ps.Last.Passed {
				s.FailedProbes = append(s.FailedProbes, p.Name)
			}
		}
	}
	s.FailedProbeCount = len(s.FailedProbes)
	if d.policyErr != "" {
		pe := d.policyErr
		s.PolicyError = &pe
	}
	if inc := st.Incident; inc != nil {
		s.Incident = &IncidentInfo{ID: inc.ID, Started: inc.Started, Probes: inc.Probes, Critical: inc.Critical, Position: inc.Position, Paged: inc.Paged}
		if inc.Ack != nil {
			a := *inc.Ack
			s.Incident.Acked = &a
		}
		if inc.Settle != nil {
			st := *inc.Settle
			s.Incident.Settling = &st
		}
	}
	s.Paused, s.Flapping = []PauseInfo{}, []string{}
	for _, p := range st.Pauses {
		s.Paused = append(s.Paused, PauseInfo{Pause: p, Text: p.Describe()})
	}
	for _, p := range pol.Probes {
		if ps := st.Probes[p.Name]; ps != nil && ps.Flapping {
			s.Flapping = append(s.Flapping, p.Name)
		}
	}
	if r := d.core.Running(); r != "" {
		s.Rung = &r
	}
	// A daemon running a fallback policy, or no probe at all without
	// having been told to (probe.none), is never healthy, whatever the
	// probes it runs say: no consumer reading state alone may take it for
	// a watchdog that watches what it should.
	s.Fallback = d.fallback
	if s.State == Healthy && (d.fallback != nil || len(pol.Probes) == 0 && pol.NoProbes == "") {
		s.State = Degraded
	}
	if d.stateFault != nil || d.journalFault != nil {
		we := &WriteError{}
		for _, f := range []struct {
			f   *writeFault
			err *string
		}{{d.stateFault, &we.State}, {d.journalFault, &we.Journal}} {
			if f.f != nil {
				*f.err = f.f.err
				if we.Since.IsZero() || f.f.since.Before(we.Since) {
					we.Since = f.f.since
				}
			}
		}
		s.WriteError = we
	}
	// A pause of everything watches nothing that acts: not healthy either.
	s.OK = s.State == Healthy && s.FailedProbeCount == 0 && s.PolicyError == nil && s.Fallback == nil && st.pausedAll() == nil &&
		s.WriteError == nil
	if d.unreported != nil {
		// Not every probe has reported since the start: what the state
		// says comes from before it. Nothing looks healthy yet; an open
		// incident keeps its phase (it is not healthy-looking either).
		s.OK = false
		if st.Incident == nil {
			s.State = Starting
		}
	}
	d.seq++
	s.Seq = d.seq
	d.snapshot.Store(&s)
	d.lastPub, d.pubDue = d.now(), time.Time{}
}

// Snapshot returns the last published health. A daemon whose probe results
// have stopped coming (a wedged loop) says so: it is not ok and Stale is set.
func (d *Daemon) Snapshot() Snapshot {
	p := d.snapshot.Load()
	if p == nil {
		// Not loaded yet: nothing is watched, so nothing looks healthy.
		return Snapshot{State: Starting, FailedProbes: []string{}}
	}
	s := *p
	if d.opts.Worker != nil {
		s.Worker = d.opts.Worker() // live, not as of the last cycle
	}
	if limit := d.staleAfter(); limit > 0 && !s.LastCycle.IsZero() && d.now().Sub(s.LastCycle) > limit {
		s.OK, s.Stale = false, true
	}
	return s
}

// staleAfter is how long without any probe result means the loop is stuck;
// zero (a policy without probes) means never.
func (d *Daemon) staleAfter() time.Duration {
	v, _ := d.longestTimeout.Load().(time.Duration)
	return 3 * v
}
