package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The reference in docs/ must be what the builtins say today.
func TestPolicyDocsUpToDate(t *testing.T) {
	root, _ := filepath.Abs("../..")
	var b strings.Builder
	if err := write(&b, root); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{"### `probe.exec`", "### `ssh.probe`", "### `kubectl.node_schedulable`", "### `notify.telegram`",
		"### `agent.run`", "### `exec.cmd`", "### `state.thresholds`", "### `rung`", "### `secret`", "### `incident`", "- `critical`:"} {
		if !strings.Contains(got, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
	have, err := os.ReadFile(filepath.Join(root, "docs", "policy.md"))
	if err != nil || string(have) != got {
		t.Fatalf("docs/policy.md is stale: run `go run ./hack/docgen > docs/policy.md`")
	}
}
