package bound

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// universe replaces the built-in functions that iterate or build with
// accounting versions of the same name. Most check and charge, then call
// go.starlark.net's own (so results and errors are the library's); those
// whose work cannot be bounded from outside are written here.
var universe = starlark.StringDict{}

type builtinFn func(b *Budget, thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)

func init() {
	for name, fn := range map[string]builtinFn{
		"list":      sequenceOf(slotBytes),
		"tuple":     sequenceOf(slotBytes),
		"reversed":  sequenceOf(slotBytes),
		"enumerate": sequenceOf(slotBytes + headerBytes + 2*slotBytes),
		"bytes":     sequenceOf(1),
		"dict":      (*Budget).dict,
		"set":       (*Budget).set,
		"zip":       (*Budget).zip,
		"sorted":    (*Budget).sorted,
		"any":       anyAll(true),
		"all":       anyAll(false),
		"min":       (*Budget).minmax,
		"max":       (*Budget).minmax,
		"str":       (*Budget).str,
		"repr":      (*Budget).repr,
		"print":     (*Budget).print,
		"fail":      (*Budget).fail,
		"int":       (*Budget).int,
		"getattr":   (*Budget).getattr,
	} {
		universe[name] = starlark.NewBuiltin(name, func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			bud, err := From(thread)
			if err != nil {
				return nil, err
			}
			return fn(bud, thread, b, args, kwargs)
		})
	}
	universe.Freeze()
}

// original calls go.starlark.net's builtin of the same name.
func original(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return starlark.Universe[name].(*starlark.Builtin).CallInternal(thread, args, kwargs)
}

// sequenceOf is list, tuple, reversed, enumerate and bytes: the first
// argument is drawn or charged at unit bytes per element first.
func sequenceOf(unit int64) builtinFn {
	return func(b *Budget, thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(args) > 0 {
			if _, isString := args[0].(starlark.String); !isString || fn.Name() != "bytes" {
				x, err := b.elements(args[0], unit, fn.Name())
				if err != nil {
					return nil, err
				}
				args = append(starlark.Tuple{x}, args[1:]...)
			} else if err := b.alloc(sizeOf(args[0]), func() string { return "bytes" }); err != nil {
				return nil, err
			}
		}
		if err := b.alloc(headerBytes, func() string { return fn.Name() }); err != nil {
			return nil, err
		}
		return original(thread, fn.Name(), args, kwargs)
	}
}

func (b *Budget) dict(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	args, err := b.pairs(fn.Name(), args, kwargs)
	if err != nil {
		return nil, err
	}
	return original(thread, "dict", args, kwargs)
}

// pairs checks the arguments of dict() and dict.update(): an optional dict
// or iterable of pairs, and keyword arguments. It charges every entry and
// checks every key, and draws a lazy iterable into a tuple.
func (b *Budget) pairs(what string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Tuple, error) {
	if err := b.alloc(add(headerBytes, mul(entryBytes, int64(len(kwargs)))), func() string { return what }); err != nil {
		return nil, err
	}
	if len(args) != 1 {
		return args, nil
	}
	if d, ok := args[0].(*starlark.Dict); ok {
		return args, b.alloc(mul(entryBytes, int64(d.Len())), func() string { return fmt.Sprintf("%s of %d entries", what, d.Len()) })
	}
	if _, ok := args[0].(starlark.Iterable); !ok {
		return args, nil
	}
	elems, err := b.drain(args[0], entryBytes, what)
	if err != nil {
		return nil, err
	}
	for _, e := range elems {
		if pair, ok := e.(starlark.Indexable); ok && pair.Len() == 2 {
			if err := b.hashCost(pair.Index(0)); err != nil {
				return nil, err
			}
		}
	}
	return starlark.Tuple{starlark.Tuple(elems)}, nil
}

func (b *Budget) set(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) == 1 {
		x, err := b.keys(args[0], "set")
		if err != nil {
			return nil, err
		}
		args = starlark.Tuple{x}
	}
	return original(thread, "set", args, kwargs)
}

