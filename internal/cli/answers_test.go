package cli

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

// The daemon's start reads the channels' answers journaled since the last
// state save from the real journal: only delivery facts, only from since on.
func TestJournalAnswersSince(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	j, err := journal.Open(path, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	answer := func(at time.Time, ch string) engine.Record {
		return engine.FactRecord(engine.Fact{Kind: engine.FactDelivery, At: at,
			Answer: &engine.Answer{Kind: "sos", Incident: "i1", Rung: "sos", Delivery: engine.Delivery{Channel: ch, OK: true}}})
	}
	for _, r := range []engine.Record{
		engine.FactRecord(engine.Fact{Kind: engine.FactWake, At: t0}),
		answer(t0.Add(time.Second), "old"),
		engine.FactRecord(engine.Fact{Kind: engine.FactWake, At: t0.Add(2 * time.Second)}),
		answer(t0.Add(3*time.Second), "new"),
	} {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	facts, err := journalAnswers(path)(t0.Add(2 * time.Second))
	if err != nil || len(facts) != 1 || facts[0].Answer.Channel != "new" || !facts[0].At.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("answers since the save: %+v, %v", facts, err)
	}
	if facts, err := journalAnswers(filepath.Join(t.TempDir(), "none.jsonl"))(t0); err != nil || len(facts) != 0 {
		t.Fatalf("no journal yet: %+v, %v", facts, err)
	}
}
