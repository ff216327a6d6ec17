package cli

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine"
)

// storyLine is one step of what happened, as `talon events` prints it.
type storyLine struct {
	Time     time.Time `json:"t"`
	Kind     string    `json:"kind"`
	Incident string    `json:"incident,omitempty"`
	Probe    string    `json:"probe,omitempty"`
	Rung     string    `json:"rung,omitempty"`
	OK       *bool     `json:"ok,omitempty"`
	Text     string    `json:"text"`
}

// story turns journal records into storyLines. It remembers what a line
// needs from earlier records: when a rung started (to say how long it ran),
// which incident is open (actions carry none), and each incident's steps
// (for the one-line summary when it resolves).
type story struct {
	open      string               // the incident open now
	resolved  string               // the incident that resolved last ("resolved" pages are its)
	opened    map[string]time.Time // incident → when it opened
	rungStart map[string]time.Time // rung → start of its current run
	rungActs  map[string]int       // rung → actions seen in its current run
	steps     map[string][]string  // incident → the steps of its summary
	running   bool                 // a start without its stop yet
	// resumed is the last "resume" record: who asked, and when (its
	// "resume" events, one per pause lifted, follow it with its time).
	resumedBy string
	resumedAt time.Time
}

func newStory() *story {
	return &story{opened: map[string]time.Time{}, rungStart: map[string]time.Time{},
		rungActs: map[string]int{}, steps: map[string][]string{}}
}

// add is the whole story-building: one record in, the lines it tells out.
// A record type or event type it does not know tells nothing, so a journal
// written by a newer daemon still reads. To tell a new kind of record, add
// a case here.
func (s *story) add(r engine.Record) []storyLine {
	line := func(kind, text string) storyLine {
		return storyLine{Time: r.Time, Kind: kind, Incident: s.open, Rung: r.Rung, Text: text}
	}
	switch r.Type {
	case "start":
		l := line("start", "talon started in phase "+string(r.Phase)+", policy "+shortHash(r.Policy))
		if s.running {
			l.Text = "talon started again after an unclean end (crash, kill -9 or power loss: no stop recorded), in phase " +
				string(r.Phase) + ", policy " + shortHash(r.Policy)
		}
		s.running = true
		if r.Error != "" {
			l.Text += "; policy error: " + firstLine(r.Error, 200)
		}
		l.Incident = ""
		return []storyLine{l}
	case "stop":
		s.running = false
		l := line("stop", "talon stopped in phase "+string(r.Phase))
		l.Incident = ""
		return []storyLine{l}
	case "reload":
		l := line("reload", "policy reloaded: "+shortHash(r.OldHash)+" → "+shortHash(r.Policy))
		if r.Error != "" {
			ok := false
			l.OK, l.Text = &ok, "reload failed, policy "+shortHash(r.Policy)+" keeps running: "+firstLine(r.Error, 200)
		}
		l.Incident = ""
		return []storyLine{l}
	case "intent":
		return []storyLine{line("intent", "dry run: "+r.Rung+" would "+r.Intent)}
	case "action":
		return []storyLine{s.action(r, line)}
	case "cycle":
		if r.Rung == "" {
			return nil // the probe results themselves; their changes come as events
		}
		return []storyLine{s.verify(r, line)}
	case "resume":
		if r.Control != nil {
			s.resumedBy, s.resumedAt = r.Control.By, r.Time
		}
		return nil
	case "event":
		if r.Event == nil {
			return nil
		}
		return s.event(r.Event, r.Time)
	}
	return nil
}

