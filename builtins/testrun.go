package builtins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/bound"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/fsperm"
)

// TestOptions configure RunTests.
type TestOptions struct {
	Options
	// Run, when set, selects the tests whose name it matches.
	Run *regexp.Regexp
	// Verbose reports passing tests too.
	Verbose bool
	// Out receives the report.
	Out io.Writer
}

// TestReport counts the tests RunTests ran.
type TestReport struct {
	Passed, Failed int
}

// DefaultTestSteps is the step budget of one test function.
const DefaultTestSteps uint64 = 100_000_000

// testLimits bound one test function: its steps, the values it builds
// (a test scripts many cycles: more room than a run-phase call) and its
// wall-clock time, so a runaway test fails with file:line instead of
// hanging `talon test`.
var testLimits = bound.Limits{Steps: DefaultTestSteps, Bytes: 512 << 20, Time: time.Minute}

// testAdvice completes the message of a test that went over testLimits.
var testAdvice = map[string]string{"steps": "shorten the test", "memory": "build smaller values in the test", "time": "shorten the test"}

// RunTests runs the *_test.star files of the policy in dir, as `talon test`
// does, and writes a report like `go test`'s to opts.Out: a "--- FAIL"
// block per failed test with each failure's file:line, then "ok" or
// "FAIL", then "N passed, N failed". The policy is loaded once; every test
// drives the decision core through testing.watchdog from a fresh state. An
// error (the policy does not load, a test file does not parse) is returned
// with its file:line.
func RunTests(dir string, opts TestOptions) (TestReport, error) {
	var rep TestReport
	res := Load(dir, opts.Options)
	if err := res.Err(); err != nil {
		return rep, errors.New(res.ErrorText())
	}
	fsys := opts.FS
	if fsys == nil {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return rep, fmt.Errorf("test %s: %w", dir, err)
		}
		defer root.Close()
		fsys = root.FS()
	}
	files, err := fs.Glob(fsys, "*_test.star")
	if err != nil {
		return rep, err
	}
	sort.Strings(files)
	if len(files) == 0 {
		return rep, fmt.Errorf("no *_test.star files in %s", dir)
	}
	names := map[string]bool{}
	for _, p := range res.Policy.Probes {
		names[p.Name] = true
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	for _, file := range files {
		if err := runTestFile(fsys, dir, file, res.Policy, names, opts, out, &rep); err != nil {
			return rep, err
		}
	}
	if rep.Failed > 0 {
		fmt.Fprintf(out, "FAIL\t%s\n", dir)
	} else {
		fmt.Fprintf(out, "ok\t%s\n", dir)
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", rep.Passed, rep.Failed)
	return rep, nil
}

func runTestFile(fsys fs.FS, dir, file string, pol *engine.Policy, names map[string]bool, opts TestOptions, out io.Writer, rep *TestReport) error {
	// A loader of its own gives the test file the policy's builtins and
	// load(), so it can load the policy's libraries and test their
	// functions; what those declare goes to a collector nobody reads.
	l := &loader{opts: withDefaults(opts.Options), dir: dir, fsys: fsys, modules: map[string]*module{}}
	if opts.FS == nil {
		if abs, err := filepath.Abs(dir); err == nil {
			l.dir = abs
		}
	}
	l.rt = &runner{maxSteps: l.opts.RunMaxSteps, maxBytes: l.opts.RunMaxBytes, probes: names}
	l.c = newCollector(l.opts.Config, dir, l.rt)
	c := l.c
	c.perms = fsperm.New(l.opts.Config.StrictModes, func(e *fsperm.Error) { c.warn("%s", e.Warning()) })
	// Read like a policy file: a test file is evaluated too, so strict
	// modes apply to it.
	src, err := l.read(file)
	if err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	pre := starlark.StringDict{}
	for k, v := range l.predeclared() {
		pre[k] = v
	}
	pre["testing"] = Testing
	thread := &starlark.Thread{Name: "test " + file, Load: l.loadModule}
	star.SetCollector(thread, l.c)
	l.modules[file] = &module{}
	l.stack = []string{file}
	var globals starlark.StringDict
	err = bound.Run(context.Background(), thread, bound.Limits{Steps: l.opts.MaxSteps, Bytes: l.opts.MaxBytes, Time: l.opts.Timeout}, func() error {
		var err error
		globals, err = bound.ExecFile(FileOptions(), thread, file, src, pre)
		return err
	})
	if err != nil {
		return errors.New(posText(l.posErrors(err)))
	}
	tests := sortedFuncs(globals)
	if len(tests) == 0 {
		fmt.Fprintf(out, "%s: no test_ functions\n", file)
	}
	for _, fn := range tests {
		if opts.Run != nil && !opts.Run.MatchString(fn.Name()) {
			continue
		}
		tr := &testRun{pol: pol, dir: dir, rt: l.rt}
		t := &starlark.Thread{Name: fn.Name(), Load: l.loadModule}
		t.SetLocal(testRunKey, tr)
		star.SetRun(t, &star.RunEnv{})
		t.Print = func(_ *starlark.Thread, msg string) { fmt.Fprintf(out, "    %s\n", msg) }
		if opts.Verbose {
			fmt.Fprintf(out, "=== RUN   %s\n", fn.Name())
		}
		start := time.Now()
		if err := bound.Run(context.Background(), t, testLimits, func() error {
			_, err := starlark.Call(t, fn, nil, nil)
			return err
		}); err != nil {
			var ee *starlark.EvalError
			if errors.As(err, &ee) {
				tr.failures = append(tr.failures, evalPosError(err, ee, testAdvice).Error())
			} else {
				tr.failures = append(tr.failures, err.Error())
			}
		}
		took := time.Since(start).Seconds()
		if len(tr.failures) > 0 {
			rep.Failed++
			fmt.Fprintf(out, "--- FAIL: %s (%s, %.2fs)\n", fn.Name(), path.Base(file), took)
			for _, f := range tr.failures {
				fmt.Fprintf(out, "    %s\n", strings.ReplaceAll(f, "\n", "\n    "))
			}
			continue
		}
		rep.Passed++
		if opts.Verbose {
			fmt.Fprintf(out, "--- PASS: %s (%.2fs)\n", fn.Name(), took)
		}
	}
	return nil
}

func posText(errs []*engine.PosError) string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return strings.Join(s, "\n")
}
