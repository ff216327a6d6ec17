package bound_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"

	"github.com/talon-dev/talon/builtins/bound"
)

var opts = &syntax.FileOptions{Set: true, TopLevelControl: true}

var host = starlark.StringDict{"struct": starlark.NewBuiltin("struct", starlarkstruct.Make)}

// plain runs src on go.starlark.net as it is.
func plain(src string) (starlark.StringDict, error) {
	thread := &starlark.Thread{Name: "plain", Print: func(*starlark.Thread, string) {}}
	return starlark.ExecFileOptions(opts, thread, "x.star", src, host)
}

// bounded runs src through bound with lim.
func bounded(src string, lim bound.Limits) (starlark.StringDict, error) {
	thread := &starlark.Thread{Name: "bound", Print: func(*starlark.Thread, string) {}}
	var g starlark.StringDict
	err := bound.Run(context.Background(), thread, lim, func() error {
		var err error
		g, err = bound.ExecFile(opts, thread, "x.star", []byte(src), host)
		return err
	})
	return g, err
}

var roomy = bound.Limits{Steps: 10_000_000, Bytes: 64 << 20, Time: time.Minute}

func outcome(g starlark.StringDict, err error) string {
	if err != nil {
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			return "error: " + ee.Msg
		}
		return "error: " + err.Error()
	}
	return g["r"].String()
}

