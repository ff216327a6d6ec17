package engine

import (
	"context"
	"hash/fnv"
	"time"
)

// OffsetSlots is how many distinct start offsets the probes of one interval
// are spread over: enough that a large policy does not fork everything in
// the same millisecond, few enough that each launch (a goroutine, a journal
// record, one journal fsync, a wake-up) serves many probes.
const OffsetSlots = 16

// schedule sets when each probe is next due. On the first run a probe with
// its own interval starts at a stable offset (a hash of its name picks one
// of OffsetSlots+1 points from 0 to a tenth of its interval, at most 2 s), so
// a large policy is spread out and a restart spreads it the same way.
func (d *Daemon) schedule(now time.Time, first bool) {
	keep := map[string]bool{}
	for _, p := range d.policy().Probes {
		keep[p.Name] = true
		if due, ok := d.nextDue[p.Name]; ok && !first {
			// A shorter interval after a reload takes effect now, not after
			// the old, longer one.
			if soon := now.Add(d.interval(p)); soon.Before(due) {
				d.nextDue[p.Name] = soon
			}
			continue
		}
		var offset time.Duration
		if p.Every > 0 {
			h := fnv.New64a()
			h.Write([]byte(p.Name))
			window := min(p.Every/10, 2*time.Second)
			offset = window * time.Duration(h.Sum64()%(OffsetSlots+1)) / OffsetSlots
		}
		d.nextDue[p.Name] = now.Add(offset)
	}
	for name := range d.nextDue {
		if !keep[name] {
			delete(d.nextDue, name)
		}
	}
	d.noteEarliest()
}

// noteEarliest notes when the first probe is due; callers hold d.mu.
func (d *Daemon) noteEarliest() {
	d.earliest = time.Time{}
	for _, due := range d.nextDue {
		if d.earliest.IsZero() || due.Before(d.earliest) {
			d.earliest = due
		}
	}
}

func (d *Daemon) interval(p *Probe) time.Duration {
	if p.Every > 0 {
		return p.Every
	}
	if pol := d.policy(); pol.Interval > 0 {
		return pol.Interval
	}
	return d.opts.Interval
}

// untilNext is how long the loop may sleep: until the next probe that is
// due and not running, the core's wake or a pending save, whichever comes
// first. Nothing polls: an idle daemon wakes only when something is due.
func (d *Daemon) untilNext() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := d.wake
	for _, t := range []time.Time{d.saveDue, d.pubDue} {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	now := d.now()
	if d.earliest.After(now) {
		// No probe is due yet, in flight or not: the earliest is next.
		if next.IsZero() || d.earliest.Before(next) {
			next = d.earliest
		}
	} else {
		// A probe is due: the first due one that is not in flight.
		for name, due := range d.nextDue {
			if !d.core.InFlight(name) && (next.IsZero() || due.Before(next)) {
				next = due
			}
		}
	}
	if next.IsZero() {
		return time.Hour // nothing scheduled: a reload or a result rearms the timer
	}
	return max(next.Sub(now), 0)
}

// launchDue starts the probes that are due and not already running; one
// probe never overlaps itself.
func (d *Daemon) launchDue(ctx context.Context, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var due []*Probe
	for _, p := range d.policy().Probes {
		if t, ok := d.nextDue[p.Name]; ok && !now.Before(t) && !d.core.InFlight(p.Name) {
			due = append(due, p)
			d.nextDue[p.Name] = t.Add(d.interval(p))
			if d.nextDue[p.Name].Before(now) { // we fell behind: skip, never burst
				d.nextDue[p.Name] = now.Add(d.interval(p))
			}
		}
	}
	d.noteEarliest()
	if len(due) > 0 {
		d.launch(ctx, now, due)
	}
}

// launch runs probes now, scheduled ones or a settle window's re-probe.
// The launch is a fact: the core holds the ladder while a parent it depends
// on is in flight. Callers hold d.mu.
func (d *Daemon) launch(ctx context.Context, now time.Time, due []*Probe) {
	names := make([]string, len(due))
	for i, p := range due {
		names[i] = p.Name
	}
	d.feed(ctx, Fact{Kind: FactLaunch, At: now, Probes: names})
	runner := d.runner()
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		// Each result goes to the loop as soon as its probe finishes: one
		// slow probe never holds back the others' results or escalation.
		var all []Result
		runner.Stream(ctx, due, func(r Result) {
			all = append(all, r)
			select {
			case d.results <- []Result{r}:
			case <-ctx.Done():
			}
		})
		// One summary line per launched cycle, once all its probes are in.
		select {
		case d.batches <- all:
		case <-ctx.Done():
		}
	}()
}

func (d *Daemon) runner() *Runner {
	return &Runner{Effects: d.opts.Probes, Env: d.env(), Parallel: d.opts.Parallel, Now: d.clock.Now, Sem: d.sem}
}
