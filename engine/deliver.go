package engine

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Delivery is what became of one message on one channel.
type Delivery struct {
	Channel string `json:"channel"`
	OK      bool   `json:"ok"`
	// Error is the channel's error when it did not accept the message.
	Error string `json:"error,omitempty"`
}

// Deliver is the one way a message reaches people: a rung's page, a
// "resolved" message and `talon drill` all go through it. It fans msg out to
// every pager at once (as Alertmanager's notify stage fans out to its
// integrations), each channel bounded by ctx and by its own timeout, and
// returns one Delivery per pager, in the order of pagers. A channel that
// panics is a failed delivery, never a crash. onEach, when set, is called as
// each channel answers, from that channel's goroutine (one call at a time),
// so the caller can record every channel's fate the moment it is known.
func Deliver(ctx context.Context, env *ActionEnv, pagers []Pager, msg Message, onEach func(Delivery)) []Delivery {
	out := make([]Delivery, len(pagers))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, p := range pagers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := Delivery{Channel: p.Channel()}
			err := func() (err error) {
				defer func() {
					if v := recover(); v != nil {
						err = fmt.Errorf("internal error in %s: %v", p.Channel(), v)
					}
				}()
				return p.Send(ctx, env, msg)
			}()
			if err != nil {
				d.Error = err.Error()
			} else {
				d.OK = true
			}
			out[i] = d
			if onEach != nil {
				mu.Lock()
				defer mu.Unlock()
				onEach(d)
			}
		}()
	}
	wg.Wait()
	return out
}

// Accepted lists, sorted and without repeats, the channels that accepted.
func Accepted(ds []Delivery) []string {
	var out []string
	for _, d := range ds {
		if d.OK {
			out = union(out, []string{d.Channel})
		}
	}
	sort.Strings(out)
	return out
}
