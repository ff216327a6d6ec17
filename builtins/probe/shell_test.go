package probe

import (
	"slices"
	"testing"
)

func TestShellPrograms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		command string
		want    []string
	}{
		{"colima status", []string{"colima"}},
		{"echo hello | tr a-z A-Z", []string{"echo", "tr"}},
		{"! kubectl get nodes -o jsonpath='{..taints}' | grep -q disk-pressure", []string{"kubectl", "grep"}},
		{"colima stop --force >/dev/null 2>&1 || true; sleep 1; colima start && DOCKER_HOST=unix://x docker ps --format '{{.Names}}' >/dev/null",
			[]string{"colima", "true", "sleep", "docker"}},
		{"LANG=C talon-no-such-tool --x", []string{"talon-no-such-tool"}},
		{"if grep -q x /etc/hosts; then curl -s http://a; else wget -q http://b; fi", []string{"grep", "curl", "wget"}},
		{"for f in a b; do stat $f; done", []string{"stat"}},
		{"while read l; do echo $l; done < f", []string{"echo"}},
		{"n=$(cat /proc/loadavg | cut -d' ' -f1); test $n", []string{"cat", "cut", "test"}},
		{"echo `hostname` &>/dev/null & wait", []string{"echo", "hostname"}},
		{"exec redis-cli ping", []string{"redis-cli"}},
		{"command -v foo", nil},
		{"(cd /tmp && make) | tee log", []string{"make", "tee"}},
		{"{ uptime; } 2>&1 >|out", []string{"uptime"}},
		{`echo "a | b ; c" | sed 's/;/|/'`, []string{"echo", "sed"}},
		{"$SHELL -c x", nil},
		{"cd /x; ./run.sh # ; not-a-program", []string{"./run.sh"}},
		{"echo a\nprintf b", []string{"echo", "printf"}},
		{"echo a | echo b", []string{"echo"}},
	}
	for _, c := range cases {
		if got := ShellPrograms(c.command); !slices.Equal(got, c.want) {
			t.Errorf("%q: got %q, want %q", c.command, got, c.want)
		}
	}
}