// TestSameAsStarlark runs programs both ways: what the rewrite and the
// accounting universe compute must be what go.starlark.net computes, errors
// included.
func TestSameAsStarlark(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		`r = 1 + 2 * 3 - 4 // 2 % 3`,
		`r = "a" + "b" * 3`,
		`r = 3 * "ab"`,
		`r = [1, 2] + [3] * 2`,
		`r = 2 * (1, 2)`,
		`r = (1 << 70) * (1 << 70)`,
		`r = 7 / 2`,
		`r = 1 + "a"`,
		`r = "%s and %r; %d %x %o %c %% %5.1f" % ("x", "y", 42, 255, 8, 65, 1.25)`,
		`r = "%(a)s-%(b)r" % {"a": [1, "x"], "b": "q"}`,
		`r = "%s" % [1, 2]`,
		`r = "%s %s" % (1,)`,
		`r = "%s" % (1, 2)`,
		`r = "%d" % "x"`,
		`r = "%q" % 1`,
		`r = "{} {!r} {x}".format("a", "b", x = [1, {"k": (1,)}])`,
		`r = "{0}{1}{0}".format("a", "b")`,
		`r = "{".format()`,
		`r = "{} {0}".format(1)`,
		`r = "{:3}".format(1)`,
		`r = str([1, "a", (2,), {"k": None}, set([1]), 1.5, True, b"x"])`,
		`r = repr("a\nb")`,
		`r = str(struct(a = 1, b = [1, "x"]))`,
		`r = str(len)`,
		`r = str("".join)`,
		"def f():\n    l = [1]\n    l.append(l)\n    d = {}\n    d[1] = d\n    return str(l) + str(d)\nr = f()",
		`r = ",".join(["a", "b", "c"])`,
		`r = ",".join(["a", 1])`,
		`r = "aXbXc".replace("X", "--")`,
		`r = "aaa".replace("", "-")`,
		`r = "a b  c".split() + "a,b,,c".split(",") + "a,b,c".rsplit(",", 1) + "a b c".split(None, 1)`,
		`r = "a\nb\n".splitlines() + "a\nb".splitlines(True)`,
		`r = "abc".upper() + "ABC".lower() + "ab cd".title() + "abc".capitalize()`,
		`r = "a".split("")`,
		"def f():\n    l = [3, 1, 2]\n    l.append(0)\n    l.extend(range(2))\n    l.insert(0, 9)\n    l.remove(1)\n    return l, l.index(2)\nr = f()",
		"def f():\n    l = []\n    l.remove(1)\nr = f()",
		"def f():\n    d = {\"a\": 1}\n    d.update([(\"b\", 2)], c = 3)\n    d.setdefault(\"z\", 0)\n    return d, d.get(\"a\"), d.pop(\"b\"), d.items(), d.keys(), d.values()\nr = f()",
		"def f():\n    s = set([1, 2])\n    s.add(3)\n    s.discard(1)\n    return s, s.union([9]), s.difference([2]), s.intersection([2, 3]), s.symmetric_difference([3, 4]), s.issubset([2, 3, 4])\nr = f()",
		`r = list(range(5)) + list("ab".elems()) + list({"a": 1})`,
		`r = tuple([1, 2]), tuple()`,
		`r = dict(a = 1), dict([("b", 2)]), dict({"c": 3}, d = 4)`,
		`r = dict([1])`,
		`r = set([1, 1, 2])`,
		`r = sorted([3, 1, 2]), sorted(["b", "A", "a"], key = lambda s: s.lower()), sorted([1, 2, 3], reverse = True)`,
		`r = sorted([1, "a"])`,
		`r = list(reversed([1, 2, 3])), list(enumerate("ab".elems(), 1)), list(zip([1, 2], "ab".elems(), [True, False, None]))`,
		`r = any([0, 1]), any([]), all([1, 1]), all([1, 0])`,
		`r = min([3, 1, 2]), max(1, 5, 2), min(["bb", "a"], key = len), max([[1], [2]])`,
		`r = max([])`,
		`r = min(1, "a")`,
		`r = int("42"), int("ff", 16), int(3.7)`,
		`r = bytes("ab"), bytes([65, 66])`,
		`r = getattr("a,b", "split")(","), getattr([], "nope", 1)`,
		`r = getattr(1, "nope")`,
		`r = "ab".nope`,
		`r = [1, 2] == [1, 2], (1, 2) < (1, 3), "a" in "ab", 1 in [1], 2 not in {1: 2}, 1 in set([1])`,
		`r = [1] < "a"`,
		`r = {"a": 1} | {"b": 2}, set([1]) | set([2]), set([1, 2]) - set([1]), set([1, 2]) & set([2]), set([1]) ^ set([2])`,
		"def f():\n    x = [1]\n    y = x\n    x += [2]\n    x += range(2)\n    d = {\"a\": 1}\n    e = d\n    d |= {\"b\": 2}\n    s = \"a\"\n    s += \"b\"\n    n = 1\n    n <<= 3\n    return y, e, s, n\nr = f()",
		"def f():\n    d = {\"a\": [1]}\n    d[\"a\"] += [2]\n    l = [1, 2]\n    l[-1] *= 10\n    l[0] -= 1\n    return d, l\nr = f()",
		"def f():\n    l = [1]\n    l[3] += 1\nr = f()",
		"def f():\n    d = {}\n    d[\"k\"] += 1\nr = f()",
		"def f():\n    t = (1,)\n    t[0] += 1\nr = f()",
		"x = [1]\nx += [2]",
		`r = [i * 2 for i in range(5) if i % 2], {k: v for k, v in [("a", 1)]}, [j for i in range(3) for j in range(i)]`,
		`r = [1, 2, 3][1:], "abc"[::-1], (1, 2, 3)[:2], range(10)[2:5]`,
		"def f(*args, **kw):\n    return args, kw\nr = f(*[1, 2], **{\"a\": 3}), f(*range(2)), f(*\"ab\".elems())",
		"def f(*args):\n    return args\nr = f(*1)",
		`r = {"a": 1}["a"], [1, 2][-1], "ab"[0], {(1, 2): 3}[(1, 2)]`,
		`r = {}["missing"]`,
		`r = {[1]: 2}`,
		`r = [1][5]`,
		`r = 1 if [] else 2`,
		`r = [x for x in [1, 2] if x > 1 and x < 3 or False]`,
		"def f(a, b = 1 + 1, *, c = [2]):\n    return a + b + c[0]\nr = f(1)",
		`r = (lambda x = "d" * 2: x + "!")()`,
		"r = []\nfor i, c in enumerate(\"ab\".elems()):\n    r.append((i, c))",
		`r = print("x", 1, [2], sep = "-")`,
		`fail("boom", 1, [2])`,
		`fail("a", "b", sep = "/")`,
		`r = -(1 << 100), ~5, +3, not 1`,
		`r = hash("abc") == hash("abc"), len("abc"), type([]), str(1.0), str(1e100), str(None)`,
		`r = "a" * -1, [1] * 0, 0 * (1,)`,
	} {
		want := outcome(plain(src))
		got := outcome(bounded(src, roomy))
		if got != want {
			t.Errorf("%s\n got: %s\nwant: %s", src, got, want)
		}
	}
}

