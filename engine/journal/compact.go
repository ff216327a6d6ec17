package journal

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine"
)

// The compact encoding (format 4). Most of a journal is cycle records that
// repeat what the previous cycle said: the same probes passing with the
// same output. The writer therefore records, for each probe, only what
// changed since that probe's previous result in the same file, and a launch
// of the same probes as the file's previous launch as just that. The reader
// expands these back into whole records, so everything past the reader (the
// decision core, replay, tests) sees exactly the records of the plain
// encoding.
//
// Every file stands on its own: a probe's first result in a file is written
// in full (every field present), and so is every SnapshotEvery-th one after
// it, so a reader that starts in the middle of a file (a seek) or skipped a
// corrupt line picks the probe up again at its next full result.

// SnapshotEvery is how many results of a probe in a row may be written as
// changes before one is written in full again.
const SnapshotEvery = 1000

// wire is a journal line as written: a record, plus the compact fields.
type wire struct {
	engine.Record
	// Delta replaces Results on a compact cycle record: one element per
	// result, in order.
	Delta []delta `json:"delta,omitempty"`
	// Same, on a launch record without Probes, says the probes are those of
	// the file's previous launch record.
	Same bool `json:"same,omitempty"`
}

// delta is one result of a compact cycle record: its probe's name and the
// fields that differ from that probe's previous result in the file. A
// field left out is unchanged; the result's time is At when given, else
// Ago before the record's time, else the same distance before it as the
// previous result was before its record. An element with every field
// present is a full result and needs nothing earlier.
type delta struct {
	Name       string             `json:"name"`
	Passed     *bool              `json:"passed,omitempty"`
	Output     *string            `json:"output,omitempty"`
	DurationMS *int64             `json:"duration_ms,omitempty"`
	Critical   *bool              `json:"critical,omitempty"`
	Warning    *bool              `json:"warning,omitempty"`
	TimedOut   *bool              `json:"timed_out,omitempty"`
	Detail     *map[string]string `json:"detail,omitempty"`
	Ago        *int64             `json:"ago,omitempty"`
	At         *time.Time         `json:"at,omitempty"`
}

// full reports whether d says everything about its result.
func (d *delta) full() bool {
	return d.Passed != nil && d.Output != nil && d.DurationMS != nil && d.Critical != nil && d.Warning != nil &&
		d.TimedOut != nil && d.Detail != nil && (d.Ago != nil || d.At != nil)
}

// missing names the fields d leaves out, for an error.
func (d *delta) missing() string {
	var m []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"passed", d.Passed != nil}, {"output", d.Output != nil}, {"duration_ms", d.DurationMS != nil},
		{"critical", d.Critical != nil}, {"warning", d.Warning != nil}, {"timed_out", d.TimedOut != nil},
		{"detail", d.Detail != nil}, {"ago or at", d.Ago != nil || d.At != nil}} {
		if !f.set {
			m = append(m, f.name)
		}
	}
	return strings.Join(m, ", ")
}

// noBase is a compact record that builds on an earlier line of its file
// that the reader does not have.
type noBase struct{ msg string }

func (e *noBase) Error() string { return e.msg }

func isNoBase(err error) bool {
	var nb *noBase
	return errors.As(err, &nb)
}

// last is what the compact encoding remembers of a probe: its previous
// result and how long before its record's time it was taken.
type last struct {
	r   engine.Result
	ago time.Duration
	n   int // results written as changes since the last full one
}

// codec is the per-file memory of both sides of the compact encoding.
type codec struct {
	probes map[string]*last
	launch []string // the previous launch's probes
	seen   bool     // a launch was seen

	// scratch for decode
	prevs []*last
	lasts []last
}

func (c *codec) reset() { c.probes, c.launch, c.seen = nil, nil, false }

