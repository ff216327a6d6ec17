package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

// followPoll is how often `talon events --follow` looks for new lines.
const followPoll = 500 * time.Millisecond

// events is `talon events`: the journal told as a story.
func (a *app) events(args []string) error {
	var asJSON, follow, utc bool
	var since, until, incident string
	rest, err := a.flags("events", args, func(fs *flag.FlagSet) {
		fs.StringVar(&since, "since", "", "only what happened since `WHEN`: a duration before now (2h, 30m, 1d) or a time")
		fs.StringVar(&until, "until", "", "only what happened until `WHEN` (same forms as --since)")
		fs.StringVar(&incident, "incident", "", "only what belongs to incident `ID`")
		fs.BoolVar(&follow, "follow", false, "keep printing as the daemon writes")
		fs.BoolVar(&asJSON, "json", false, "JSON lines")
		fs.BoolVar(&utc, "utc", false, "print times in UTC")
	})
	if err != nil {
		return err
	}
	if len(rest) > 1 {
		return fail(2, "events takes at most one journal (journal.jsonl or its directory), got %d; see talon help events", len(rest))
	}
	now := time.Now()
	loc := time.Local
	if utc {
		loc = time.UTC
	}
	var opts journal.ScanOptions
	if opts.Since, err = parseWhen(since, now, loc); err != nil {
		return fail(2, "events --since: %v", err)
	}
	if opts.Until, err = parseWhen(until, now, loc); err != nil {
		return fail(2, "events --until: %v", err)
	}
	path := ""
	if len(rest) == 1 {
		path = rest[0]
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			path = journal.Path(path)
		}
	} else {
		e, err := a.loadEnv()
		if err != nil {
			return err
		}
		path = journal.Path(e.stateDir)
	}
	// Only events, actions, reloads, starts and stops tell the story; of the
	// cycles (most of the journal) only the re-probes after a rung.
	opts.Want = func(typ string, line []byte) bool {
		return typ != "cycle" || strings.Contains(string(line), `"rung":"`)
	}

	out := &storyPrinter{a: a, json: a.wantJSON(asJSON), loc: loc}
	st := newStory()
	var buffered []storyLine
	var span incidentSpan
	emit := func(r engine.Record) error {
		for _, l := range st.add(r) {
			if incident == "" {
				if err := out.print(l); err != nil {
					return err
				}
				continue
			}
			span.see(l, incident)
			buffered = append(buffered, l)
		}
		return nil
	}
	res, err := journal.ScanWindow(path, opts, emit)
	if errors.Is(err, fs.ErrNotExist) {
		return fail(1, "no journal at %s yet: the daemon writes it (see --state-dir, --config)", path)
	}
	if err != nil {
		return err
	}
	defer res.Cursor.Close()
	if incident != "" {
		if !span.found && !follow {
			return fail(1, "events: no incident %q in %s", incident, path)
		}
		for _, l := range buffered {
			if span.has(l, incident) {
				if err := out.print(l); err != nil {
					return err
				}
			}
		}
		buffered = nil
	}
	if !follow || res.Cursor == nil {
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		err := res.Cursor.Next(func(r engine.Record) error {
			if err := emit(r); err != nil {
				return err
			}
			for _, l := range buffered {
				if span.has(l, incident) {
					if err := out.print(l); err != nil {
						return err
					}
				}
			}
			buffered = buffered[:0]
			return nil
		})
		if err != nil {
			return err
		}
	}
}

// incidentSpan is the time an incident was open, for lines that carry no
// incident of their own (the probe failure that opened it, a reload while
// it was open).
type incidentSpan struct {
	found      bool
	start, end time.Time // end zero: still open
}

func (s *incidentSpan) see(l storyLine, id string) {
	if l.Incident != id {
		return
	}
	if !s.found || l.Time.Before(s.start) {
		s.start = l.Time
	}
	s.found = true
	if l.Kind == "incident_resolved" {
		s.end = l.Time
	}
}

func (s *incidentSpan) has(l storyLine, id string) bool {
	if l.Incident != "" {
		return l.Incident == id
	}
	return s.found && !l.Time.Before(s.start) && (s.end.IsZero() || !l.Time.After(s.end))
}

// storyPrinter writes story lines as text (a date line whenever the day
// changes, then "15:04:05  text") or as JSON lines.
type storyPrinter struct {
	a    *app
	json bool
	loc  *time.Location
	day  string
}

func (p *storyPrinter) print(l storyLine) error {
	if p.json {
		enc := json.NewEncoder(p.a.stdout)
		enc.SetEscapeHTML(false)
		l.Time = l.Time.In(p.loc)
		return enc.Encode(l)
	}
	t := l.Time.In(p.loc)
	var b strings.Builder
	if day := t.Format("2006-01-02 (Mon, MST)"); day != p.day {
		p.day = day
		b.WriteString("── " + day + "\n")
	}
	switch {
	case l.Kind == "summary":
		b.WriteString("          ↳ " + l.Text + "\n")
	default:
		mark := "  "
		if l.OK != nil && !*l.OK {
			mark = " ✗"
		}
		fmt.Fprintf(&b, "%s%s %s\n", t.Format("15:04:05"), mark, l.Text)
	}
	_, err := p.a.stdout.Write([]byte(b.String()))
	return err
}

// parseWhen reads --since/--until: "" (unbounded), a duration before now
// ("2h", "90m", "1d", "1d12h"), or a time: RFC 3339, "2006-01-02 15:04[:05]",
// "2006-01-02T15:04[:05]", "2006-01-02" (midnight), "15:04[:05]" (today, or
// yesterday when that is still to come), all in loc unless they say a zone.
func parseWhen(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := parseAgo(s); ok {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			n := now.In(loc)
			at := time.Date(n.Year(), n.Month(), n.Day(), t.Hour(), t.Minute(), t.Second(), 0, loc)
			if at.After(n) {
				at = at.AddDate(0, 0, -1)
			}
			return at, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (2h, 30m, 1d) nor a time (15:04, 2006-01-02 15:04, RFC 3339)", s)
}

// parseAgo reads a Go duration with an optional leading count of days ("1d",
// "2d6h").
func parseAgo(s string) (time.Duration, bool) {
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 {
			return 0, false
		}
		days, s = time.Duration(n)*24*time.Hour, s[i+1:]
		if s == "" {
			return days, true
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false
	}
	return days + d, true
}