// TestBombs: what used to take the process's memory or hang one step is
// refused with a budget error at the position of the construct.
func TestBombs(t *testing.T) {
	t.Parallel()
	fn := func(body string) string {
		return "def f():\n" + body + "\nX = f()\n"
	}
	for _, tc := range []struct {
		name, src, want string
	}{
		{"list of a huge range", "X = list(range(1 << 40))", "x.star:1:9: memory budget of 64 MiB exhausted: list of 1099511627776 elements"},
		{"tuple of a huge range", "X = tuple(range(1 << 50))", "x.star:1:10: memory budget of 64 MiB exhausted: tuple of 1125899906842624 elements"},
		{"list repetition", "X = [0] * (1 << 50)", "x.star:1:9: memory budget of 64 MiB exhausted: list of 1 elements repeated 1125899906842624 times"},
		{"string repetition", `X = "x" * (1 << 29)`, "x.star:1:9: memory budget of 64 MiB exhausted: string of 1 elements repeated 536870912 times"},
		{"string repetition, int first", `X = (1 << 29) * "ab"`, "x.star:1:15: memory budget of 64 MiB exhausted: string of 2 elements repeated 536870912 times"},
		{"dict comprehension", "X = {i: i for i in range(1 << 40)}", "x.star:1:11: memory budget of 64 MiB exhausted: dict comprehension"},
		{"list comprehension", "X = [i for i in range(1 << 40)]", "x.star:1:8: step budget of 10000000 steps exhausted"},
		{"doubling a string", fn("    s = \"x\" * 1000\n    for i in range(64):\n        s = s + s\n    return s"), "x.star:4:15: memory budget of 64 MiB exhausted: string + string of"},
		{"doubling a list in place", fn("    l = [0] * 1000\n    for i in range(64):\n        l += l\n    return l"), "x.star:4:11: memory budget of 64 MiB exhausted: list += of"},
		{"extending by a huge range", fn("    l = []\n    l.extend(range(1 << 40))\n    return l"), "x.star:3:13: memory budget of 64 MiB exhausted: extend of 1099511627776 elements"},
		{"+= a huge range", fn("    l = []\n    l += range(1 << 40)\n    return l"), "x.star:3:7: memory budget of 64 MiB exhausted: list += of 1099511627776 elements"},
		{"*args of a huge range", fn("    return max(*range(1 << 40))"), "x.star:2:16: memory budget of 64 MiB exhausted: *args of 1099511627776 elements"},
		{"sorted of a huge range", "X = sorted(range(1 << 40))", "x.star:1:11: memory budget of 64 MiB exhausted: sorted of 1099511627776 elements"},
		{"set of a huge range", "X = set(range(1 << 40))", "x.star:1:8: memory budget of 64 MiB exhausted: set of 1099511627776 elements"},
		{"dict of a huge zip", "X = dict(zip(range(1 << 40), range(1 << 40)))", "x.star:1:13: step budget of 10000000 steps exhausted"},
		{"enumerate of a huge range", "X = enumerate(range(1 << 40))", "x.star:1:14: memory budget of 64 MiB exhausted: enumerate of 1099511627776 elements"},
		{"join", fn("    s = \"x\" * 1000000\n    return \",\".join([s] * 1000)"), "x.star:3:20: memory budget of 64 MiB exhausted: join of more than 66 strings"},
		{"replace", fn("    s = \"x\" * 100000\n    return s.replace(\"\", \"y\" * 1000)"), "x.star:3:21: memory budget of 64 MiB exhausted: replace of 100001 occurrences with 1000 bytes each"},
		{"format of a huge repeat", fn("    s = \"x\" * 1000000\n    return (\"{0}\" * 100).format(s)"), "x.star:3:32: memory budget of 64 MiB exhausted: format would produce more than"},
		{"percent of a huge repeat", fn("    s = \"x\" * 1000000\n    return (\"%(s)s\" * 100) % {\"s\": s}"), "x.star:3:28: memory budget of 64 MiB exhausted: % would produce more than"},
		{"str of a deep list", fn("    x = []\n    for i in range(100000):\n        x = [x]\n    return str(x)"), "x.star:5:15: str: value nested more than 1000 levels deep"},
		{"percent of a deep list", fn("    x = []\n    for i in range(100000):\n        x = [x]\n    return \"%s\" % x"), "x.star:5:17: %: value nested more than 1000 levels deep"},
		{"str of a shared list", fn("    x = [1]\n    for i in range(64):\n        x = [x, x]\n    return str(x)"), "x.star:5:15: step budget of 10000000 steps exhausted"},
		{"hashing a shared tuple", fn("    t = ()\n    for i in range(64):\n        t = (t, t)\n    return {t: 1}"), "x.star:5:14: tuple is too costly to hash: it has more than 1048576 elements, counting shared ones each time"},
		{"hashing a shared tuple by index", fn("    t = ()\n    for i in range(64):\n        t = (t, t)\n    d = {}\n    d[t] = 1"), "x.star:6:6: tuple is too costly to hash"},
		{"comparing shared lists", fn("    a = [0] * 10\n    b = [0] * 10\n    for i in range(9):\n        a = [a] * 10\n        b = [b] * 10\n    return a == b"), "x.star:7:14: comparing list with list would visit more than 1048576 elements"},
		{"sorting shared lists", fn("    a = [0] * 10\n    for i in range(9):\n        a = [a] * 10\n    return sorted([a, a, a])"), "x.star:5:18: sorted: comparing the elements would visit more than 1048576 elements"},
		{"in a shared list", fn("    a = [0] * 10\n    for i in range(9):\n        a = [a] * 10\n    return [0] in a"), "x.star:5:16: list in list would visit more than 1048576 elements"},
		{"a string slice in a loop shares its bytes", fn("    s = \"x\" * 1000000\n    for i in range(100000):\n        t = s[1:]\n    return s[::-1][:1]"), "no error"},
		{"copies by a step are charged", fn("    s = \"x\" * 1000000\n    l = []\n    for i in range(100000):\n        l.append(s[::2])\n    return l"), "x.star:5:19: memory budget of 64 MiB exhausted: slice of 500000 elements"},
		{"freezing a shared tuple", fn("    t = ()\n    for i in range(64):\n        t = (t, t)\n    return t"), "x.star:6:1: global X shares its elements so much that freezing it would visit more than 4194304 elements"},
		{"squaring an int", fn("    x = 3\n    for i in range(40):\n        x = x * x\n    return x"), "x.star:4:15: integer too large: more than 65536 bits"},
		{"parsing a long int", `X = int("9" * 5000)`, "x.star:1:8: int: string of 5000 characters is too long to parse; at most 4300 digits are allowed"},
		{"all of a huge range", "X = all(range(1, 1 << 40))", "x.star:1:8: step budget of 10000000 steps exhausted"},
		{"a loop", fn("    for i in range(1 << 40):\n        pass"), "x.star:2:5: step budget of 10000000 steps exhausted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := bounded(tc.src, roomy)
			if got := posError(err); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got  %s\nwant %s...", got, tc.want)
			}
		})
	}
}

