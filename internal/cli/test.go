package cli

import (
	"flag"
	"regexp"
	"runtime"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/policies"
)

// test runs the *_test.star files of a policy: DIR, else the policy in use
// (the embedded default's own tests when there is none).
func (a *app) test(args []string) error {
	var run string
	var verbose bool
	rest, err := a.flags("test", args, func(fs *flag.FlagSet) {
		fs.StringVar(&run, "run", "", "run only the tests whose name matches this regular expression")
		fs.BoolVar(&verbose, "v", false, "report every test, passing or not")
	})
	if err != nil {
		return err
	}
	if len(rest) > 1 {
		return fail(2, "test takes at most one policy directory, got %d arguments; see talon --help", len(rest))
	}
	e, err := a.loadEnv()
	if err != nil {
		return err
	}
	opts := builtins.TestOptions{Options: builtins.Options{Config: e.cfg, GOOS: runtime.GOOS}, Verbose: verbose, Out: a.stdout}
	if run != "" {
		if opts.Run, err = regexp.Compile(run); err != nil {
			return fail(2, "test --run: %v", err)
		}
	}
	dir := e.policyDir
	if len(rest) == 1 {
		dir = config.ExpandHome(rest[0], homeDir())
	}
	if dir == "" {
		dir = "(embedded default)"
		opts.FS = policies.DefaultWithTests()
	}
	rep, err := builtins.RunTests(dir, opts)
	if err != nil {
		return fail(1, "test: %s", oneLine(err.Error()))
	}
	if rep.Failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}
