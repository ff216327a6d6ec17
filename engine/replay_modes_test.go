package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// daemonJournal writes what a daemon would journal for these facts: each
// fact's record, then the decisions the core took on it. A rung the core
// starts ends, ok, 20 s later (at the next fact at or after that).
func daemonJournal(facts []Fact) []Record {
	c := NewCore(CoreOptions{})
	var recs []Record
	var end *RungEnd
	var endAt time.Time
	feed := func(f Fact) {
		rec := FactRecord(f)
		if rec.State != nil {
			rec.State = cloneState(rec.State) // as the journal writes it, before the core changes it
		}
		if rec.Policy == "" {
			rec.Policy = c.Policy().Hash
		}
		if f.Kind == FactReload {
			rec.OldHash = c.Policy().Hash
		}
		recs = append(recs, rec)
		st := c.Step(context.Background(), f)
		for _, e := range st.Events {
			e := e
			recs = append(recs, Record{Time: e.At, Type: "event", Policy: c.Policy().Hash, Event: &e})
		}
		if st.Run != nil {
			end = &RungEnd{Incident: st.Run.Incident, Rung: st.Run.Rung.Name, OK: true}
			for _, p := range st.Run.Pagers {
				end.Deliveries = append(end.Deliveries, Delivery{Channel: p.Channel(), OK: true})
			}
			endAt = f.At.Add(20 * time.Second)
		}
	}
	for _, f := range facts {
		if end != nil && !endAt.After(f.At) {
			e := end
			end = nil
			feed(Fact{Kind: FactRungEnd, At: endAt, End: e})
		}
		feed(f)
	}
	return recs
}

func cycleFacts(from, n int, results func(i int) []Result) []Fact {
	var out []Fact
	for i := from; i < from+n; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		rs := results(i)
		var names []string
		for k := range rs {
			rs[k].At = at
			names = append(names, rs[k].Name)
		}
		out = append(out, Fact{Kind: FactLaunch, At: at, Probes: names}, Fact{Kind: FactResults, At: at.Add(time.Millisecond), Results: rs})
	}
	return out
}

func TestReplayFaithfulAndAsRecorded(t *testing.T) {
	t.Parallel()
	a := testPolicy([]*Probe{{Name: "api", Critical: true}}, heal(), sos(5*time.Minute, time.Hour))
	b := testPolicy([]*Probe{{Name: "api", Critical: true, After: 4}}, heal(), sos(3*time.Minute, time.Hour))
	a.Hash, b.Hash = "aaaa", "bbbb"
	down := func(i int) []Result { return []Result{res("api", i < 3 || i > 12)} }
	facts := []Fact{{Kind: FactStart, At: t0, Policy: a, State: NewState(t0)}}
	facts = append(facts, cycleFacts(0, 8, down)...)
	facts = append(facts, Fact{Kind: FactReload, At: t0.Add(8*time.Minute + 30*time.Second), Policy: b})
	facts = append(facts, cycleFacts(9, 8, down)...)
	journal := daemonJournal(facts)

	// Through A alone: faithful until the reload, what-if after it.
	r := Replay(a, journal, ReplayOptions{})
	if r.Mode != ModeWhatIf || r.ModeReason != "the journal was written by policy bbbb" || len(r.Divergences) != 0 {
		t.Fatalf("A alone: %s (%s) %+v", r.Mode, r.ModeReason, r.Divergences)
	}
	// As recorded, with both versions: faithful throughout.
	r = Replay(a, journal, ReplayOptions{AsRecorded: true, Versions: map[string]*Policy{"aaaa": a, "bbbb": b}})
	if r.Mode != ModeFaithful || len(r.Divergences) != 0 {
		t.Fatalf("as recorded: %s (%s) %+v", r.Mode, r.ModeReason, r.Divergences)
	}
	var notes []string
	for _, st := range r.Timeline {
		if st.Kind == "journal" || st.Kind == "mode" {
			notes = append(notes, st.Reason)
		}
	}
	want := "daemon started (phase healthy)|faithful from here: the process started under this policy|policy reloaded (aaaa → bbbb); replay switches to it, as recorded"
	if strings.Join(notes, "|") != want {
		t.Fatalf("notes %q", notes)
	}
	// As recorded without B: said so, and what-if from there.
	r = Replay(a, journal, ReplayOptions{AsRecorded: true, Versions: map[string]*Policy{"aaaa": a}})
	if r.Mode != ModeWhatIf || r.ModeReason != "the journal switches to policy bbbb, which replay was not given" {
		t.Fatalf("as recorded without B: %s (%s)", r.Mode, r.ModeReason)
	}

	// A decision the journal has and replay does not take is a divergence,
	// named by the fact's place.
	tampered := append([]Record(nil), journal...)
	for i, rec := range tampered {
		if rec.Type == "event" && rec.Event.Type == "rung_start" {
			e := *rec.Event
			e.Rung = "agent"
			tampered[i].Event = &e
			break
		}
	}
	rr := NewReplayer(a, ReplayOptions{AsRecorded: true, Versions: map[string]*Policy{"aaaa": a, "bbbb": b}})
	for i, rec := range tampered {
		rr.Feed(rec, fmt.Sprintf("journal.jsonl:%d", i+1))
	}
	res := rr.Result()
	if len(res.Divergences) != 1 || !strings.HasPrefix(res.Warnings[0], "DIVERGENCE: replay decided otherwise than the daemon after 1 recorded fact") {
		t.Fatalf("divergences %+v warnings %q", res.Divergences, res.Warnings)
	}
	d := res.Divergences[0]
	if d.Fact != "cycle" || !strings.HasPrefix(d.Where, "journal.jsonl:") || len(d.Journaled) != len(d.Replayed) || !strings.Contains(strings.Join(d.Journaled, ""), `"rung":"agent"`) {
		t.Fatalf("divergence %+v", d)
	}
}
