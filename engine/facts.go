package engine

// FactRecord is the journal record of a fact: what the daemon writes before
// it feeds the fact to the core, and what replay reads back. A start or
// reload carries the hash of its policy; for other facts the journal writer
// fills in the policy in force.
func FactRecord(f Fact) Record {
	r := Record{Time: f.At}
	if f.Policy != nil {
		r.Policy = f.Policy.Hash
	}
	switch f.Kind {
	case FactStart:
		r.Type, r.V, r.Error = "start", JournalVersion, f.PolicyError
		if f.State != nil {
			r.State, r.Phase = f.State, f.State.Phase
		}
	case FactLaunch:
		r.Type, r.Probes = "launch", f.Probes
	case FactResults:
		r.Type, r.Results = "cycle", f.Results
	case FactRungEnd:
		r.Type, r.End = "rung_end", f.End
	case FactReload:
		r.Type = "reload"
	case FactWake:
		r.Type = "wake"
	case FactStop:
		r.Type = "stop"
	case FactPause, FactResume, FactAck:
		r.Type, r.Control = string(f.Kind), f.Control
	case FactDelivery:
		r.Type, r.Answer = "delivery", f.Answer
	case FactCheckpoint:
		r.Type, r.V, r.State, r.Probes, r.Started = "checkpoint", JournalVersion, f.State, f.Probes, f.Started
		if f.State != nil {
			r.Phase = f.State.Phase
		}
	}
	return r
}

// RecordFact is the fact a journal record states, if it states one: "start",
// "launch", "cycle" (without a rung: a version 1 verification re-probe is
// not a fact of its own), "rung_end", "wake", "reload", "stop", "pause",
// "resume", "ack", "delivery" and "checkpoint". The
// policy of a start or reload is the caller's to supply, as is a start's
// state (records of version 1 carry none).
func RecordFact(r Record) (Fact, bool) {
	f := Fact{At: r.Time}
	switch r.Type {
	case "start":
		f.Kind, f.PolicyError, f.State = FactStart, r.Error, r.State
	case "launch":
		f.Kind, f.Probes = FactLaunch, r.Probes
	case "cycle":
		if r.Rung != "" {
			return f, false
		}
		f.Kind, f.Results = FactResults, r.Results
	case "rung_end":
		if r.End == nil {
			return f, false
		}
		f.Kind, f.End = FactRungEnd, r.End
	case "wake":
		f.Kind = FactWake
	case "reload":
		if r.Error != "" {
			return f, false // a failed reload changed nothing
		}
		f.Kind = FactReload
	case "stop":
		f.Kind = FactStop
	case "pause", "resume", "ack":
		if r.Control == nil {
			return f, false
		}
		f.Kind, f.Control = FactKind(r.Type), r.Control
	case "delivery":
		if r.Answer == nil {
			return f, false
		}
		f.Kind, f.Answer = FactDelivery, r.Answer
	case "checkpoint":
		if r.State == nil {
			return f, false
		}
		f.Kind, f.State, f.Probes, f.Started = FactCheckpoint, r.State, r.Probes, r.Started
	default:
		return f, false
	}
	return f, true
}