func (s *story) action(r engine.Record, line func(kind, text string) storyLine) storyLine {
	s.rungActs[r.Rung]++
	ok := r.OK != nil && *r.OK
	if rest, isPage := strings.CutPrefix(r.Action, "page "); isPage {
		kind, channel, _ := strings.Cut(rest, " via ")
		l := line("page", "")
		l.OK = &ok
		switch {
		case kind == "resolved" && ok:
			l.Text = "“resolved” sent via " + channel
		case kind == "resolved":
			l.Text = "“resolved” not delivered via " + channel + ": " + firstLine(r.Output, 160)
		case kind == "drill" && ok:
			l.Text = "drill page sent via " + channel
		case ok:
			l.Text = "page sent via " + channel
			s.step(l.Incident, "page sent via "+channel)
		default:
			l.Text = "page via " + channel + " failed: " + firstLine(r.Output, 160)
			s.step(l.Incident, "page via "+channel+" failed")
		}
		if r.Rung == "resolved" {
			l.Rung, l.Incident = "", s.resolved
		}
		return l
	}
	ran := r.Rung + " ran"
	if start, ok := s.rungStart[r.Rung]; ok && !r.Time.Before(start) {
		ran += " " + humanDuration(r.Time.Sub(start))
	}
	verdict := "ok"
	if !ok {
		verdict = "failed"
		if m := exitRe.FindStringSubmatch(r.Output); m != nil {
			verdict = "exit " + m[1]
		}
	}
	l := line("action", ran+", "+verdict)
	l.OK = &ok
	out := strings.TrimSpace(exitRe.ReplaceAllString(r.Output, ""))
	if out != "" {
		l.Text += ": " + firstLine(out, 160)
	}
	s.step(l.Incident, ran+", "+verdict)
	return l
}

var exitRe = regexp.MustCompile(`^exit status (-?\d+)\n?`)

// verify tells the re-probe after a rung.
func (s *story) verify(r engine.Record, line func(kind, text string) storyLine) storyLine {
	var failing, passing []string
	for _, res := range r.Results {
		if res.Passed {
			passing = append(passing, res.Name)
		} else {
			failing = append(failing, res.Name+" ("+firstLine(res.Output, 80)+")")
		}
	}
	l := line("verify", "")
	ok := len(failing) == 0
	l.OK = &ok
	if ok {
		l.Text = "after " + r.Rung + ": " + strings.Join(passing, ", ") + " pass again"
	} else {
		l.Text = "after " + r.Rung + ": still failing: " + strings.Join(failing, ", ")
	}
	return l
}