// keys draws the elements of an iterable that a set will hash, charging an
// entry for each and checking what hashing it costs.
func (b *Budget) keys(x starlark.Value, what string) (starlark.Value, error) {
	switch x := x.(type) {
	case *starlark.Set, *starlark.Dict: // already hashed
		return x, b.alloc(mul(entryBytes, int64(starlark.Len(x))), func() string { return fmt.Sprintf("%s of %d elements", what, starlark.Len(x)) })
	case starlark.Iterable:
		elems, err := b.drain(x, entryBytes, what)
		if err != nil {
			return nil, err
		}
		for _, e := range elems {
			if err := b.hashCost(e); err != nil {
				return nil, err
			}
		}
		return starlark.Tuple(elems), nil
	}
	return x, nil
}

func (b *Budget) zip(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	drawn := make(starlark.Tuple, len(args))
	n := -1
	for i, a := range args {
		x, err := b.elements(a, 0, "zip")
		if err != nil {
			return nil, err
		}
		drawn[i] = x
		if l := starlark.Len(x); l >= 0 && (n < 0 || l < n) {
			n = l
		}
	}
	if n > 0 {
		per := int64(slotBytes + headerBytes + slotBytes*len(args))
		if err := b.alloc(mul(per, int64(n)), func() string { return fmt.Sprintf("zip of %d elements", n) }); err != nil {
			return nil, err
		}
	}
	return original(thread, "zip", drawn, kwargs)
}

// sorted is go.starlark.net's sorted, with the cost of its comparisons
// checked before it sorts.
func (b *Budget) sorted(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var iterable starlark.Iterable
	var key starlark.Callable
	var reverse bool
	if err := starlark.UnpackArgs("sorted", args, kwargs, "iterable", &iterable, "key?", &key, "reverse?", &reverse); err != nil {
		return nil, err
	}
	values, err := b.drain(iterable, slotBytes, "sorted")
	if err != nil {
		return nil, err
	}
	keys := values
	if key != nil {
		keys = make([]starlark.Value, len(values))
		for i, v := range values {
			k, err := starlark.Call(thread, key, starlark.Tuple{v}, nil)
			if err != nil {
				return nil, err
			}
			keys[i] = k
		}
	}
	var cost int64
	for _, k := range keys {
		if !simple(k) {
			cost += visit(k, starlark.CompareLimit, MaxVisit)
		} else {
			cost++
		}
		if cost > MaxVisit {
			return nil, fmt.Errorf("sorted: comparing the elements would visit more than %d elements", MaxVisit)
		}
	}
	if err := b.work(cost * int64(bits.Len(uint(len(keys))))); err != nil {
		return nil, err
	}
	s := &sortSlice{keys: keys, values: values}
	if key == nil {
		s.keys = nil
	}
	if reverse {
		sort.Stable(sort.Reverse(s))
	} else {
		sort.Stable(s)
	}
	return starlark.NewList(s.values), s.err
}

type sortSlice struct {
	keys   []starlark.Value // nil: values are the keys
	values []starlark.Value
	err    error
}

func (s *sortSlice) Len() int { return len(s.values) }
func (s *sortSlice) Less(i, j int) bool {
	keys := s.keys
	if keys == nil {
		keys = s.values
	}
	ok, err := starlark.Compare(syntax.LT, keys[i], keys[j])
	if err != nil {
		s.err = err
	}
	return ok
}
func (s *sortSlice) Swap(i, j int) {
	if s.keys != nil {
		s.keys[i], s.keys[j] = s.keys[j], s.keys[i]
	}
	s.values[i], s.values[j] = s.values[j], s.values[i]
}

// anyAll is any (want true) and all (want false), stopping at the deadline.
func anyAll(want bool) builtinFn {
	return func(b *Budget, _ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var iterable starlark.Iterable
		if err := starlark.UnpackPositionalArgs(fn.Name(), args, kwargs, 1, &iterable); err != nil {
			return nil, err
		}
		iter := iterable.Iterate()
		defer iter.Done()
		var x starlark.Value
		for iter.Next(&x) {
			if err := b.tick(); err != nil {
				return nil, err
			}
			if bool(x.Truth()) == want {
				return starlark.Bool(want), nil
			}
		}
		return starlark.Bool(!want), nil
	}
}

