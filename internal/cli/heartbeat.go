package cli

import (
	"context"
	"os"
	"sync"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/heartbeat"
)

// heartbeats remembers the heartbeat() of every policy the daemon loaded,
// by hash, so that the pinger follows the policy in force through the
// daemon's published Snapshot (its PolicyHash) and the daemon itself
// knows nothing of it.
type heartbeats struct {
	mu     sync.Mutex
	byHash map[string]*engine.Heartbeat
	order  []string
}

// maxRemembered bounds the policies remembered: the one in force is always
// among the last few loaded.
const maxRemembered = 8

// wrap is the daemon's Load, noting each good policy's heartbeat.
func (h *heartbeats) wrap(load func() *engine.LoadResult) func() *engine.LoadResult {
	return func() *engine.LoadResult {
		res := load()
		if res.Policy == nil {
			return res
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.byHash == nil {
			h.byHash = map[string]*engine.Heartbeat{}
		}
		if _, ok := h.byHash[res.Policy.Hash]; !ok {
			h.order = append(h.order, res.Policy.Hash)
		}
		h.byHash[res.Policy.Hash] = res.Policy.Heartbeat
		for len(h.order) > maxRemembered {
			delete(h.byHash, h.order[0])
			h.order = h.order[1:]
		}
		return res
	}
}

func (h *heartbeats) current(hash string) *engine.Heartbeat {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byHash[hash]
}

// startHeartbeat runs the policy's dead-man ping beside the daemon, once
// every probe has reported since the start: before that the daemon is
// "starting", and its first ping would report a failure it does not know of.
func startHeartbeat(ctx context.Context, d *engine.Daemon, h *heartbeats, fx effect.Effects, childEnv []string, logger *log.Logger) {
	host, _ := os.Hostname()
	go func() {
		select {
		case <-d.Reported():
		case <-ctx.Done():
			return
		}
		heartbeat.Run(ctx, heartbeat.Options{
			Current:  func() *engine.Heartbeat { return h.current(d.Snapshot().PolicyHash) },
			Snapshot: d.Snapshot, Effects: fx, Env: childEnv,
			Host: host, Version: readBuildInfo().Version, Logger: logger,
		})
	}()
}
