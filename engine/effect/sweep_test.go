package effect

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The sweep matches a marker only as a whole entry of the environment: the
// name exactly MarkerVar, the value exactly a recorded marker — never as a
// substring of another variable, another value or another marker.
func TestMarkerIn(t *testing.T) {
	t.Parallel()
	const m = "0123456789ab-00112233445566778899aabb"
	markers := map[string]bool{m: true}
	env := func(kvs ...string) []byte { return []byte(strings.Join(kvs, "\x00") + "\x00") }
	for _, tc := range []struct {
		name string
		env  []byte
		want bool
	}{
		{"the marker", env("PATH=/bin", MarkerVar+"="+m, "HOME=/root"), true},
		{"the marker last, no final NUL", []byte("PATH=/bin\x00" + MarkerVar + "=" + m), true},
		{"the marker first", env(MarkerVar + "=" + m), true},
		{"in another variable's value", env("OLD=" + MarkerVar + "=" + m), false},
		{"a longer name", env("X" + MarkerVar + "=" + m), false},
		{"a name with a suffix", env(MarkerVar + "_2=" + m), false},
		{"a value with a prefix", env(MarkerVar + "=x" + m), false},
		{"a value with a suffix", env(MarkerVar + "=" + m + "0"), false},
		{"the random part alone (talon check)", env(MarkerVar + "=00112233445566778899aabb"), false},
		{"another instance, the same random part", env(MarkerVar + "=ba9876543210-00112233445566778899aabb"), false},
		{"a marker of this instance not in flight", env(MarkerVar + "=0123456789ab-ffeeddccbbaa998877665544"), false},
		{"empty", nil, false},
		{"the name only", env(MarkerVar + "="), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := markerIn(tc.env, markers); got != tc.want {
				t.Fatalf("markerIn(%q) = %v, want %v", tc.env, got, tc.want)
			}
		})
	}
}

// An instance's prefix is a hash of the state directory's canonical path:
// the same through a symbolic link and after a restart, another for another
// directory; its markers are prefix-random, and only such names in its
// running directory count as in flight.
func TestInstanceOfStateDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.Mkdir(a, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(a, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	ia, err := NewInstance(a)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := NewInstance(filepath.Join(dir, "link"))
	ib, _ := NewInstance(b)
	if ia.Prefix() != again.Prefix() || ia.Prefix() == ib.Prefix() || len(ia.Prefix()) != 12 {
		t.Fatalf("prefixes: %q, through the link %q, other dir %q", ia.Prefix(), again.Prefix(), ib.Prefix())
	}
	m := ia.marker()
	if r, ok := strings.CutPrefix(m, ia.Prefix()+"-"); !ok || len(r) != 24 {
		t.Fatalf("marker %q", m)
	}
	var none *Instance
	if m := none.marker(); strings.Contains(m, "-") || len(m) != 24 {
		t.Fatalf("marker without an instance %q", m)
	}
	ia.begin(m)
	ib.begin(ib.marker())
	for _, name := range []string{"notes.txt", ia.Prefix() + "-", ib.Prefix() + "-0011"} {
		if err := os.WriteFile(filepath.Join(a, RunningDir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ia.inFlight()
	if err != nil || !reflect.DeepEqual(got, map[string]bool{m: true}) {
		t.Fatalf("in flight: %v, %v", got, err)
	}
	ia.end(m)
	if got, _ := ia.inFlight(); len(got) != 0 {
		t.Fatalf("in flight after end: %v", got)
	}
}

// What macOS's kern.procargs2 gives, split into arguments and environment.
func TestParseProcArgs2(t *testing.T) {
	t.Parallel()
	raw := []byte("\x03\x00\x00\x00/bin/sleep\x00\x00\x00\x00sleep\x00300\x00x y\x00PATH=/bin\x00" + MarkerVar + "=p-r\x00\x00\x00ptr_munge=\x00")
	argv, env, err := parseProcArgs2(raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"sleep", "300", "x y"}; !reflect.DeepEqual(argv, want) {
		t.Fatalf("argv %q, want %q", argv, want)
	}
	if want := "PATH=/bin\x00" + MarkerVar + "=p-r"; string(env) != want {
		t.Fatalf("env %q, want %q", env, want)
	}
	if _, ok := markerIn(env, map[string]bool{"p-r": true}); !ok {
		t.Fatal("the marker is not found in the parsed environment")
	}
	for _, bad := range [][]byte{nil, []byte("\x01\x00"), []byte("\x01\x00\x00\x00/bin/sleep")} {
		if _, _, err := parseProcArgs2(bad); err == nil {
			t.Errorf("parseProcArgs2(%q): no error", bad)
		}
	}
}
