package bound

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.starlark.net/starlark"
)

// methodFn checks a call of a costly method of a built-in type, then makes
// it (orig is go.starlark.net's method, bound to the receiver).
type methodFn func(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)

var (
	stringMethods = map[string]methodFn{
		"join":       stringJoin,
		"replace":    stringReplace,
		"split":      stringSplit,
		"rsplit":     stringSplit,
		"splitlines": stringSplitlines,
		"lower":      sameSize,
		"upper":      sameSize,
		"title":      sameSize,
		"capitalize": sameSize,
		"format":     stringFormat,
	}
	listMethods = map[string]methodFn{
		"append": listGrow,
		"insert": listGrow,
		"extend": listExtend,
		"index":  listSearch,
		"remove": listSearch,
	}
	dictMethods = map[string]methodFn{
		"get":        dictKey(false),
		"pop":        dictKey(false),
		"setdefault": dictKey(true),
		"update":     dictUpdate,
		"items":      dictView(slotBytes + headerBytes + 2*slotBytes),
		"keys":       dictView(slotBytes),
		"values":     dictView(slotBytes),
	}
	setMethods = map[string]methodFn{
		"add":                  setKey(true),
		"discard":              setKey(false),
		"remove":               setKey(false),
		"union":                setOthers,
		"update":               setOthers,
		"difference":           setOthers,
		"intersection":         setOthers,
		"symmetric_difference": setOthers,
		"issubset":             setOthers,
		"issuperset":           setOthers,
	}
)

// opMethod is talon$method(x.name): a costly method of a string, list,
// dict or set becomes its accounting version; anything else (a struct
// field called get, a method of a Talon value) is returned as it is.
func (b *Budget) opMethod(_ *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	m, ok := args[0].(*starlark.Builtin)
	if !ok || m.Receiver() == nil {
		return args[0], nil
	}
	var table map[string]methodFn
	switch m.Receiver().(type) {
	case starlark.String:
		table = stringMethods
	case *starlark.List:
		table = listMethods
	case *starlark.Dict:
		table = dictMethods
	case *starlark.Set:
		table = setMethods
	}
	check := table[m.Name()]
	if check == nil {
		return m, nil
	}
	return starlark.NewBuiltin(m.Name(), func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		b, err := From(thread)
		if err != nil {
			return nil, err
		}
		return check(b, thread, m, args, kwargs)
	}).BindReceiver(m.Receiver()), nil
}

func recvString(m *starlark.Builtin) string { return string(m.Receiver().(starlark.String)) }

func stringJoin(b *Budget, _ *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	sep := recvString(orig)
	var iterable starlark.Iterable
	if err := starlark.UnpackPositionalArgs(orig.Name(), args, kwargs, 1, &iterable); err != nil {
		return nil, err
	}
	iter := iterable.Iterate()
	defer iter.Done()
	var parts []string
	var size int64
	var x starlark.Value
	for iter.Next(&x) {
		if err := b.tick(); err != nil {
			return nil, err
		}
		s, ok := starlark.AsString(x)
		if !ok {
			return nil, fmt.Errorf("join: in list, want string, got %s", x.Type())
		}
		if len(parts) > 0 {
			size += int64(len(sep))
		}
		size += int64(len(s)) + slotBytes
		if size > b.lim.Bytes-b.used {
			return nil, b.alloc(size, func() string { return fmt.Sprintf("join of more than %d strings, %s of text", len(parts), Size(size)) })
		}
		parts = append(parts, s)
	}
	if err := b.alloc(stringBytes+size, func() string { return "join" }); err != nil {
		return nil, err
	}
	if err := b.work(size / 64); err != nil {
		return nil, err
	}
	return starlark.String(strings.Join(parts, sep)), nil
}

func stringReplace(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	s := recvString(orig)
	var old, new string
	count := -1
	if err := starlark.UnpackPositionalArgs(orig.Name(), args, kwargs, 2, &old, &new, &count); err == nil {
		n := int64(strings.Count(s, old))
		if count >= 0 && int64(count) < n {
			n = int64(count)
		}
		size := add(int64(len(s)), mul(n, int64(len(new))))
		if err := b.alloc(stringBytes+size, func() string {
			return fmt.Sprintf("replace of %d occurrences with %d bytes each", n, len(new))
		}); err != nil {
			return nil, err
		}
		if err := b.work(size / 64); err != nil {
			return nil, err
		}
	}
	return orig.CallInternal(thread, args, kwargs)
}

