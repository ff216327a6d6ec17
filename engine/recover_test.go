package engine

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
)

// copyPager records messages and, as each one is sent, copies the state
// file aside: what a kill -9 right after the channel's answer was
// journaled, before the next save, leaves on disk.
type copyPager struct {
	recPager
	state, aside string
}

func (p *copyPager) Run(ctx context.Context, env *ActionEnv) ActionResult {
	return ActionResult{OK: p.Send(ctx, env, env.Message) == nil}
}

func (p *copyPager) Send(ctx context.Context, env *ActionEnv, m Message) error {
	if m.Kind == "sos" {
		if b, err := os.ReadFile(p.state); err == nil {
			os.WriteFile(p.aside, b, 0o600)
		}
	}
	return p.recPager.Send(ctx, env, m)
}

// A channel's acceptance journaled after the last state save (kill -9
// between the two) is applied at the next start: the channel is not paged
// again inside the repeat window, and it hears that the incident resolved.
func TestAnswerJournaledAfterTheLastSaveIsNotPagedAgain(t *testing.T) {
	t.Parallel()
	for _, recover := range []bool{true, false} {
		t.Run(map[bool]string{true: "recovered", false: "without the journal"}[recover], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testAnswerRecovered(t, recover) })
		})
	}
}

func testAnswerRecovered(t *testing.T, recover bool) {
	var healthy atomic.Bool
	healthy.Store(true)
	probe := &Probe{Name: "api", Critical: true, Digest: "api1", Check: func(context.Context, *ProbeEnv) Outcome {
		if healthy.Load() {
			return Outcome{Passed: true, Output: "ok"}
		}
		return Outcome{Output: "HTTP 503"}
	}}
	dir := t.TempDir()
	statePath := filepath.Join(dir, "state.json")
	pager := &copyPager{state: statePath, aside: filepath.Join(dir, "before-answer.json")}
	pol := &Policy{Hash: "pol1", Probes: []*Probe{probe},
		Thresholds: Thresholds{FailedAfter: 1, RecoverAfter: 1},
		Ladder:     []*Rung{{Name: "sos", Do: []Action{pager}, State: "sos", Repeat: time.Hour}}}
	j := &memJournal{}
	newDaemon := func() *Daemon {
		o := Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
			Interval: 200 * time.Millisecond, StateFile: statePath, Probes: effect.NewLive(), Actions: effect.NewLive(),
			Journal: j, Logger: log.New(io.Discard)}
		if recover {
			o.Answers = func(since time.Time) ([]Fact, error) {
				j.mu.Lock()
				defer j.mu.Unlock()
				var facts []Fact
				for _, r := range j.recs {
					if f, ok := RecordFact(r); ok && f.Kind == FactDelivery && !f.At.Before(since) {
						facts = append(facts, f)
					}
				}
				return facts, nil
			}
		}
		return New(o)
	}
	d := newDaemon()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	advance(time.Second)
	healthy.Store(false)
	advance(time.Second)
	if k := pager.kinds(); len(k) != 1 || d.Snapshot().State != SOS {
		t.Fatalf("pages %v, state %s", k, d.Snapshot().State)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if j.count(func(r Record) bool { return r.Type == "delivery" && r.Answer != nil && r.Answer.OK }) != 1 {
		t.Fatal("the channel's acceptance is not in the journal")
	}
	// The kill: the state on disk is the one saved before the answer.
	b, err := os.ReadFile(pager.aside)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath, b, 0o600); err != nil {
		t.Fatal(err)
	}

	d2 := newDaemon()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { done <- d2.Run(ctx2) }()
	advance(time.Second)
	k := pager.kinds()
	if !recover {
		// The defect this guards against: without the journal's answer the
		// start pages the channel a second time inside the repeat.
		if len(k) != 2 {
			t.Fatalf("without recovery: messages %v, want the page twice", k)
		}
		cancel2()
		<-done
		return
	}
	if len(k) != 1 {
		t.Fatalf("after the restart: messages %v, want the one page", k)
	}
	if s := d2.Snapshot(); s.State != SOS || s.Incident == nil || len(s.Incident.Paged) != 1 {
		t.Fatalf("after the restart: %+v", s.Incident)
	}
	healthy.Store(true)
	advance(time.Second)
	if k := pager.kinds(); len(k) != 2 || k[1] != "resolved" {
		t.Fatalf("messages %v, want the page then resolved", k)
	}
	cancel2()
	<-done
}

// A "resolved" accepted after the save leaves the outbox; an answer older
// than the save, a refusal, or one applied already changes nothing.
func TestRecoverAnswersResolved(t *testing.T) {
	t.Parallel()
	saved := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	s := NewState(saved)
	s.UpdatedAt = saved
	s.Outbox = []*Outgoing{
		{Kind: "resolved", Incident: "i1", Channel: "tg", Sending: true},
		{Kind: "resolved", Incident: "i1", Channel: "mail", Sending: true},
	}
	ans := func(at time.Time, ch string, ok bool) Fact {
		return Fact{Kind: FactDelivery, At: at, Answer: &Answer{Kind: "resolved", Incident: "i1", Delivery: Delivery{Channel: ch, OK: ok}}}
	}
	facts := []Fact{
		ans(saved.Add(-time.Second), "mail", true), // before the save: the state has it already
		ans(saved.Add(time.Millisecond), "mail", false),
		ans(saved.Add(2*time.Millisecond), "tg", true),
	}
	pol := testPolicy(nil)
	if got := RecoverAnswers(s, pol, facts); len(got) != 1 || len(s.Outbox) != 1 || s.Outbox[0].Channel != "mail" {
		t.Fatalf("applied %q, outbox %+v", got, s.Outbox)
	}
	if got := RecoverAnswers(s, pol, facts); len(got) != 0 || len(s.Outbox) != 1 {
		t.Fatalf("second time: applied %q, outbox %+v", got, s.Outbox)
	}
}
