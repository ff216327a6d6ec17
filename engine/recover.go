package engine

import (
	"fmt"
	"slices"
	"time"
)

// RecoverAnswers applies to a state loaded from disk the channels'
// acceptances that the journal recorded after the state was saved
// (s.UpdatedAt): the daemon journals a channel's answer, then saves the
// state, and a kill -9 between the two would otherwise leave the state
// saying the page is still owed, and the next start would page that
// channel again (and, the incident resolving before the re-send, never tell
// it that it is over).
//
// Only what the saved state still owes is applied: a page answer whose
// channel is pending in its rung, a "resolved" answer whose message is in
// the outbox. So a record the state already holds changes nothing, and the
// result is the same however far back facts starts. It returns one line per
// answer applied, for the log. The daemon calls it before its start fact,
// whose journal record carries the state afterwards: replay starts from the
// very state the daemon decided on.
func RecoverAnswers(s *State, pol *Policy, facts []Fact) []string {
	var applied []string
	for _, f := range facts {
		a := f.Answer
		if f.Kind != FactDelivery || a == nil || !a.OK || f.At.Before(s.UpdatedAt) {
			continue
		}
		switch a.Kind {
		case "sos":
			inc := s.Incident
			if inc == nil || inc.ID != a.Incident {
				continue
			}
			rs := inc.Rungs[a.Rung]
			if rs == nil || !slices.Contains(rs.Pending, a.Channel) {
				continue
			}
			Delivered(s, pol, a.Incident, a.Rung, a.Channel, f.At)
			applied = append(applied, fmt.Sprintf("%s accepted the page of rung %s for incident %s at %s", a.Channel, a.Rung, a.Incident, f.At.UTC().Format(time.RFC3339Nano)))
		case "resolved":
			n := len(s.Outbox)
			s.Outbox = slices.DeleteFunc(s.Outbox, func(o *Outgoing) bool {
				return o.Kind == a.Kind && o.Incident == a.Incident && o.Channel == a.Channel
			})
			if len(s.Outbox) < n {
				applied = append(applied, fmt.Sprintf("%s accepted \"resolved\" for incident %s at %s", a.Channel, a.Incident, f.At.UTC().Format(time.RFC3339Nano)))
			}
		}
	}
	return applied
}
