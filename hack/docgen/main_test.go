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

// The configuration reference in docs/ must be what the config struct says
// today: keys, types, defaults, units, restart tags, doc comments.
func TestConfigDocsUpToDate(t *testing.T) {
	root, _ := filepath.Abs("../..")
	var b strings.Builder
	if err := writeConfig(&b, root); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"| `check_interval_secs` | integer | `60` | seconds | reload | How often probes run that set no every= of their own. |",
		"| `state_dir` | string | `\"~/.local/state/talon\"` |  | **restart** |",
		"## `[health]`",
		"| `allowed_hosts` | array of strings | (none) |  | **restart** |",
		"| `port` | integer | `3111` |  | **restart** |",
		"| `lease_command` | array of strings | `[\"secrets\", \"lease\", \"{name}\", \"--ttl\", \"30m\"]` |  | reload |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
	if strings.Contains(got, "|  |\n") {
		t.Errorf("a key without a description:\n%s", got)
	}
	have, err := os.ReadFile(filepath.Join(root, "docs", "config.md"))
	if err != nil || string(have) != got {
		t.Fatalf("docs/config.md is stale: run `go run ./hack/docgen -config > docs/config.md`")
	}
}