func (s *story) event(e *engine.Event, at time.Time) []storyLine {
	if !e.At.IsZero() {
		at = e.At
	}
	inc := e.Incident
	switch {
	case inc == "":
		inc = s.open
	case e.Type != "incident_resolved" && s.open == "":
		// A story that starts inside an incident (--since) learns it from
		// the first event that names it.
		s.open = inc
	}
	l := storyLine{Time: at, Kind: e.Type, Incident: inc, Probe: e.Probe, Rung: e.Rung}
	switch e.Type {
	case "probe_down":
		l.Text = e.Probe + " down"
		if e.Reason != "" {
			l.Text += " (" + firstLine(e.Reason, 160) + ")"
		}
		if s.open != "" {
			s.step(s.open, l.Text)
		}
	case "probe_up":
		l.Text = e.Probe + " up"
	case "incident_open":
		s.open = e.Incident
		s.opened[e.Incident] = at
		probes := strings.Trim(e.Reason, "[]")
		l.Text = "incident " + e.Incident + " opened: " + probes
		s.steps[e.Incident] = []string{at.Format("15:04:05") + " " + strings.ReplaceAll(probes, " ", ", ") + " down"}
	case "transition":
		l.Text = string(e.From) + " → " + string(e.To)
	case "rung_start":
		s.rungStart[e.Rung] = at
		s.rungActs[e.Rung] = 0
		l.Text = e.Rung + " started"
	case "rung_done":
		// The actions told how the rung went; say more only when they did
		// not (a rung cut short by a restart, a rung of pages only).
		if s.rungActs[e.Rung] > 0 && !strings.Contains(e.Reason, "interrupt") {
			delete(s.rungStart, e.Rung)
			return nil
		}
		l.Text = e.Rung + " finished: " + e.Reason
		if strings.Contains(e.Reason, "interrupt") {
			l.Text = e.Rung + " interrupted: " + e.Reason
			s.step(inc, e.Rung+" interrupted")
		}
		delete(s.rungStart, e.Rung)
	case "rung_skip":
		l.Text = e.Rung + " skipped: " + e.Reason
	case "page_failed":
		l.Text = e.Rung + ": " + e.Reason
	case "incident_resolved":
		l.Text = "incident " + e.Incident + " resolved"
		if start, ok := s.opened[e.Incident]; ok {
			l.Text += " after " + humanDuration(at.Sub(start))
		}
		if e.Reason != "" {
			l.Text += " (" + e.Reason + ")"
		}
		if len(e.Channels) > 0 {
			l.Text += "; “resolved” goes to " + strings.Join(e.Channels, ", ")
		}
		out := []storyLine{l}
		if steps := s.steps[e.Incident]; len(steps) > 0 {
			sum := storyLine{Time: at, Kind: "summary", Incident: e.Incident,
				Text: strings.Join(append(steps, at.Format("15:04:05")+" resolved"), " → ")}
			out = append(out, sum)
		}
		delete(s.steps, e.Incident)
		delete(s.opened, e.Incident)
		if s.open == e.Incident {
			s.open = ""
		}
		s.resolved = e.Incident
		return out
	case "pause":
		l.Text = "paused: " + e.Reason
		s.step(inc, "paused")
	case "resume":
		l.Text = "resumed: " + e.Reason
		if s.resumedBy != "" && at.Equal(s.resumedAt) {
			l.Text = "resumed by " + s.resumedBy + ": " + e.Reason
		}
		s.step(inc, "resumed")
	case "pause_expired":
		l.Text = "pause over: " + e.Reason
		s.step(inc, "pause over")
	case "ack":
		l.Text = "incident " + e.Incident + " acknowledged"
		if e.Reason != "" {
			l.Text += ": " + e.Reason
		}
		s.step(inc, "acknowledged")
	case "ack_cleared":
		l.Text = "acknowledgement cleared: " + e.Reason
		s.step(inc, "acknowledgement cleared")
	case "settle_start":
		l.Text = e.Rung + " settling: " + e.Reason
	case "settle_end":
		l.Text = e.Reason
	case "flap_start":
		l.Text = e.Probe + " is flapping: " + e.Reason
		s.step(inc, e.Probe+" flapping")
	case "flap_stop":
		l.Text = e.Probe + " no longer flaps: " + e.Reason
	case "unreachable", "rung_renamed":
		l.Text = e.Reason
	default:
		return nil
	}
	return []storyLine{l}
}

// step adds to an incident's summary.
func (s *story) step(incident, text string) {
	if incident == "" {
		return
	}
	if _, ok := s.steps[incident]; ok {
		s.steps[incident] = append(s.steps[incident], text)
	}
}

// humanDuration is a duration as people say it: "41 s", "2 min 5 s",
// "1 h 20 min".
func humanDuration(d time.Duration) string {
	if d >= 10*time.Second {
		d = d.Round(time.Second)
	}
	switch {
	case d < 10*time.Second:
		return strconv.FormatFloat(d.Round(100*time.Millisecond).Seconds(), 'f', -1, 64) + " s"
	case d < time.Minute:
		return strconv.Itoa(int(d.Round(time.Second)/time.Second)) + " s"
	case d < time.Hour:
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		if s == 0 || m >= 10 {
			return strconv.Itoa(m) + " min"
		}
		return fmt.Sprintf("%d min %d s", m, s)
	}
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	if m == 0 {
		return strconv.Itoa(h) + " h"
	}
	return fmt.Sprintf("%d h %d min", h, m)
}

// ago is how long ago t was, in whole seconds or coarser: "just now",
// "3 s ago", "2 min 5 s ago".
func ago(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	if d < time.Second {
		return "just now"
	}
	return humanDuration(d) + " ago"
}
