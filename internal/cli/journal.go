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
// test` (testing.replay) and `talon replay` load.
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
	if len(rest) == 1 {
		path = journalPath(rest[0])
	} else {
		e, err := a.loadEnv()
		if err != nil {
			return err
		}
		path = filepath.Join(e.stateDir, journal.FileName)
	}
	var werr error
	warnings, bad, err := readJournal("journal cut", path, to, func(r engine.Record, _ string) {
		if werr != nil || (!from.IsZero() && r.Time.Before(from)) {
			return
		}
		line, err := journal.Marshal(r)
		if err == nil {
			_, err = a.stdout.Write(line)
		}
		werr = err
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
