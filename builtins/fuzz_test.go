package builtins_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/talon-dev/talon/builtins"
)

// FuzzLoad feeds mutated policy sources to Load: it must return a policy or
// errors, never panic or hang. Seeds are the shipped policies and testdata.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.star")
	more, _ := filepath.Glob("../policies/*.star")
	examples, _ := filepath.Glob("../policies/*/*/talon.star")
	for _, path := range append(append(seeds, more...), examples...) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("probe.exec(\"a\", [\"true\"])\nladder(rung(\"log\", notify.log()))\n")
	f.Add("def f():\n    for i in range(1000000000):\n        pass\nf()\n")
	f.Add("load(\"talon.star\", \"x\")\n")
	for _, b := range bombs { // the memory and time bombs, at load and as functions
		f.Add(bombPolicy(b.body) + "bomb()\n")
		f.Add(bombPolicy(b.body) + "probe.func(\"b\", bomb)\nladder(rung(\"r\", when = bomb, do = bomb))\n")
	}
	f.Add("def f():\n    t = ()\n    for i in range(64):\n        t = (t, t)\n    return {t: 1}\nf()\n")
	f.Add("def f():\n    l = []\n    s = struct(x = l)\n    l.append(s)\n    return str(l)\nf()\n")
	cfg := testConfig(f)
	f.Fuzz(func(t *testing.T, src string) {
		fsys := fstest.MapFS{"talon.star": &fstest.MapFile{Data: []byte(src)}}
		res := builtins.Load("/fuzz", builtins.Options{Config: cfg, FS: fsys, MaxSteps: 100_000, RunMaxSteps: 10_000,
			MaxBytes: 4 << 20, RunMaxBytes: 1 << 20, Timeout: 5 * time.Second})
		if (res.Policy == nil) == (len(res.Errors) == 0) {
			t.Fatalf("policy=%v with %d errors", res.Policy != nil, len(res.Errors))
		}
		if res.Hash == "" {
			t.Fatal("no hash")
		}
		for _, e := range res.Errors {
			if e.Message == "" || strings.Contains(e.Message, "\n") || len(e.Message) > 4000 {
				t.Fatalf("error message not one bounded line: %+v", e)
			}
			// Every operation of a policy is bounded by the budgets: the
			// backstop (an abandoned load) must never be needed.
			if strings.Contains(e.Message, "did not stop within") {
				t.Fatalf("a load was abandoned: %s", e.Message)
			}
		}
	})
}
