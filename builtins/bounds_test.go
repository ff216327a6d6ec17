package builtins_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// bombs are policy code that took the daemon down (fatal out-of-memory, the
// kernel's OOM killer) or held one step for minutes (quadratic str() of a
// deeply nested list). Each is a function body; want is the error after the
// position, which is at line 2 (the body's first line) plus line.
var bombs = []struct {
	name, body string
	line, col  int
	want       string
	// run is what the run phase says when it differs: its step budget is
	// a tenth of the load's, so a loop can meet it first.
	run string
}{
	{"list of range(1 << 40)", "    x = list(range(1 << 40))", 0, 13,
		"memory budget of %s exhausted: list of 1099511627776 elements; " + memAdvice, ""},
	{"list repeated 1 << 50 times", "    x = [0] * (1 << 50)", 0, 13,
		"memory budget of %s exhausted: list of 1 elements repeated 1125899906842624 times; " + memAdvice, ""},
	{"a huge string", `    x = "x" * (1 << 29)`, 0, 13,
		"memory budget of %s exhausted: string of 1 elements repeated 536870912 times; " + memAdvice, ""},
	{"a huge dict comprehension", "    x = {i: i for i in range(1 << 40)}", 0, 15,
		"memory budget of %s exhausted: dict comprehension; " + memAdvice,
		"step budget of 1000000 steps exhausted: a loop runs too long; shorten it"},
	{"str of a deeply nested list", "    x = []\n    for i in range(50000):\n        x = [x]\n    s = str(x)", 3, 12,
		"str: value nested more than 1000 levels deep", ""},
}

const memAdvice = "build smaller values (join a list rather than adding strings in a loop)"

func bombPolicy(body string) string {
	return "def bomb(*args):\n" + body + "\n    return True\n"
}

