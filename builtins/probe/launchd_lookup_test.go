//go:build linux || darwin

package probe

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// TestLaunchdLookup drives the lookup order (print gui/UID, print system,
// list) and the deadline against a stand-in launchctl that replays the
// recorded outputs in testdata/launchd, since launchd itself runs only on macOS.
func TestLaunchdLookup(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	fixtures, _ := filepath.Abs(filepath.Join("testdata", "launchd"))
	// Env: GUI, SYSTEM, LIST name the fixture each command prints (exit 0);
	// unset means launchctl's "not found" (exit 113). HANG sleeps.
	script := `#!/bin/sh
[ -n "$HANG" ] && exec sleep 30
echo "$*" >> "$CALLS"
case "$1 $2" in
"print gui/"*) f=$GUI ;;
"print system/"*) f=$SYSTEM ;;
"list "*) f=$LIST ;;
esac
if [ -n "$f" ]; then cat "` + fixtures + `/$f"; exit 0; fi
echo "Could not find service \"${2##*/}\" in domain for port" >&2
exit 113
`
	if err := os.WriteFile(filepath.Join(bin, "launchctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	uid := os.Getuid()
	cases := []struct {
		name   string
		env    []string
		passed bool
		output string
		calls  string
	}{
		{"gui agent", []string{"GUI=print-gui-running.txt"}, true, "running pid 1184 (gui/501)",
			fmt.Sprintf("print gui/%d/com.x", uid)},
		{"system daemon", []string{"SYSTEM=print-system-running.txt"}, true, "running pid 412 (system)",
			fmt.Sprintf("print gui/%d/com.x,print system/com.x", uid)},
		{"not running", []string{"GUI=print-gui-not-running.txt", "SYSTEM=print-system-running.txt"}, false,
			"com.x is not running in gui/501 (state = not running, last exit 1)", fmt.Sprintf("print gui/%d/com.x", uid)},
		{"list only", []string{"LIST=list-running.txt"}, true, "running pid 1184 (launchctl list)",
			fmt.Sprintf("print gui/%d/com.x,print system/com.x,list com.x", uid)},
		{"nowhere", nil, false,
			fmt.Sprintf(`launchd job com.x not found in gui/%d, system or launchctl list: Could not find service "com.x" in domain for port`, uid),
			fmt.Sprintf("print gui/%d/com.x,print system/com.x,list com.x", uid)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := filepath.Join(t.TempDir(), "calls")
			env := append([]string{"PATH=" + bin + ":/usr/bin:/bin", "CALLS=" + calls}, tc.env...)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			o := launchdLookup(ctx, &engine.ProbeEnv{Effects: effect.NewLive(), Env: env, Probe: &engine.Probe{Timeout: 5 * time.Second}}, "com.x")
			if o.Passed != tc.passed || o.Output != tc.output {
				t.Errorf("got passed=%v output=%q, want passed=%v output=%q", o.Passed, o.Output, tc.passed, tc.output)
			}
			got, _ := os.ReadFile(calls)
			if c := strings.ReplaceAll(strings.TrimSpace(string(got)), "\n", ","); c != tc.calls {
				t.Errorf("launchctl calls %q, want %q", c, tc.calls)
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		o := launchdLookup(ctx, &engine.ProbeEnv{Effects: effect.NewLive(), Env: []string{"PATH=" + bin + ":/usr/bin:/bin", "HANG=1"}, Probe: &engine.Probe{Timeout: time.Second}}, "com.x")
		if o.Passed || !o.TimedOut || !strings.HasPrefix(o.Output, "timeout after 1s") {
			t.Fatalf("got %+v", o)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("1s deadline took %v", took)
		}
	})
}