// minmax is go.starlark.net's min and max, stopping at the deadline and
// checking what each comparison costs.
func (b *Budget) minmax(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("%s requires at least one positional argument", fn.Name())
	}
	var keyFunc starlark.Callable
	if err := starlark.UnpackArgs(fn.Name(), nil, kwargs, "key?", &keyFunc); err != nil {
		return nil, err
	}
	op := syntax.LT
	if fn.Name() == "max" {
		op = syntax.GT
	}
	var iterable starlark.Value = args
	if len(args) == 1 {
		iterable = args[0]
	}
	iter := starlark.Iterate(iterable)
	if iter == nil {
		return nil, fmt.Errorf("%s: %s value is not iterable", fn.Name(), iterable.Type())
	}
	defer iter.Done()
	var extremum starlark.Value
	if !iter.Next(&extremum) {
		return nil, fmt.Errorf("%s: argument is an empty sequence", fn.Name())
	}
	keyOf := func(x starlark.Value) (starlark.Value, error) {
		if keyFunc == nil {
			return x, nil
		}
		return starlark.Call(thread, keyFunc, starlark.Tuple{x}, nil)
	}
	extremeKey, err := keyOf(extremum)
	if err != nil {
		return nil, err
	}
	var x starlark.Value
	for iter.Next(&x) {
		if err := b.tick(); err != nil {
			return nil, err
		}
		key, err := keyOf(x)
		if err != nil {
			return nil, err
		}
		if err := b.compareCost(key, extremeKey); err != nil {
			return nil, err
		}
		if ok, err := starlark.Compare(op, key, extremeKey); err != nil {
			return nil, fmt.Errorf("%s: %v", fn.Name(), err)
		} else if ok {
			extremum, extremeKey = x, key
		}
	}
	return extremum, nil
}

func (b *Budget) str(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x starlark.Value
	if err := starlark.UnpackPositionalArgs("str", args, kwargs, 1, &x); err != nil {
		return nil, err
	}
	switch x := x.(type) {
	case starlark.String:
		return x, nil
	case starlark.Bytes:
		return original(nil, "str", args, kwargs) // decodes, at most its own size
	}
	return b.render("str", x, true)
}

func (b *Budget) repr(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x starlark.Value
	if err := starlark.UnpackPositionalArgs("repr", args, kwargs, 1, &x); err != nil {
		return nil, err
	}
	return b.render("repr", x, false)
}

// joined writes args as print and fail do.
func (b *Budget) joined(fn string, args starlark.Tuple, kwargs []starlark.Tuple, prefix string) (string, error) {
	sep := " "
	if err := starlark.UnpackArgs(fn, nil, kwargs, "sep?", &sep); err != nil {
		return "", err
	}
	w := b.writer(fn)
	w.str(prefix)
	for i, v := range args {
		if i > 0 {
			w.str(sep)
		}
		if bs, ok := v.(starlark.Bytes); ok && fn == "print" {
			w.str(string(bs))
		} else {
			w.strValue(v)
		}
	}
	s, err := w.text()
	return string(s), err
}

func (b *Budget) print(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	s, err := b.joined("print", args, kwargs, "")
	if err != nil {
		return nil, err
	}
	if thread.Print != nil {
		thread.Print(thread, s)
	}
	return starlark.None, nil
}

func (b *Budget) fail(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	s, err := b.joined("fail", args, kwargs, "fail: ")
	if err != nil {
		return nil, err
	}
	return nil, errors.New(s)
}

// int refuses to parse more digits than Python does (parsing is quadratic).
func (b *Budget) int(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) > 0 {
		if s, ok := starlark.AsString(args[0]); ok && len(strings.TrimSpace(s)) > MaxIntDigits {
			return nil, fmt.Errorf("int: string of %d characters is too long to parse; at most %d digits are allowed", len(s), MaxIntDigits)
		}
	}
	return original(thread, "int", args, kwargs)
}

// getattr gives the accounting version of a costly method.
func (b *Budget) getattr(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	v, err := original(thread, "getattr", args, kwargs)
	if err != nil {
		return nil, err
	}
	return b.opMethod(thread, starlark.Tuple{v})
}