// TestBombsAtLoad: the bombs at load time are errors at their file:line:col;
// Load returns no policy, and the daemon would keep its last good one.
func TestBombsAtLoad(t *testing.T) {
	t.Parallel()
	for _, b := range bombs {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			src := bombPolicy(b.body) + "bomb()\n"
			res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": src})})
			if res.Policy != nil || len(res.Errors) != 1 {
				t.Fatalf("policy %v, errors %v", res.Policy != nil, res.Errors)
			}
			want := posf(2+b.line, b.col, b.want, "64 MiB")
			if strings.Contains(want, memAdvice) {
				want += ", or move the work into a probe.func"
			}
			if got := res.Errors[0].Error(); got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func posf(line, col int, format, budget string) string {
	msg := format
	if strings.Contains(format, "%s") {
		msg = strings.Replace(format, "%s", budget, 1)
	}
	return "talon.star:" + itoa(line) + ":" + itoa(col) + ": " + msg
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}

// loadBomb loads a policy whose probe.func, when= and do= are the bomb.
func loadBomb(t *testing.T, body string) *engine.Policy {
	t.Helper()
	src := bombPolicy(body) +
		"probe.func(\"bomb\", bomb)\n" +
		"ladder(rung(\"heal\", when = bomb, do = bomb))\n"
	res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": src})})
	if res.Err() != nil {
		t.Fatal(res.ErrorText())
	}
	return res.Policy
}

// TestBombsAtRunTime: the same bombs in a probe.func, a when= predicate and
// a do= function are errors of that call, with file:line:col, and the next
// call runs as usual.
func TestBombsAtRunTime(t *testing.T) {
	t.Parallel()
	for _, b := range bombs {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			pol := loadBomb(t, b.body)
			want := posf(2+b.line, b.col, b.want, "32 MiB")
			if b.run != "" {
				want = posf(2+b.line, b.col, b.run, "")
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			r := (&engine.Runner{Effects: effect.NewLive()}).RunOne(ctx, pol.Probe("bomb"))
			if r.Passed || r.Output != want {
				t.Errorf("probe.func: passed %v, output\n%s\nwant\n%s", r.Passed, r.Output, want)
			}

			view := &engine.IncidentView{ID: "i1", Started: time.Now(), Now: time.Now()}
			ok, err := pol.Ladder[0].When(ctx, view)
			if ok || err == nil || err.Error() != want {
				t.Errorf("when=: %v, %v\nwant %s", ok, err, want)
			}

			out := pol.Ladder[0].Do[0].Run(ctx, &engine.ActionEnv{Effects: effect.NewLive(), Incident: view, Log: func(string, ...any) {}})
			if out.OK || out.Output != want {
				t.Errorf("do=: ok %v, output\n%s\nwant\n%s", out.OK, out.Output, want)
			}
		})
	}
}

// TestDurationsAndCountsBounded: a duration or count too large to be meant
// is a load error at its call, never an overflow (after = 9300000000 once
// became a negative duration and the SOS fired at once, validate said ok).
func TestDurationsAndCountsBounded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ src, want string }{
		{`ladder(rung("sos", do = notify.log(), after = 9300000000))`,
			`talon.star:1:12: rung: for parameter "after": duration 9300000000 seconds is longer than a year; give at most "8784h"`},
		{`ladder(rung("sos", do = notify.log(), repeat = 1 << 70))`,
			`talon.star:1:12: rung: for parameter "repeat": duration 1180591620717411303424 seconds is longer than a year; give at most "8784h"`},
		{`ladder(rung("sos", do = notify.log(), cooldown = "99999999999h"))`,
			`talon.star:1:12: rung: for parameter "cooldown": duration "99999999999h" is longer than a year; give at most "8784h"`},
		{`ladder(rung("sos", do = notify.log(), timeout = 1e300))`,
			`talon.star:1:12: rung: for parameter "timeout": duration 1e+300 seconds is longer than a year; give at most "8784h"`},
		{`ladder(rung("sos", do = notify.log(), timeout = float("nan")))`,
			`talon.star:1:12: rung: for parameter "timeout": want a non-negative number of seconds, got nan`},
		{`probe.exec("a", ["true"], timeout = "9000h")`,
			`talon.star:1:11: probe.exec: for parameter "timeout": duration "9000h" is longer than a year; give at most "8784h"`},
		{`probe.exec("a", ["true"], after = 9300000000)`,
			`talon.star:1:11: probe.exec: for parameter "after": want a count from 0 to 100000, got 9300000000`},
		{`state.thresholds(failed_after = 1 << 40)`,
			`talon.star:1:17: state.thresholds: for parameter "failed_after": want a count from 0 to 100000, got 1099511627776`},
	} {
		res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": tc.src + "\n"})})
		if res.Policy != nil || len(res.Errors) != 1 || res.Errors[0].Error() != tc.want {
			t.Errorf("%s\n got %v\nwant %s", tc.src, res.Errors, tc.want)
		}
	}
	// The largest values still load.
	res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": `probe.exec("a", ["true"], after = 100000, every = "8784h")
ladder(rung("sos", do = notify.log(), after = 31622400, repeat = "8784h"))
`})})
	if res.Err() != nil {
		t.Fatal(res.ErrorText())
	}
}

// BenchmarkRefuseBombs loads each bomb and calls it as a probe.func, and
// reports the slowest refusal: the daemon's time lost to a hostile policy.
func BenchmarkRefuseBombs(b *testing.B) {
	cfg := testConfig(b)
	var worstLoad, worstRun time.Duration
	for i := 0; i < b.N; i++ {
		for _, bomb := range bombs {
			start := time.Now()
			res := builtins.Load("/policy", builtins.Options{Config: cfg, FS: mapFS(map[string]string{"talon.star": bombPolicy(bomb.body) + "bomb()\n"})})
			worstLoad = max(worstLoad, time.Since(start))
			if res.Policy != nil {
				b.Fatal("a bomb loaded")
			}
			res = builtins.Load("/policy", builtins.Options{Config: cfg, FS: mapFS(map[string]string{"talon.star": bombPolicy(bomb.body) + "probe.func(\"bomb\", bomb)\n"})})
			if res.Err() != nil {
				b.Fatal(res.ErrorText())
			}
			start = time.Now()
			r := (&engine.Runner{Effects: effect.NewLive()}).RunOne(context.Background(), res.Policy.Probe("bomb"))
			worstRun = max(worstRun, time.Since(start))
			if r.Passed {
				b.Fatal("a bomb passed")
			}
		}
	}
	b.ReportMetric(float64(worstLoad.Milliseconds()), "worst_load_ms")
	b.ReportMetric(float64(worstRun.Milliseconds()), "worst_call_ms")
}