// encode turns r into the line to write, compact where it can be, and
// returns the memory to keep once that line is written (commit).
func (c *codec) encode(r engine.Record) (*wire, func()) {
	w := &wire{Record: r}
	var commit []func()
	switch {
	case r.Type == "cycle" && len(r.Results) > 0 && !slices.ContainsFunc(r.Results, func(x engine.Result) bool { return x.Name == "" }):
		t := r.Time.Round(0)
		w.Delta = make([]delta, len(r.Results))
		w.Results = nil
		pending := map[string]*last{} // earlier results of this record
		for i := range r.Results {
			res := r.Results[i]
			res.At = res.At.Round(0)
			ago := t.Sub(res.At)
			prev := pending[res.Name]
			if prev == nil {
				prev = c.probes[res.Name]
			}
			if prev != nil && prev.n+1 >= SnapshotEvery {
				prev = nil
			}
			w.Delta[i] = changes(prev, res, t, ago)
			n := 0
			if prev != nil {
				n = prev.n + 1
			}
			res.Detail = maps.Clone(res.Detail)
			pending[res.Name] = &last{r: res, ago: ago, n: n}
		}
		commit = append(commit, func() {
			if c.probes == nil {
				c.probes = map[string]*last{}
			}
			for name, l := range pending {
				c.probes[name] = l
			}
		})
	case r.Type == "cycle":
		// Written plain (a result without a name): the reader takes its
		// results as the probes' latest all the same.
		t := r.Time.Round(0)
		pending := map[string]*last{}
		for _, res := range r.Results {
			res.At = res.At.Round(0)
			res.Detail = maps.Clone(res.Detail)
			pending[res.Name] = &last{r: res, ago: t.Sub(res.At)}
		}
		commit = append(commit, func() {
			if c.probes == nil {
				c.probes = map[string]*last{}
			}
			for name, l := range pending {
				c.probes[name] = l
			}
		})
	case r.Type == "launch":
		if len(r.Probes) > 0 && c.seen && slices.Equal(c.launch, r.Probes) {
			w.Probes, w.Same = nil, true
		}
		probes := slices.Clone(r.Probes)
		commit = append(commit, func() { c.launch, c.seen = probes, true })
	}
	return w, func() {
		for _, f := range commit {
			f()
		}
	}
}

// changes is res as a delta against prev (nil: in full). t is the record's
// time and ago how long before it res was taken.
func changes(prev *last, res engine.Result, t time.Time, ago time.Duration) delta {
	d := delta{Name: res.Name}
	if prev == nil || prev.r.Passed != res.Passed {
		d.Passed = &res.Passed
	}
	if prev == nil || prev.r.Output != res.Output {
		d.Output = &res.Output
	}
	if prev == nil || prev.r.DurationMS != res.DurationMS {
		d.DurationMS = &res.DurationMS
	}
	if prev == nil || prev.r.Critical != res.Critical {
		d.Critical = &res.Critical
	}
	if prev == nil || prev.r.Warning != res.Warning {
		d.Warning = &res.Warning
	}
	if prev == nil || prev.r.TimedOut != res.TimedOut {
		d.TimedOut = &res.TimedOut
	}
	if prev == nil || !maps.Equal(prev.r.Detail, res.Detail) {
		m := res.Detail
		if m == nil {
			m = map[string]string{}
		}
		d.Detail = &m
	}
	// The time: as a distance when that gives back exactly the time the
	// plain encoding would have written (same instant, same zone offset).
	exact := t.Add(-ago).Format(time.RFC3339Nano) == res.At.Format(time.RFC3339Nano)
	switch {
	case !exact:
		at := res.At
		d.At = &at
	case prev == nil || prev.ago != ago:
		ns := int64(ago)
		d.Ago = &ns
	}
	return d
}

