package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
)

// oneLine fails t unless err is an *engine.PosError naming path whose text
// is one line (bad input is one line naming the file, never a dump).
func oneLine(t *testing.T, path string, err error) {
	t.Helper()
	var pe *engine.PosError
	if !errors.As(err, &pe) {
		t.Fatalf("error %T is not a *engine.PosError: %v", err, err)
	}
	msg := err.Error()
	if pe.File != path || !strings.HasPrefix(msg, path) {
		t.Fatalf("error does not name the file %s: %q", path, msg)
	}
	if pe.Message == "" || strings.ContainsAny(msg, "\n\r") || len(msg) > 4000 {
		t.Fatalf("error is not one bounded line: %q", msg)
	}
}

func addSeeds(f *testing.F, glob string) {
	paths, _ := filepath.Glob(glob)
	if len(paths) == 0 {
		f.Fatalf("no seeds at %s", glob)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzConfig feeds mutated config.toml files to the strict decoder (Parse)
// and to the lenient one: a config or a one-line error naming the file,
// never a panic; a file Parse accepts validates and Lenient reads it too.
func FuzzConfig(f *testing.F) {
	addSeeds(f, "testdata/config/*.toml")
	f.Add([]byte("\xef\xbb\xbfcheck_interval_secs = 5\n[worker]\nenabled = true\ncommand = [\"x\"]\n"))
	f.Add([]byte("[health]\nbind = \"[::1]:9999\"\n[escalation]\nsos_telegram_chat_id = 42\n"))
	f.Add([]byte("check_interval_secs = 9223372036854775807\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		const path = "/fuzz/config.toml"
		c, err := config.Parse(path, doc)
		if (c == nil) == (err == nil) {
			t.Fatalf("config %v with error %v", c != nil, err)
		}
		if err != nil {
			oneLine(t, path, err)
		} else if verr := c.Validate(); verr != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", verr)
		}
		lc, lerr := config.Lenient(path, doc)
		if err == nil && lerr != nil {
			t.Fatalf("Parse accepts the file, Lenient refuses it: %v", lerr)
		}
		if lerr == nil && lc == nil {
			t.Fatal("Lenient returned neither a config nor an error")
		}
		if lerr != nil && strings.ContainsAny(lerr.Error(), "\n\r") {
			t.Fatalf("Lenient's error is not one line: %q", lerr)
		}
	})
}

// FuzzServices feeds mutated services.toml files to ParseServices: services
// or a one-line error naming the file, never a panic. Round trip: the
// services it read, written back as TOML, read back the same.
func FuzzServices(f *testing.F) {
	addSeeds(f, "testdata/services/*.toml")
	f.Add([]byte("[http.'a.b']\nurl = \"http://x\"\non_failure = \"act\"\ncritical_after_consecutive_failures = 3\ntimeout_secs = 3600\n"))
	f.Add([]byte("[script.\"s\\u0000\"]\ncommand = \"true\"\ncritical = true\n[launchd.l]\nlabel = \"com.x\"\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		const path = "/fuzz/services.toml"
		s, err := config.ParseServices(path, doc)
		if (s == nil) == (err == nil) {
			t.Fatalf("services %v with error %v", s != nil, err)
		}
		if err != nil {
			oneLine(t, path, err)
			return
		}
		again, err := config.ParseServices(path, encodeServices(t, s))
		if err != nil {
			t.Fatalf("services written back do not read: %v\n%s", err, encodeServices(t, s))
		}
		if a, b := positionless(s.List), positionless(again.List); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the services:\n%+v\n%+v", a, b)
		}
	})
}

// encodeServices writes s back in the services.toml schema.
func encodeServices(t *testing.T, s *config.Services) []byte {
	t.Helper()
	target := map[string]string{"http": "url", "launchd": "label", "script": "command"}
	doc := map[string]map[string]map[string]any{}
	for _, sv := range s.List {
		tbl := map[string]any{target[sv.Kind]: sv.Target, "critical": sv.Critical}
		if sv.OnFailure != "" {
			tbl["on_failure"] = sv.OnFailure
		}
		if sv.After != 0 {
			tbl["critical_after_consecutive_failures"] = sv.After
		}
		if sv.TimeoutSecs != 0 {
			tbl["timeout_secs"] = sv.TimeoutSecs
		}
		if doc[sv.Kind] == nil {
			doc[sv.Kind] = map[string]map[string]any{}
		}
		doc[sv.Kind][sv.Name] = tbl
	}
	b, err := toml.Marshal(doc)
	if err != nil {
		t.Fatalf("encode the services: %v", err)
	}
	if len(doc) == 0 {
		b = []byte("# no service\n")
	}
	return b
}

func positionless(l []config.Service) []config.Service {
	out := make([]config.Service, len(l))
	for i, s := range l {
		s.Line, s.Col = 0, 0
		out[i] = s
	}
	return out
}