func stringSplit(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	s := recvString(orig)
	var sep starlark.Value
	maxsplit := -1
	if err := starlark.UnpackPositionalArgs(orig.Name(), args, kwargs, 0, &sep, &maxsplit); err == nil {
		var n int64
		if str, ok := sep.(starlark.String); ok && str != "" {
			n = int64(strings.Count(s, string(str))) + 1
		} else {
			n = fields(s)
		}
		if maxsplit >= 0 && int64(maxsplit)+1 < n {
			n = int64(maxsplit) + 1
		}
		if err := pieces(b, n, orig.Name()); err != nil {
			return nil, err
		}
	}
	return orig.CallInternal(thread, args, kwargs)
}

func stringSplitlines(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := pieces(b, int64(strings.Count(recvString(orig), "\n"))+1, "splitlines"); err != nil {
		return nil, err
	}
	return orig.CallInternal(thread, args, kwargs)
}

// pieces charges a list of n substrings (which share the receiver's bytes).
func pieces(b *Budget, n int64, what string) error {
	if err := b.alloc(add(headerBytes, mul(slotBytes+stringBytes, n)), func() string { return fmt.Sprintf("%s into %d strings", what, n) }); err != nil {
		return err
	}
	return b.work(n)
}

// fields counts the whitespace-separated fields of s, as strings.Fields would.
func fields(s string) int64 {
	var n int64
	in := false
	for _, r := range s {
		sp := r < utf8.RuneSelf && (r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r') || r >= utf8.RuneSelf && unicode.IsSpace(r)
		if !sp && !in {
			n++
		}
		in = !sp
	}
	return n
}

// sameSize is lower, upper, title and capitalize: a new string of about the
// receiver's size.
func sameSize(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	n := int64(len(recvString(orig)))
	if err := b.alloc(stringBytes+n, func() string { return fmt.Sprintf("%s of %s", orig.Name(), Size(n)) }); err != nil {
		return nil, err
	}
	if err := b.work(n / 64); err != nil {
		return nil, err
	}
	return orig.CallInternal(thread, args, kwargs)
}

func stringFormat(b *Budget, _ *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return b.format(recvString(orig), args, kwargs)
}

func listGrow(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := b.alloc(slotBytes, func() string { return orig.Name() }); err != nil {
		return nil, err
	}
	return orig.CallInternal(thread, args, kwargs)
}

func listExtend(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) == 1 {
		x, err := b.elements(args[0], slotBytes, "extend")
		if err != nil {
			return nil, err
		}
		args = starlark.Tuple{x}
	}
	return orig.CallInternal(thread, args, kwargs)
}

// listSearch is index and remove: they compare the value with each element.
func listSearch(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) > 0 {
		if err := b.containsCost(args[0], orig.Receiver()); err != nil {
			return nil, fmt.Errorf("%s: %v", orig.Name(), err)
		}
	}
	return orig.CallInternal(thread, args, kwargs)
}

// dictKey is get, pop and setdefault (grows: it may add an entry).
func dictKey(grows bool) methodFn {
	return func(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(args) > 0 {
			if err := b.hashCost(args[0]); err != nil {
				return nil, err
			}
		}
		if grows {
			if err := b.alloc(entryBytes, func() string { return orig.Name() }); err != nil {
				return nil, err
			}
		}
		return orig.CallInternal(thread, args, kwargs)
	}
}

func dictUpdate(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	args, err := b.pairs("update", args, kwargs)
	if err != nil {
		return nil, err
	}
	return orig.CallInternal(thread, args, kwargs)
}

// dictView is items, keys and values: a new list of per bytes per entry.
func dictView(per int64) methodFn {
	return func(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		n := int64(orig.Receiver().(*starlark.Dict).Len())
		if err := b.alloc(add(headerBytes, mul(per, n)), func() string { return fmt.Sprintf("%s of %d entries", orig.Name(), n) }); err != nil {
			return nil, err
		}
		if err := b.work(n); err != nil {
			return nil, err
		}
		return orig.CallInternal(thread, args, kwargs)
	}
}

// setKey is add (grows), discard and remove.
func setKey(grows bool) methodFn {
	return func(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(args) > 0 {
			if err := b.hashCost(args[0]); err != nil {
				return nil, err
			}
		}
		if grows {
			if err := b.alloc(entryBytes, func() string { return orig.Name() }); err != nil {
				return nil, err
			}
		}
		return orig.CallInternal(thread, args, kwargs)
	}
}

// setOthers is union, update and the other methods that take iterables:
// each is drawn, charged and its elements' hashing checked.
func setOthers(b *Budget, thread *starlark.Thread, orig *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	drawn := make(starlark.Tuple, len(args))
	for i, a := range args {
		x, err := b.keys(a, orig.Name())
		if err != nil {
			return nil, err
		}
		drawn[i] = x
	}
	if n := int64(starlark.Len(orig.Receiver())); orig.Name() == "union" {
		if err := b.alloc(add(headerBytes, mul(entryBytes, n)), func() string { return "union" }); err != nil {
			return nil, err
		}
	}
	return orig.CallInternal(thread, drawn, kwargs)
}
