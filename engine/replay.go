package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/talon-dev/talon/internal/text"
)

// Replay is the second driver of the decision core: it reads a journal's
// records one at a time and feeds the facts they record to the same Core the
// daemon runs. It keeps one fact (and the decisions recorded after it) in
// hand, never the whole journal, so its memory does not grow with the
// journal's length.
//
// It runs in one of two modes, named in its result, and may go from the
// first to the second part-way through a journal (never back, except at a
// process start):
//
// Faithful. From a "start" record of journal format 2 written by this very
// policy (same hash) on, replay adopts the state the process started with
// and feeds every recorded fact as it is: probe launches (so "a parent has
// not reported yet" holds as it held), results in the batches the daemon
// observed them in, rung ends when they really ended with their recorded
// outcome and verification batch, the daemon's wake-ups. The decisions must
// then be exactly the ones the daemon journaled after each fact; any
// difference is a divergence, reported with its place in the journal.
//
// What-if. Another policy, or a journal that cannot be replayed faithfully
// (format 1, an excerpt that does not begin at a process start, a recorded
// reload to a policy replay does not have): the same core, fed the recorded
// launches, results, starts and stops, with these assumptions where the
// record cannot say what would have happened:
//   - the core is woken when it asks to be, as the daemon would;
//   - a rung that the record also started at the same point takes its
//     recorded duration, outcome and verification (for the probes both
//     verify), and its page reaches the channels that the record says
//     accepted it (a channel only this policy has counts as accepted);
//   - any other rung is assumed to succeed; a rung that only pages takes no
//     time and reaches every channel; a rung that runs something lasts as
//     long as the same rung's last recorded run (0 s if none) and is
//     verified by the first result of each of its verify probes recorded
//     after that, or ends unverified when none comes within its timeout;
//   - a verification recorded for a rung of the other policy is not an
//     observation of this one (it is not fed), and the recorded wake-ups
//     are the other policy's (they are not fed either).
//
// Records before ReplayOptions.Since are replayed but not reported.

// ReplayOptions tune a replay.
type ReplayOptions struct {
	// WhenBudget bounds one evaluation of a `when=` predicate (default 2s).
	WhenBudget time.Duration
	// AsRecorded switches policy where the journal records a reload (or a
	// start under another policy) to one of Versions, as the daemon did.
	AsRecorded bool
	// Versions are policies replay may switch to, by hash.
	Versions map[string]*Policy
	// Since and Until bound what is reported (zero: unbounded). Records
	// after Until are the caller's to stop reading.
	Since, Until time.Time
}

// The replay modes.
const (
	ModeFaithful = "faithful"
	ModeWhatIf   = "what-if"
)

// ReplayResult is what a policy decided over a recorded journal. It holds no
// map, so its JSON form is deterministic.
type ReplayResult struct {
	Policy string `json:"policy"` // hash of the replayed policy (the first, with AsRecorded)
	// Mode is "faithful" when every fact was replayed faithfully, else
	// "what-if"; ModeReason says why, and the timeline marks each change.
	Mode       string    `json:"mode"`
	ModeReason string    `json:"mode_reason"`
	From       time.Time `json:"from"` // time of the first record
	To         time.Time `json:"to"`   // time of the last record
	Records    int       `json:"records"`
	Cycles     int       `json:"cycles"`
	// Divergences are, in faithful mode, the facts after which replay
	// decided otherwise than the daemon journaled.
	Divergences []ReplayDivergence `json:"divergences"`
	Timeline    []ReplayStep       `json:"timeline"`
	Incidents   []ReplayIncident   `json:"incidents"`
	Summary     ReplaySummary      `json:"summary"`
	Warnings    []string           `json:"warnings"`
}

