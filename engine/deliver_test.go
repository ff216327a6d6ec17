package engine

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type scriptedPager struct {
	name  string
	delay time.Duration
	err   error
	panic bool
}

func (p scriptedPager) Describe() string   { return p.name }
func (p scriptedPager) Programs() []string { return nil }
func (p scriptedPager) Channel() string    { return p.name }
func (p scriptedPager) Run(ctx context.Context, env *ActionEnv) ActionResult {
	return RunPager(ctx, p, env)
}
func (p scriptedPager) Send(ctx context.Context, _ *ActionEnv, _ Message) error {
	if p.panic {
		panic("boom")
	}
	select {
	case <-time.After(p.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.err
}

// Deliver fans out at once: a slow channel does not hold the others back,
// every channel's fate is reported in order and as it is known, and a
// panicking channel is a failed delivery.
func TestDeliverFansOutAndReportsEachChannel(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		pagers := []Pager{
			scriptedPager{name: "slow", delay: 10 * time.Second},
			scriptedPager{name: "tg", delay: time.Second},
			scriptedPager{name: "broken", err: errors.New("HTTP 500")},
			scriptedPager{name: "crash", panic: true},
		}
		var mu sync.Mutex
		var seen []string
		start := time.Now()
		got := Deliver(context.Background(), &ActionEnv{}, pagers, Message{Kind: "sos"}, func(d Delivery) {
			mu.Lock()
			seen = append(seen, d.Channel+"@"+time.Since(start).String())
			mu.Unlock()
		})
		if took := time.Since(start); took != 10*time.Second {
			t.Fatalf("delivery took %v: the channels did not run at once", took)
		}
		want := []Delivery{{Channel: "slow", OK: true}, {Channel: "tg", OK: true}, {Channel: "broken", Error: "HTTP 500"},
			{Channel: "crash", Error: "internal error in crash: boom"}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("deliveries %+v", got)
		}
		sort.Strings(seen)
		if !reflect.DeepEqual(seen, []string{"broken@0s", "crash@0s", "slow@10s", "tg@1s"}) {
			t.Fatalf("reported as known: %v", seen)
		}
		if a := Accepted(got); !reflect.DeepEqual(a, []string{"slow", "tg"}) {
			t.Fatalf("accepted %v", a)
		}
	})
}
