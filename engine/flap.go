package engine

import (
	"fmt"
	"time"
)

// Flap detection (Thresholds.FlapWindow, FlapStart, FlapStop).
//
// Nagios counts state changes among a host's last 21 checks and calls it
// flapping above a high threshold, stable again below a low one. Talon
// counts the times a probe went down (after its debounce) within a time
// window: FlapStart downs within FlapWindow start flapping, and it stops
// once no more than FlapStop are left within the window. The gap between
// the two is the hysteresis that keeps the verdict itself from flapping.
// Rungs decide what to do for a flapping incident (Rung.Flapping): by
// default a heal runs once and a page goes out once, saying "flapping".

// flap updates p's flapping verdict after a result at now, pruning downs
// older than the window, and returns the flap_start or flap_stop event.
func (th Thresholds) flap(ps *ProbeState, name string, now time.Time) []Event {
	if th.FlapStart <= 0 || th.FlapWindow <= 0 {
		if ps.Flapping {
			ps.Flapping, ps.FlappingSince, ps.FlapFirst = false, time.Time{}, time.Time{}
			return []Event{{Type: "flap_stop", Probe: name, Reason: "flap detection is off", At: now}}
		}
		ps.Downs = nil
		return nil
	}
	keep := ps.Downs[:0]
	for _, t := range ps.Downs {
		if now.Sub(t) < th.FlapWindow {
			keep = append(keep, t)
		}
	}
	// The verdict needs no more than the last FlapStart downs: the state
	// stays small however often a probe flaps.
	if n := len(keep); n > th.FlapStart {
		keep = append(keep[:0], keep[n-th.FlapStart:]...)
	}
	ps.Downs = keep
	if len(ps.Downs) == 0 {
		ps.Downs = nil
	}
	switch {
	case !ps.Flapping && len(ps.Downs) >= th.FlapStart:
		ps.Flapping, ps.FlappingSince, ps.FlapFirst = true, now, ps.Downs[0]
		return []Event{{Type: "flap_start", Probe: name,
			Reason: fmt.Sprintf("went down %d times within %s", len(ps.Downs), th.FlapWindow), At: now}}
	case ps.Flapping && len(ps.Downs) <= th.FlapStop:
		ps.Flapping, ps.FlappingSince, ps.FlapFirst = false, time.Time{}, time.Time{}
		return []Event{{Type: "flap_stop", Probe: name,
			Reason: fmt.Sprintf("went down %d times within the last %s", len(ps.Downs), th.FlapWindow), At: now}}
	}
	return nil
}
