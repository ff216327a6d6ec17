package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryKeepsMethodElimination guards the daemon's memory budget (issue
// 12: 15 MiB resident when idle, most of it the binary's own pages). When
// any reachable code calls a method by name through reflection
// (reflect.Value.MethodByName, as text/template's Execute does), the linker
// must keep every exported method of every type: the binary grew by 2.2 MB
// and the idle daemon by 1.9 MiB. Render a template-like file with Go code
// instead, or keep such code out of the daemon's binary.
func TestBinaryKeepsMethodElimination(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "tool", "nm", talonBin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		switch f[len(f)-1] {
		case "reflect.Value.MethodByName", "reflect.Value.Method", "reflect.(*rtype).MethodByName":
			t.Errorf("the talon binary links %s: some reachable code calls methods by name through reflection, and the linker keeps every exported method (find it with: go build -ldflags=-dumpdep ./cmd/talon 2>&1 | grep -B5 %s)", f[len(f)-1], f[len(f)-1])
		}
	}
}
