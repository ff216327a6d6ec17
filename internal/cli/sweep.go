package cli

import (
	"strconv"
	"strings"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/text"
)

// sweepOrphans makes the daemon's instance, whose commands carry its
// marker and are recorded while in flight, and kills what the commands of
// the previous daemon of this state dir left running when it died (kill -9,
// a crash): hung probes, a heal cut short, their setsid'd children. The
// caller holds the state dir's lock, so no other daemon of it runs, and no
// command of this one has started yet. One line in the log when it found
// something. Without an instance (the state dir refuses the record) the
// daemon runs all the same, its commands just not swept after a crash.
func sweepOrphans(stateDir string, logger *log.Logger) *effect.Instance {
	in, err := effect.NewInstance(stateDir)
	if err != nil {
		logger.Warn("commands are not recorded: what they leave running after a crash is not swept", "err", err)
		return nil
	}
	killed, err := in.Sweep(effect.SweepGrace)
	if err != nil {
		logger.Warn("sweep of what a dead daemon's commands left running", "err", err)
	}
	if len(killed) > 0 {
		pids := make([]string, len(killed))
		var cmds []string
		for i, o := range killed {
			pids[i] = strconv.Itoa(o.PID)
			if i < 8 {
				cmds = append(cmds, text.Runes(o.Command, 60))
			}
		}
		if len(killed) > len(cmds) {
			cmds = append(cmds, "+"+strconv.Itoa(len(killed)-len(cmds))+" more")
		}
		logger.Warn("killed what the commands of a dead daemon left running", "count", len(killed),
			"pids", strings.Join(pids, ","), "commands", strings.Join(cmds, "; "))
	}
	return in
}

// liveEffects are the daemon's real effects: its commands carry the
// instance's marker and are recorded for the sweep.
func liveEffects(in *effect.Instance) *effect.Live {
	l := effect.NewLive()
	l.Instance = in
	return l
}