// ReplayStep is one line of the replay's timeline.
//
// Kind is one of: transition (From → To), probe_down, probe_up,
// incident_open (Probes), incident_resolved, rung_skip (Rung, Reason), rung
// (a rung starts: Rung, Actions), rung_end (it ended: Rung, Secs, OK,
// Verify, Basis), page (a page reached Channels), page_failed, resolved (the
// "resolved" message to Channels), resent (a message sent again: a
// "resolved" retried, a page after a restart), journal (a note on the
// journal: a start, stop or reload), mode (replay's mode changed: Reason),
// and the core's other decisions by their event type: pause, resume,
// pause_expired, ack, ack_cleared, settle_start, settle_end, flap_start,
// flap_stop, unreachable, rung_renamed, ladder_empty.
type ReplayStep struct {
	At       time.Time       `json:"at"`
	Kind     string          `json:"kind"`
	From     Phase           `json:"from,omitempty"`
	To       Phase           `json:"to,omitempty"`
	Incident string          `json:"incident,omitempty"`
	Probe    string          `json:"probe,omitempty"`
	Probes   []string        `json:"probes,omitempty"`
	Rung     string          `json:"rung,omitempty"`
	Actions  []string        `json:"actions,omitempty"`
	Channels []string        `json:"channels,omitempty"`
	Verify   []ReplayVerdict `json:"verify,omitempty"`
	// Secs is how long a rung ran (rung_end).
	Secs *float64 `json:"secs,omitempty"`
	// OK is whether a rung's actions succeeded (rung_end).
	OK *bool `json:"ok,omitempty"`
	// Basis says where a rung's outcome came from: "recorded" or "assumed".
	Basis  string `json:"basis,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ReplayVerdict is one result of a rung's verification re-probe.
type ReplayVerdict struct {
	Probe  string `json:"probe"`
	Passed bool   `json:"passed"`
}

// ReplayDivergence is a fact after which faithful replay decided otherwise
// than the daemon had journaled.
type ReplayDivergence struct {
	At    time.Time `json:"at"`
	Fact  string    `json:"fact"`  // the fact's record type
	Where string    `json:"where"` // file:line of the fact's record, when known
	// Journaled and Replayed are the decisions, one per line, in the
	// journal's words.
	Journaled []string `json:"journaled"`
	Replayed  []string `json:"replayed"`
}

// ReplayIncident is one incident of the replay.
type ReplayIncident struct {
	ID       string     `json:"id"`
	Probes   []string   `json:"probes"` // every probe that escalated during it, sorted
	Opened   time.Time  `json:"opened"`
	Resolved *time.Time `json:"resolved"` // nil: still open at the end of the journal
	// DetectSecs is the time from the first failing result of its probes
	// (of the run of failures that opened it) to the incident's opening.
	DetectSecs float64 `json:"time_to_detect_secs"`
	// FirstPageSecs is the time from the opening to the first page; nil
	// when it paged no one.
	FirstPageSecs *float64 `json:"time_to_first_page_secs"`
	Peak          Phase    `json:"peak"` // the furthest phase it reached
	// Runs are the rungs it started, in order.
	Runs  []ReplayRun `json:"runs"`
	Pages int         `json:"pages"`
}

// ReplayRun is one rung started during an incident.
type ReplayRun struct {
	Rung string    `json:"rung"`
	At   time.Time `json:"at"`
	// Paged lists the channels its page reached, if it paged.
	Paged []string `json:"paged,omitempty"`
}

// ReplaySummary counts the decisions of a replay (within Since and Until).
type ReplaySummary struct {
	Incidents int `json:"incidents"`
	// Pages counts the pages rungs sent (one per rung run, whatever the
	// number of channels); Resolved the "resolved" messages.
	Pages    int               `json:"pages"`
	Resolved int               `json:"resolved_messages"`
	RungRuns []ReplayRungCount `json:"rung_runs"` // every rung of the ladder, in ladder order
	// MedianDetectSecs is the median time to detect; nil without incidents.
	MedianDetectSecs *float64   `json:"median_time_to_detect_secs"`
	FirstPage        *time.Time `json:"first_page"`
	FirstSOS         *time.Time `json:"first_sos"` // first transition to sos
	FinalPhase       Phase      `json:"final_phase"`
}

// ReplayRungCount is how many times a rung ran.
type ReplayRungCount struct {
	Rung string `json:"rung"`
	Runs int    `json:"runs"`
}

// Replayer replays one journal through one policy; feed it records with
// Feed, then call Result.
type Replayer struct {
	opts ReplayOptions
	pol  *Policy // the policy in force
	core *Core
	out  ReplayResult

	faithful bool   // the current segment is faithful
	why      string // why the current segment is what-if
	first    string // why the first what-if segment was
	whatIf   bool   // some segment was what-if
	started  bool   // a fact was fed
	group    *group // the fact in hand and the decisions recorded after it
	wake     time.Time
	// sims are the rungs this replay started and that have not ended (at
	// most one that acts and one that pages).
	sims []*simRung
	// recStart is when the record started each rung (for durations);
	// lastDur is the last recorded duration of each rung.
	recStart map[string]time.Time
	lastDur  map[string]time.Duration
	rep      reporter
	seen     map[string]bool
	foreign  []string
	names    map[string]bool // probes of every policy replayed
	// v2 says the journal records every fact (format 2): rung ends among them.
	v2 bool
}

// group is a fact record and the records that follow it up to the next fact.
type group struct {
	rec    Record
	where  string
	events []Event
}

// simRung is a rung this replay started and has not yet ended.
type simRung struct {
	run *RungRun
	// matched: the record started the same rung at the same point; its
	// recorded end is the end.
	matched bool
	// For a simulated end: the rung ends at minEnd once each verify probe
	// has a result recorded at or after minEnd, or at deadline.
	minEnd, deadline time.Time
	waiting          map[string]bool
	verify           []Result
}

// NewReplayer starts a replay of pol.
func NewReplayer(pol *Policy, opts ReplayOptions) *Replayer {
	r := &Replayer{opts: opts, pol: pol, core: NewCore(CoreOptions{WhenBudget: opts.WhenBudget}),
		recStart: map[string]time.Time{}, lastDur: map[string]time.Duration{}, seen: map[string]bool{}, names: map[string]bool{}}
	r.core.pol = pol
	r.core.st.Reconcile(pol)
	r.note(pol)
	r.out = ReplayResult{Policy: pol.Hash, Timeline: []ReplayStep{}, Incidents: []ReplayIncident{},
		Warnings: []string{}, Divergences: []ReplayDivergence{}}
	r.rep = reporter{core: r.core, since: opts.Since, until: opts.Until, failSince: map[string]time.Time{}, open: -1}
	r.why = "the journal does not begin at a process start"
	return r
}

func (r *Replayer) note(pol *Policy) {
	for _, p := range pol.Probes {
		r.names[p.Name] = true
	}
}

// Replay replays records through pol; see Replayer.
func Replay(pol *Policy, records []Record, opts ReplayOptions) ReplayResult {
	r := NewReplayer(pol, opts)
	for _, rec := range records {
		r.Feed(rec, "")
	}
	return r.Result()
}

// Feed takes the next record of the journal; where names it ("file:line")
// for reports.
func (r *Replayer) Feed(rec Record, where string) {
	if r.out.Records == 0 {
		r.out.From = rec.Time
	}
	r.out.Records++
	if rec.Time.After(r.out.To) {
		r.out.To = rec.Time
	}
	switch rec.Type {
	case "launch", "wake", "rung_end":
		r.v2 = true
	case "start":
		r.v2 = rec.V >= 2
	}
	if _, ok := RecordFact(rec); ok {
		r.flush()
		r.group = &group{rec: rec, where: where}
		return
	}
	if rec.Type == "event" && rec.Event != nil && r.group != nil {
		r.group.events = append(r.group.events, *rec.Event)
	}
	if rec.Type == "event" && rec.Event != nil && rec.Event.Type == "rung_start" {
		r.recStart[rec.Event.Rung] = rec.Event.At
	}
}

// flush replays the fact in hand, now that its recorded decisions are known.
func (r *Replayer) flush() {
	g := r.group
	if g == nil {
		return
	}
	r.group = nil
	rec := g.rec
	f, _ := RecordFact(rec)
	if f.Kind == FactRungEnd {
		if t, ok := r.recStart[f.End.Rung]; ok {
			r.lastDur[f.End.Rung] = rec.Time.Sub(t)
		}
	}
	if !r.started && !r.whatIf && f.Kind != FactStart && f.Kind != FactCheckpoint {
		r.toWhatIf(rec.Time, "the journal does not begin at a process start")
	}
	r.segment(rec, &f)
	if !r.faithful {
		r.catchUp(rec.Time)
	}
	var st Step
	switch {
	case f.Kind == "":
		return // a fact this mode does not feed
	case f.Kind == FactResults:
		r.out.Cycles++
		for _, x := range f.Results {
			if !r.seen[x.Name] {
				r.seen[x.Name] = true
				if !r.names[x.Name] {
					r.foreign = append(r.foreign, x.Name)
				}
			}
		}
		if !r.faithful {
			for _, s := range r.sims {
				if !s.matched {
					f.Results = r.takeVerify(s, f.Results, rec.Time)
				}
			}
		}
		r.rep.track(f.Results)
		for _, s := range append([]*simRung(nil), r.sims...) {
			if !s.matched && len(s.waiting) == 0 && !s.minEnd.After(rec.Time) {
				r.endSim(s, rec.Time)
			}
		}
		if len(f.Results) == 0 {
			return
		}
	}
	st = r.step(f)
	if r.faithful {
		r.compare(g, f, st)
	}
	r.follow(st, g)
}

// segment decides how the fact of rec is replayed: it switches policy and
// mode where the journal says, and clears f.Kind for a fact not to feed.
func (r *Replayer) segment(rec Record, f *Fact) {
	switch f.Kind {
	case FactStart:
		if r.opts.AsRecorded && rec.Policy != r.pol.Hash {
			if p := r.opts.Versions[rec.Policy]; p != nil {
				r.switchTo(p, rec.Time, "as recorded, the process started under policy "+hashPrefix(rec.Policy))
			}
		}
		r.sims = nil
		r.rep.step(ReplayStep{At: rec.Time, Kind: "journal", Reason: journalNote(rec)})
		switch {
		case rec.V < 2 || rec.State == nil:
			r.toWhatIf(rec.Time, "the journal is of format 1, which does not record every fact the core needs")
			f.State = nil
		case rec.V < FaithfulJournalVersion:
			r.toWhatIf(rec.Time, fmt.Sprintf("the journal is of format %d, written by an earlier Talon whose decision core followed other rules", rec.V))
			f.State = nil
		case rec.Policy != r.pol.Hash:
			r.toWhatIf(rec.Time, fmt.Sprintf("the journal was written by policy %s", hashPrefix(rec.Policy)))
			f.State = nil // keep replay's own state
		default:
			if !r.faithful {
				r.faithful = true
				r.rep.step(ReplayStep{At: rec.Time, Kind: "mode", Reason: "faithful from here: the process started under this policy"})
			}
			f.State = cloneState(rec.State) // the core changes it; the record stays as read
		}
		f.Policy = r.pol
	case FactReload:
		if r.opts.AsRecorded {
			if p := r.opts.Versions[rec.Policy]; p != nil {
				if p != r.pol {
					f.Policy = p
					r.rep.step(ReplayStep{At: rec.Time, Kind: "journal", Reason: fmt.Sprintf("policy reloaded (%s → %s); replay switches to it, as recorded", hashPrefix(rec.OldHash), hashPrefix(rec.Policy))})
					r.pol = p
					r.note(p)
					return
				}
			} else {
				r.rep.step(ReplayStep{At: rec.Time, Kind: "journal", Reason: fmt.Sprintf("policy reloaded (%s → %s); replay does not have that policy and keeps %s", hashPrefix(rec.OldHash), hashPrefix(rec.Policy), hashPrefix(r.pol.Hash))})
				r.toWhatIf(rec.Time, fmt.Sprintf("the journal switches to policy %s, which replay was not given", hashPrefix(rec.Policy)))
				f.Kind = ""
				return
			}
		}
		r.rep.step(ReplayStep{At: rec.Time, Kind: "journal", Reason: journalNote(rec)})
		if rec.Policy != r.pol.Hash {
			r.toWhatIf(rec.Time, fmt.Sprintf("the journal was written by policy %s", hashPrefix(rec.Policy)))
		}
		f.Kind = ""
	case FactCheckpoint:
		// Where a journal file begins after a rotation: a replay that
		// starts here starts from the state it records; one already
		// under way has its own.
		switch {
		case r.started:
			f.Kind = ""
		case rec.V < checkpointSince || rec.State == nil || r.whatIf:
			f.Kind = ""
		case rec.Policy != r.pol.Hash:
			r.toWhatIf(rec.Time, fmt.Sprintf("the journal was written by policy %s", hashPrefix(rec.Policy)))
			f.Kind = ""
		default:
			r.rep.step(ReplayStep{At: rec.Time, Kind: "journal", Reason: "checkpoint: the journal goes on from here with the state of a running process"})
			r.faithful = true
			r.rep.step(ReplayStep{At: rec.Time, Kind: "mode", Reason: "faithful from here: a checkpoint of a process running this policy"})
			f.State, f.Policy = cloneState(rec.State), r.pol
		}
		return
	case FactStop:
		r.rep.step(ReplayStep{At: rec.Time, Kind: "journal", Reason: journalNote(rec)})
		r.sims = nil
	default:
		if r.faithful && rec.Policy != r.pol.Hash {
			r.toWhatIf(rec.Time, fmt.Sprintf("the journal was written by policy %s", hashPrefix(rec.Policy)))
		}
	}
	if r.faithful {
		return
	}
	switch f.Kind {
	case FactWake, FactDelivery:
		f.Kind = "" // the recorded policy's wake-ups and answers; replay makes its own
	case FactAck:
		c := *f.Control
		c.Incident = "" // the operator acknowledged the incident then open
		f.Control = &c
	case FactRungEnd:
		f.Kind = "" // a rung of the recorded policy, not of this one
		for _, s := range r.sims {
			if s.matched && s.run.Rung.Name == f.End.Rung {
				f.Kind, f.End = FactRungEnd, r.matchedEnd(s, f.End)
				break
			}
		}
	}
}

func (r *Replayer) switchTo(p *Policy, at time.Time, why string) {
	if p == r.pol {
		return
	}
	r.rep.step(ReplayStep{At: at, Kind: "journal", Reason: why})
	r.pol = p
	r.note(p)
}

// Checkpoint is a checkpoint record of the state replay has reached, for an
// excerpt of the journal that begins at, before the next fact (`talon
// journal cut`): the excerpt then replays faithfully on its own. There is
// none (ok false) unless everything so far replayed faithfully: only then
// is replay's state the daemon's.
func (r *Replayer) Checkpoint(at time.Time) (rec Record, ok bool) {
	r.flush()
	if !r.started || !r.faithful || r.whatIf {
		return Record{}, false
	}
	rec = FactRecord(r.core.Checkpoint(at))
	rec.Policy = r.pol.Hash
	return rec, true
}

// checkpointSince is the first journal version with checkpoint records.
const checkpointSince = 3

// toWhatIf ends a faithful segment.
func (r *Replayer) toWhatIf(at time.Time, why string) {
	if r.faithful || !r.started {
		r.rep.step(ReplayStep{At: at, Kind: "mode", Reason: "what-if from here: " + why})
	}
	if !r.whatIf {
		r.first = why
	}
	r.whatIf = true
	r.faithful, r.why = false, why
}

// step feeds one fact to the core and reports what it decided. In what-if
// mode every message it sends is assumed to reach its channels.
func (r *Replayer) step(f Fact) Step {
	r.started = true
	st := r.core.Step(context.Background(), f)
	r.wake = st.Wake
	r.rep.fact(f, st)
	if !r.faithful {
		for _, n := range st.Notify {
			for _, ch := range n.Channels {
				a := Answer{Kind: n.Kind, Incident: n.Incident, Rung: n.Rung, Delivery: Delivery{Channel: ch, OK: true}}
				more := r.core.Step(context.Background(), Fact{Kind: FactDelivery, At: f.At, Answer: &a})
				r.rep.fact(Fact{Kind: FactDelivery, At: f.At, Answer: &a}, more)
				st.Runs = append(st.Runs, more.Runs...)
				if !more.Wake.IsZero() {
					r.wake = more.Wake
				}
			}
		}
	}
	return st
}

// catchUp wakes the core and ends simulated rungs up to (not at) t, in
// time order, as the daemon's timer would have.
func (r *Replayer) catchUp(t time.Time) {
	for {
		next, end := r.wake, (*simRung)(nil)
		for _, s := range r.sims {
			if s.matched {
				continue
			}
			at := s.deadline
			if len(s.waiting) == 0 {
				at = s.minEnd
			}
			if next.IsZero() || at.Before(next) {
				next, end = at, s
			}
		}
		if next.IsZero() || !next.Before(t) {
			return
		}
		if end == nil {
			r.follow(r.step(Fact{Kind: FactWake, At: next}), nil)
		} else {
			r.endSim(end, next)
		}
	}
}

// follow carries out a step's commands to run rungs: faithfully, the
// journal's rung_end will say how each ended; otherwise each rung is
// matched to the record or simulated.
func (r *Replayer) follow(st Step, g *group) {
	if r.faithful {
		return
	}
	for len(st.Runs) > 0 {
		run := st.Runs[0]
		st.Runs = st.Runs[1:]
		s := &simRung{run: run}
		r.sims = append(r.sims, s)
		if g != nil && r.v2 {
			for _, e := range g.events {
				if e.Type == "rung_start" && e.Rung == run.Rung.Name {
					s.matched = true
				}
			}
		}
		if s.matched {
			continue
		}
		if len(run.Actions) == 0 {
			more := r.endSimStep(s, run.At)
			st.Runs = append(st.Runs, more.Runs...)
			continue
		}
		s.minEnd = run.At.Add(r.lastDur[run.Rung.Name])
		s.deadline = s.minEnd.Add(run.Timeout)
		s.waiting = map[string]bool{}
		for _, p := range run.Verify {
			s.waiting[p.Name] = true
		}
		if len(s.waiting) == 0 && !s.minEnd.After(run.At) {
			more := r.endSimStep(s, run.At)
			st.Runs = append(st.Runs, more.Runs...)
		}
	}
}

// takeVerify takes, from results recorded at t, the verification of the
// simulated rung s, and returns the rest.
func (r *Replayer) takeVerify(s *simRung, rs []Result, t time.Time) []Result {
	if t.Before(s.minEnd) {
		return rs
	}
	var rest []Result
	for _, x := range rs {
		if s.waiting[x.Name] {
			delete(s.waiting, x.Name)
			s.verify = append(s.verify, x)
		} else {
			rest = append(rest, x)
		}
	}
	return rest
}

func (r *Replayer) endSim(s *simRung, at time.Time) { r.follow(r.endSimStep(s, at), nil) }

// drop forgets a rung this replay started.
func (r *Replayer) drop(s *simRung) {
	for i, x := range r.sims {
		if x == s {
			r.sims = append(r.sims[:i:i], r.sims[i+1:]...)
			return
		}
	}
}

// endSimStep ends the simulated rung s at at, under the assumptions above.
func (r *Replayer) endSimStep(s *simRung, at time.Time) Step {
	r.drop(s)
	end := &RungEnd{Incident: s.run.Incident, Rung: s.run.Rung.Name, OK: true, Verify: s.verify}
	for _, p := range s.run.Pagers {
		end.Deliveries = append(end.Deliveries, Delivery{Channel: p.Channel(), OK: true})
	}
	r.rep.basis = "assumed"
	return r.step(Fact{Kind: FactRungEnd, At: at, End: end})
}

// matchedEnd is the recorded end of a rung this replay also started,
// fitted to this policy's rung.
func (r *Replayer) matchedEnd(s *simRung, rec *RungEnd) *RungEnd {
	r.drop(s)
	end := &RungEnd{Incident: s.run.Incident, Rung: s.run.Rung.Name, OK: rec.OK, Output: rec.Output, Cut: rec.Cut}
	want := map[string]bool{}
	for _, p := range s.run.Verify {
		want[p.Name] = true
	}
	for _, v := range rec.Verify {
		if want[v.Name] {
			end.Verify = append(end.Verify, v)
		}
	}
	for _, p := range s.run.Pagers {
		d := Delivery{Channel: p.Channel(), OK: true}
		for _, x := range rec.Deliveries {
			if x.Channel == d.Channel {
				d = x
			}
		}
		end.Deliveries = append(end.Deliveries, d)
	}
	r.rep.basis = "recorded"
	return end
}

// compare checks, in faithful mode, that the core decided after the fact
// what the daemon journaled after it.
func (r *Replayer) compare(g *group, f Fact, st Step) {
	if f.Kind == "" {
		return
	}
	want := eventLines(g.events)
	got := eventLines(st.Events)
	if strings.Join(want, "\n") == strings.Join(got, "\n") {
		return
	}
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	r.out.Divergences = append(r.out.Divergences, ReplayDivergence{At: g.rec.Time, Fact: g.rec.Type, Where: g.where, Journaled: want, Replayed: got})
}

func eventLines(ev []Event) []string {
	var out []string
	for _, e := range ev {
		b, _ := json.Marshal(e)
		out = append(out, string(b))
	}
	return out
}

// Result finishes the replay and returns what it decided.
func (r *Replayer) Result() ReplayResult {
	r.flush()
	out := r.out
	out.Mode, out.ModeReason = ModeFaithful, "the journal was written by this policy, from a process start on, with every fact the core needs"
	if r.whatIf || !r.faithful {
		out.Mode, out.ModeReason = ModeWhatIf, r.why
		if r.first != "" {
			out.ModeReason = r.first
		}
	}
	if out.Records == 0 {
		out.Warnings = append(out.Warnings, "the journal has no records")
	} else if out.Cycles == 0 {
		out.Warnings = append(out.Warnings, "the journal has no cycle records: nothing to replay")
	}
	var missing []string
	for _, p := range r.pol.Probes {
		if !r.seen[p.Name] {
			missing = append(missing, p.Name)
		}
	}
	if len(missing) > 0 && out.Records > 0 {
		out.Warnings = append(out.Warnings, fmt.Sprintf("probes of the policy with no result in the journal (never observed): %s", strings.Join(missing, ", ")))
	}
	var foreign []string
	for _, n := range r.foreign {
		if !r.names[n] {
			foreign = append(foreign, n)
		}
	}
	if len(foreign) > 0 {
		sort.Strings(foreign)
		out.Warnings = append(out.Warnings, fmt.Sprintf("results of probes the policy does not have (ignored): %s", strings.Join(foreign, ", ")))
	}
	if n := len(out.Divergences); n > 0 {
		out.Warnings = append([]string{fmt.Sprintf("DIVERGENCE: replay decided otherwise than the daemon after %d recorded %s; the core or the journal is at fault", n, plural(n, "fact"))}, out.Warnings...)
	}
	r.rep.finish(&out, r.core.State().Phase, r.pol)
	return out
}

func journalNote(rec Record) string {
	switch rec.Type {
	case "start":
		if rec.Error != "" {
			return fmt.Sprintf("daemon started (phase %s; policy error: %s)", rec.Phase, text.FirstLines(rec.Error, 1))
		}
		return fmt.Sprintf("daemon started (phase %s)", rec.Phase)
	case "stop":
		return fmt.Sprintf("daemon stopped (phase %s)", rec.Phase)
	}
	if rec.Error != "" {
		return "policy reload failed: " + text.FirstLines(rec.Error, 1)
	}
	return fmt.Sprintf("policy reloaded (%s → %s)", hashPrefix(rec.OldHash), hashPrefix(rec.Policy))
}

func hashPrefix(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// cloneState is a deep copy of s.
func cloneState(s *State) *State {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a State always encodes
	}
	var c State
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	if c.Probes == nil {
		c.Probes = map[string]*ProbeState{}
	}
	if c.LastRun == nil {
		c.LastRun = map[string]time.Time{}
	}
	if c.LastSent == nil {
		c.LastSent = map[string]time.Time{}
	}
	if c.Incident != nil && c.Incident.Rungs == nil {
		c.Incident.Rungs = map[string]*RungState{}
	}
	return &c
}
