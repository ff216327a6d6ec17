package builtins_test

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

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
	cfg := testConfig(f)
	f.Fuzz(func(t *testing.T, src string) {
		fsys := fstest.MapFS{"talon.star": &fstest.MapFile{Data: []byte(src)}}
		res := builtins.Load("/fuzz", builtins.Options{Config: cfg, FS: fsys, MaxSteps: 100_000, RunMaxSteps: 10_000})
		if (res.Policy == nil) == (len(res.Errors) == 0) {
			t.Fatalf("policy=%v with %d errors", res.Policy != nil, len(res.Errors))
		}
		if res.Hash == "" {
			t.Fatal("no hash")
		}
		for _, e := range res.Errors {
			if e.Message == "" {
				t.Fatalf("empty error message: %+v", e)
			}
		}
	})
}