// posError is err at the innermost position in x.star, as the loader shows it.
func posError(err error) string {
	if err == nil {
		return "no error"
	}
	var se syntax.Error
	if errors.As(err, &se) {
		return se.Error()
	}
	var ee *starlark.EvalError
	if !errors.As(err, &ee) {
		return err.Error()
	}
	for i := len(ee.CallStack) - 1; i >= 0; i-- {
		if p := ee.CallStack[i].Pos; p.Filename() == "x.star" {
			return p.String() + ": " + err.Error()
		}
	}
	return err.Error()
}

// TestStuckIsAbandoned: one operation that does not return at the deadline
// (here a builtin that waits; in a policy, an operation the rewrite does not
// reach) does not hold the caller: Run returns a *Stuck error while it still
// runs, and the thread is cancelled so it stops at its next step.
func TestStuckIsAbandoned(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{})
	block := starlark.NewBuiltin("block", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
		close(entered)
		<-release
		return starlark.None, nil
	})
	thread := &starlark.Thread{Name: "stuck"}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	after := make(chan error, 1)
	err := bound.Run(ctx, thread, roomy, func() error {
		_, err := bound.ExecFile(opts, thread, "x.star", []byte("block()\nx = 1\n"), starlark.StringDict{"block": block})
		after <- err
		return err
	})
	<-entered
	var stuck *bound.Stuck
	if !errors.As(err, &stuck) {
		t.Fatalf("Run = %v, want a *Stuck error", err)
	}
	select {
	case err := <-after:
		t.Fatalf("the evaluation ended (%v) before Run returned: not a stuck call", err)
	default:
	}
	close(release)
	// The abandoned evaluation stops at its next step, cancelled.
	if err := <-after; err == nil || !strings.Contains(err.Error(), "time budget of ") || !strings.Contains(err.Error(), "ms exhausted") {
		t.Fatalf("the abandoned evaluation ended with %v", err)
	}
}

