package engine

import "time"

// Snapshot is the daemon's published health, served by /health and read by
// `talon status`. The first eight fields keep the names and meaning the
// predecessor's consumers read.
type Snapshot struct {
	OK                  bool     `json:"ok"`
	State               Phase    `json:"state"`
	ConsecutiveFailures int      `json:"consecutive_failures"`
	ProbeCount          int      `json:"probe_count"`
	FailedProbeCount    int      `json:"failed_probe_count"`
	FailedProbes        []string `json:"failed_probes"`
	WorkerRestarts      int      `json:"worker_restarts"`
	UpdatedAtUnix       int64    `json:"updated_at_unix"`

	PolicyHash  string  `json:"policy_hash"`
	PolicyError *string `json:"policy_error"`
	// Fallback is set while the daemon runs a fallback policy because the
	// one asked for failed to load at start: its last known good policy,
	// or the embedded default. OK is false and State is not healthy then.
	Fallback  *Fallback     `json:"fallback"`
	Incident  *IncidentInfo `json:"incident"`
	Rung      *string       `json:"rung"`
	LastCycle time.Time     `json:"last_cycle"`
	DryRun    bool          `json:"dry_run"`
	// Stale says no probe result arrived for several intervals: the
	// daemon's loop is stuck and what /health shows is old.
	Stale   bool `json:"stale"`
	Reloads int  `json:"reloads"`
	// RungRuns counts the starts of each rung and Pages the pages channels
	// accepted, since the daemon started (for /metrics).
	RungRuns map[string]int `json:"rung_runs"`
	// Worker is the supervised worker's status; absent when none is supervised.
	Worker any      `json:"worker,omitempty"`
	Pages  int      `json:"pages"`
	Probes []Result `json:"probes"`
	// Paused are the operator's pauses in force (talon pause), each with
	// Text, its description.
	Paused []PauseInfo `json:"paused"`
	// Flapping names the probes that flap (down and up repeatedly).
	Flapping []string `json:"flapping"`
	// WriteError says the state directory cannot be written (full or
	// read-only): the daemon goes on probing and escalating, but what it
	// decides is not saved (state) or recorded (journal) until a write
	// succeeds again. OK is false meanwhile. Null while writes succeed.
	WriteError *WriteError `json:"write_error"`

	// Seq numbers the snapshots a daemon publishes, so that a reader can
	// tell an unchanged one (the health endpoint's cache); not in JSON.
	Seq uint64 `json:"-"`
}

// WriteError is a failure to write the state directory, as /health shows
// it: the last error of each file that fails, and since when.
type WriteError struct {
	State   string    `json:"state,omitempty"`
	Journal string    `json:"journal,omitempty"`
	Since   time.Time `json:"since"`
}

// PauseInfo is a pause as /health shows it.
type PauseInfo struct {
	Pause
	Text string `json:"text"`
}

// Starting is the state /health shows before the daemon has loaded its
// state and policy, and then until every probe has reported since the
// start (the predecessor's "Starting"): not a phase of the state machine,
// and never ok.
const Starting Phase = "starting"

// IncidentInfo is the open incident as /health shows it.
type IncidentInfo struct {
	ID       string    `json:"id"`
	Started  time.Time `json:"started"`
	Probes   []string  `json:"probes"`
	Critical bool      `json:"critical"`
	Position int       `json:"position"`
	Paged    []string  `json:"paged"`
	// Acked is the operator's acknowledgement, while it holds.
	Acked *Ack `json:"acked,omitempty"`
	// Settling is the rung whose settle window is open, and until when.
	Settling *Settle `json:"settling,omitempty"`
}

// JournalVersion is the version of the journal's record format that this
// Talon writes, stated on every "start" record. Version 4 writes cycle
// records compactly (each probe's changes since its previous result in the
// file) and a launch of the same probes as before as just that; the reader
// expands them, so the records are those of version 3. Version 3 adds the
// operator's commands (pause, resume, ack) and each channel's answer
// (delivery), and is written by the decision core that keeps to fresh
// evidence, settle windows, on-time pages and flap detection. Version 2
// recorded every fact the earlier core needed (launch, wake, rung_end, the
// state at a start); version 1 (no "v") recorded cycles and decisions only.
const JournalVersion = 4

// FaithfulJournalVersion is the oldest journal version that replays
// faithfully: the first written by this decision core's rules (an older one
// was decided by other rules). Versions 3 and 4 differ in encoding only.
const FaithfulJournalVersion = 3

// Record is one line of the journal. Type says which fields are set:
// "start" (V, Phase, State, Error), "launch" (Probes), "cycle" (Results),
// "rung_end" (End), "wake", "reload" (OldHash, Error), "stop" (Phase),
// "pause", "resume", "ack" (Control), "delivery" (Answer) are facts the
// decision core was fed; "event" (Event) is a decision;
// "action" (Rung, Action, OK, Output) and "intent" (Intent, under --dry-run)
// say what a rung did. The format is documented in docs/journal.md.
type Record struct {
	Time    time.Time `json:"t"`
	Type    string    `json:"type"`
	Policy  string    `json:"policy"`
	Results []Result  `json:"results,omitempty"`
	Event   *Event    `json:"event,omitempty"`
	Rung    string    `json:"rung,omitempty"`
	Action  string    `json:"action,omitempty"`
	OK      *bool     `json:"ok,omitempty"`
	Output  string    `json:"output,omitempty"`
	Intent  string    `json:"intent,omitempty"`
	OldHash string    `json:"old_policy,omitempty"`
	Error   string    `json:"error,omitempty"`
	Phase   Phase     `json:"phase,omitempty"`
	// V is the journal format version, on "start" records (JournalVersion).
	V int `json:"v,omitempty"`
	// Probes are the probes launched, on "launch" records.
	Probes []string `json:"probes,omitempty"`
	// End is the outcome of a rung, on "rung_end" records.
	End *RungEnd `json:"end,omitempty"`
	// State is the state the process started with, on "start" records.
	State *State `json:"state,omitempty"`
	// Control is an operator's command, on "pause", "resume" and "ack"
	// records.
	Control *Control `json:"control,omitempty"`
	// Answer is a channel's answer to a message, on "delivery" records.
	Answer *Answer `json:"answer,omitempty"`
	// Started is when the process started, on "checkpoint" records (which
	// also carry V, State, Phase and, in Probes, the probes in flight).
	Started time.Time `json:"started,omitzero"`
}