// decode expands w into the record it stands for, with what the file said
// before it. On an error nothing of w is remembered.
func (c *codec) decode(w *wire) (engine.Record, error) {
	r := w.Record
	if w.Same {
		if r.Type != "launch" || len(r.Probes) > 0 {
			return r, errors.New(`"same" is only for a launch record without probes`)
		}
		if !c.seen {
			return r, &noBase{`launch record says "same" probes, but the file has no earlier launch`}
		}
	}
	if w.Delta != nil {
		if r.Type != "cycle" {
			return r, fmt.Errorf("%s record with a delta (only cycle records have one)", r.Type)
		}
		if r.Results != nil {
			return r, errors.New("cycle record with both results and delta")
		}
		if len(w.Delta) == 0 {
			return r, errors.New("cycle record with an empty delta")
		}
		rs := make([]engine.Result, len(w.Delta))
		// What each element builds on: the probe's entry in c.probes
		// (found once, updated in place below), or an earlier element of
		// this record for the same probe. Nothing is remembered until
		// every element holds.
		c.prevs = append(c.prevs[:0], make([]*last, len(w.Delta))...)
		c.lasts = append(c.lasts[:0], make([]last, len(w.Delta))...)
		prevs, lasts := c.prevs, c.lasts
		for i := range w.Delta {
			d := &w.Delta[i]
			if d.Name == "" {
				return r, fmt.Errorf("delta element %d has no name", i+1)
			}
			if d.Ago != nil && d.At != nil {
				return r, fmt.Errorf("delta for probe %q has both ago and at", d.Name)
			}
			p := c.probes[d.Name]
			prevs[i] = p
			prev := p
			for k := i - 1; k >= 0; k-- { // the same probe twice in one batch
				if prevs[k] == p && (p != nil || w.Delta[k].Name == d.Name) {
					prev = &lasts[k]
					break
				}
			}
			if prev == nil && !d.full() {
				return r, &noBase{fmt.Sprintf("delta for probe %q leaves out %s, but the file has no earlier full result of it", d.Name, d.missing())}
			}
			res, ago := apply(prev, d, r.Time)
			rs[i], lasts[i] = res, last{r: res, ago: ago}
		}
		if c.probes == nil {
			c.probes = map[string]*last{}
		}
		for i := range w.Delta {
			if prevs[i] != nil {
				*prevs[i] = lasts[i]
			} else {
				l := lasts[i]
				if p := c.probes[w.Delta[i].Name]; p != nil {
					*p = l // a new probe twice in one batch
				} else {
					c.probes[w.Delta[i].Name] = &l
				}
			}
		}
		r.Results = rs
	} else if r.Type == "cycle" {
		// A plain cycle record (formats 1–3, or cut by `talon journal
		// cut`) is a base for later deltas too.
		for _, res := range r.Results {
			if c.probes == nil {
				c.probes = map[string]*last{}
			}
			c.probes[res.Name] = &last{r: res, ago: r.Time.Sub(res.At)}
		}
	}
	if w.Same {
		r.Probes = slices.Clone(c.launch)
	} else if r.Type == "launch" {
		c.launch, c.seen = slices.Clone(r.Probes), true
	}
	return r, nil
}

// apply is prev changed by d: the result d stands for, and its distance
// before t.
func apply(prev *last, d *delta, t time.Time) (engine.Result, time.Duration) {
	var res engine.Result
	var ago time.Duration
	if prev != nil {
		res, ago = prev.r, prev.ago
	}
	res.Name = d.Name
	if d.Passed != nil {
		res.Passed = *d.Passed
	}
	if d.Output != nil {
		res.Output = *d.Output
	}
	if d.DurationMS != nil {
		res.DurationMS = *d.DurationMS
	}
	if d.Critical != nil {
		res.Critical = *d.Critical
	}
	if d.Warning != nil {
		res.Warning = *d.Warning
	}
	if d.TimedOut != nil {
		res.TimedOut = *d.TimedOut
	}
	if d.Detail != nil {
		res.Detail = nil
		if len(*d.Detail) > 0 {
			res.Detail = maps.Clone(*d.Detail)
		}
	}
	switch {
	case d.At != nil:
		res.At = *d.At
		ago = t.Sub(res.At)
	case d.Ago != nil:
		ago = time.Duration(*d.Ago)
		res.At = t.Add(-ago)
	default:
		res.At = t.Add(-ago)
	}
	return res, ago
}
