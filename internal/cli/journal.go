package cli

import (
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

// journalCmd is `talon journal cut`: the records of a time window, as
// journal lines, to stdout, in full (compact records expanded: the excerpt
// stands on its own). A real incident becomes a fixture that `talon
// test` (testing.replay) and `talon replay` load. When the journal before
// the window replays faithfully through the policy (the one that wrote
// it), the excerpt begins with a checkpoint of that state, before its
// first fact, so that it too replays faithfully.
func (a *app) journalCmd(args []string) error {
	var since, until string
	rest, err := a.flags("journal", args, func(fs *flag.FlagSet) {
		fs.StringVar(&since, "since", "", "first time to keep")
		fs.StringVar(&until, "until", "", "last time to keep")
	})
	if err != nil {
		return err
	}
	if len(rest) == 0 || rest[0] != "cut" {
		return fail(2, "journal: the only subcommand is cut: talon journal cut [--since T] [--until T] [JOURNAL]")
	}
	if rest = rest[1:]; len(rest) > 1 {
		return fail(2, "journal cut takes at most one journal, got %d arguments", len(rest))
	}
	now := time.Now()
	from, err := whenFlag("--since", since, now)
	if err != nil {
		return err
	}
	to, err := whenFlag("--until", until, now)
	if err != nil {
		return err
	}
	var path string
	e, envErr := a.loadEnv()
	if len(rest) == 1 {
		path = journalPath(rest[0])
	} else {
		if envErr != nil {
			return envErr
		}
		path = filepath.Join(e.stateDir, journal.FileName)
	}
	// The replay that gives the checkpoint: only with a policy that loads.
	var rep *engine.Replayer
	if envErr == nil && !from.IsZero() {
		if res := e.load(); res.Err() == nil {
			rep = engine.NewReplayer(res.Policy, engine.ReplayOptions{})
		}
	}
	var werr error
	write := func(r engine.Record) {
		line, err := journal.Marshal(r)
		if err == nil {
			_, err = a.stdout.Write(line)
		}
		werr = err
	}
	warnings, bad, err := readJournal("journal cut", path, to, func(r engine.Record, where string) {
		if werr != nil {
			return
		}
		if !from.IsZero() && r.Time.Before(from) {
			if rep != nil {
				rep.Feed(r, where)
			}
			return
		}
		if rep != nil {
			if _, fact := engine.RecordFact(r); fact {
				if r.Type != "start" && r.Type != "checkpoint" {
					if ck, ok := rep.Checkpoint(r.Time); ok {
						write(ck)
					}
				}
				rep = nil
			}
		}
		if werr == nil {
			write(r)
		}
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	for _, w := range warnings {
		fmt.Fprintf(a.stderr, "journal cut: warning: %s\n", w)
	}
	if bad > 0 {
		return fail(1, "journal cut: %d bad lines skipped (see the warnings)", bad)
	}
	return nil
}