// TestPanicIsAnError: a Go panic inside an evaluation is an error.
func TestPanicIsAnError(t *testing.T) {
	t.Parallel()
	boom := starlark.NewBuiltin("boom", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
		var l []int
		return starlark.MakeInt(l[len(l)]), nil // index out of range
	})
	thread := &starlark.Thread{Name: "panic"}
	err := bound.Run(context.Background(), thread, roomy, func() error {
		_, err := bound.ExecFile(opts, thread, "x.star", []byte("boom()\n"), starlark.StringDict{"boom": boom})
		return err
	})
	var p *bound.Panic
	if !errors.As(err, &p) || err.Error() != "internal error: runtime error: index out of range [0] with length 0" {
		t.Fatalf("Run = %v, want the panic as an error", err)
	}
}

// TestDeadline: a loop is cancelled at the context's deadline with a time
// budget error; the caller does not wait for the step budget.
func TestDeadline(t *testing.T) {
	t.Parallel()
	thread := &starlark.Thread{Name: "deadline"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := bound.Run(ctx, thread, bound.Limits{Steps: 1 << 62, Bytes: 1 << 30}, func() error {
		_, err := bound.ExecFile(opts, thread, "x.star", []byte("def f():\n    for i in range(1 << 62):\n        pass\nf()\n"), host)
		return err
	})
	if got := posError(err); !strings.HasPrefix(got, "x.star:2:5: time budget of ") || !strings.HasSuffix(got, "ms exhausted") {
		t.Fatalf("got %s", got)
	}
}

// TestNoBudget: policy code on a thread that Run did not set up fails
// loudly instead of running unaccounted.
func TestNoBudget(t *testing.T) {
	t.Parallel()
	_, err := bound.ExecFile(opts, &starlark.Thread{}, "x.star", []byte("x = [1] * 2\n"), host)
	if err == nil || !strings.Contains(err.Error(), "without an evaluation budget") {
		t.Fatalf("got %v", err)
	}
}
