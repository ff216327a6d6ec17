package bound

import (
	"errors"
	"fmt"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// hidden are the builtins the rewrite calls; see rewrite.go.
var hidden = starlark.StringDict{}

func init() {
	for name, fn := range map[string]func(*Budget, *starlark.Thread, starlark.Tuple) (starlark.Value, error){
		opBinary:   (*Budget).opBinary,
		opAug:      (*Budget).opAug,
		opAugIndex: (*Budget).opAugIndex,
		opAugAttr:  (*Budget).opAugAttr,
		opCount:    (*Budget).opCount,
		opSlice:    (*Budget).opSlice,
		opElem:     (*Budget).opElem,
		opDictKey:  (*Budget).opDictKey,
		opKey:      (*Budget).opKey,
		opMethod:   (*Budget).opMethod,
		opStar:     (*Budget).opStar,
		opStarStar: (*Budget).opStarStar,
	} {
		hidden[name] = starlark.NewBuiltin(name, func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			b, err := From(thread)
			if err != nil {
				return nil, err
			}
			return fn(b, thread, args)
		})
	}
	hidden.Freeze()
}

func token(v starlark.Value) syntax.Token {
	n, _ := v.(starlark.Int).Int64()
	return syntax.Token(n)
}

// opBinary is x <op> y: talon$op(TOKEN, x, y).
func (b *Budget) opBinary(_ *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	return b.binary(token(args[0]), args[1], args[2])
}

func (b *Budget) binary(op syntax.Token, x, y starlark.Value) (starlark.Value, error) {
	switch op {
	case syntax.EQL, syntax.NEQ, syntax.LT, syntax.LE, syntax.GT, syntax.GE:
		if err := b.compareCost(x, y); err != nil {
			return nil, err
		}
		ok, err := starlark.Compare(op, x, y)
		if err != nil {
			return nil, err
		}
		return starlark.Bool(ok), nil
	case syntax.IN, syntax.NOT_IN:
		if err := b.containsCost(x, y); err != nil {
			return nil, err
		}
	case syntax.PLUS:
		if err := b.alloc(plusSize(x, y), func() string {
			return fmt.Sprintf("%s + %s of %d and %d elements", x.Type(), y.Type(), starlark.Len(x), starlark.Len(y))
		}); err != nil {
			return nil, err
		}
	case syntax.STAR:
		if size, what := repeatSize(x, y); size > 0 {
			if err := b.alloc(size, func() string { return what }); err != nil {
				return nil, err
			}
		}
	case syntax.PERCENT:
		if s, ok := x.(starlark.String); ok {
			return b.interpolate(string(s), y)
		}
	case syntax.PIPE, syntax.AMP, syntax.CIRCUMFLEX, syntax.MINUS:
		if setLike(x) && setLike(y) {
			n := int64(starlark.Len(x) + starlark.Len(y))
			if err := b.alloc(headerBytes+mul(entryBytes, n), func() string { return fmt.Sprintf("%s %s %s of %d elements", x.Type(), op, y.Type(), n) }); err != nil {
				return nil, err
			}
			if err := b.work(n); err != nil {
				return nil, err
			}
		}
	}
	z, err := starlark.Binary(op, x, y)
	if err != nil {
		return nil, err
	}
	if err := checkInt(z); err != nil {
		return nil, err
	}
	return z, nil
}

func setLike(v starlark.Value) bool {
	switch v.(type) {
	case *starlark.Dict, *starlark.Set:
		return true
	}
	return false
}

// plusSize is the size of x + y for strings, bytes, lists and tuples.
func plusSize(x, y starlark.Value) int64 {
	switch x := x.(type) {
	case starlark.String:
		if y, ok := y.(starlark.String); ok {
			return stringBytes + int64(len(x)) + int64(len(y))
		}
	case starlark.Bytes:
		if y, ok := y.(starlark.Bytes); ok {
			return stringBytes + int64(len(x)) + int64(len(y))
		}
	case *starlark.List:
		if y, ok := y.(*starlark.List); ok {
			return headerBytes + slotBytes*int64(x.Len()+y.Len())
		}
	case starlark.Tuple:
		if y, ok := y.(starlark.Tuple); ok {
			return headerBytes + slotBytes*int64(len(x)+len(y))
		}
	}
	return 0
}

// repeatSize is the size of x * y when one is a string, bytes, list or
// tuple and the other an int, with a description for the error.
func repeatSize(x, y starlark.Value) (int64, string) {
	if _, ok := x.(starlark.Int); ok {
		x, y = y, x
	}
	n, ok := y.(starlark.Int)
	if !ok {
		return 0, ""
	}
	count, ok := n.Int64()
	if !ok {
		count = 1 << 62
	}
	if count <= 0 {
		return 0, ""
	}
	var unit, elems int64
	switch x := x.(type) {
	case starlark.String:
		unit, elems = 1, int64(len(x))
	case starlark.Bytes:
		unit, elems = 1, int64(len(x))
	case *starlark.List:
		unit, elems = slotBytes, int64(x.Len())
	case starlark.Tuple:
		unit, elems = slotBytes, int64(len(x))
	default:
		return 0, ""
	}
	if elems == 0 {
		return 0, ""
	}
	return add(headerBytes, mul(mul(unit, elems), count)),
		fmt.Sprintf("%s of %d elements repeated %s times", x.Type(), elems, n)
}

// opAug is x op= y where x is a name: x = talon$aug(TOKEN, x, y). Like the
// interpreter, += on a list and |= on a dict update x in place.
func (b *Budget) opAug(thread *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	return b.augmented(thread, token(args[0]), args[1], args[2])
}

func (b *Budget) augmented(thread *starlark.Thread, op syntax.Token, x, y starlark.Value) (starlark.Value, error) {
	switch op {
	case syntax.PLUS:
		if l, ok := x.(*starlark.List); ok {
			if _, ok := y.(starlark.Iterable); ok {
				y, err := b.elements(y, slotBytes, "list +=")
				if err != nil {
					return nil, err
				}
				ext, _ := l.Attr("extend")
				if _, err := ext.(*starlark.Builtin).CallInternal(thread, starlark.Tuple{y}, nil); err != nil {
					return nil, errors.New(strings.Replace(err.Error(), "extend: cannot extend ", "cannot apply += to ", 1))
				}
				return l, nil
			}
		}
	case syntax.PIPE:
		if d, ok := x.(*starlark.Dict); ok {
			if yd, ok := y.(*starlark.Dict); ok {
				if err := b.alloc(mul(entryBytes, int64(yd.Len())), func() string { return fmt.Sprintf("dict |= of %d entries", yd.Len()) }); err != nil {
					return nil, err
				}
				for _, kv := range yd.Items() {
					if err := d.SetKey(kv[0], kv[1]); err != nil {
						return nil, errors.New(strings.Replace(err.Error(), "cannot insert into ", "cannot apply |= to ", 1))
					}
				}
				return d, nil
			}
		}
	}
	return b.binary(op, x, y)
}

// opAugIndex is x[i] op= y: talon$augindex(x, i, TOKEN, y). It reads and
// writes x[i] as the interpreter does, with the same errors.
func (b *Budget) opAugIndex(thread *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	x, i, op, y := args[0], args[1], token(args[2]), args[3]
	old, err := getIndex(x, i)
	if err != nil {
		return nil, err
	}
	z, err := b.augmented(thread, op, old, y)
	if err != nil {
		return nil, err
	}
	return starlark.None, setIndex(x, i, z)
}

func getIndex(x, y starlark.Value) (starlark.Value, error) {
	switch x := x.(type) {
	case starlark.Mapping:
		z, found, err := x.Get(y)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("key %s not in %s", shortRepr(y), x.Type())
		}
		return z, nil
	case starlark.Indexable:
		n := x.Len()
		i, err := starlark.AsInt32(y)
		if err != nil {
			return nil, fmt.Errorf("%s index: %s", x.Type(), err)
		}
		orig := i
		if i < 0 {
			i += n
		}
		if i < 0 || i >= n {
			return nil, outOfRange(orig, n, x)
		}
		return x.Index(i), nil
	}
	return nil, fmt.Errorf("unhandled index operation %s[%s]", x.Type(), y.Type())
}

func setIndex(x, y, z starlark.Value) error {
	switch x := x.(type) {
	case starlark.HasSetKey:
		return x.SetKey(y, z)
	case starlark.HasSetIndex:
		n := x.Len()
		i, err := starlark.AsInt32(y)
		if err != nil {
			return err
		}
		orig := i
		if i < 0 {
			i += n
		}
		if i < 0 || i >= n {
			return outOfRange(orig, n, x)
		}
		return x.SetIndex(i, z)
	}
	return fmt.Errorf("%s value does not support item assignment", x.Type())
}

func outOfRange(i, n int, x starlark.Value) error {
	if n == 0 {
		return fmt.Errorf("index %d out of range: empty %s", i, x.Type())
	}
	return fmt.Errorf("%s index %d out of range [%d:%d]", x.Type(), i, -n, n-1)
}

// opAugAttr is x.f op= y: talon$augattr(x, "f", TOKEN, y).
func (b *Budget) opAugAttr(thread *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	x, name, op, y := args[0], string(args[1].(starlark.String)), token(args[2]), args[3]
	h, ok := x.(starlark.HasAttrs)
	if !ok {
		return nil, fmt.Errorf("%s has no .%s field or method", x.Type(), name)
	}
	old, err := h.Attr(name)
	if err != nil {
		return nil, err
	}
	if old == nil {
		return nil, fmt.Errorf("%s has no .%s field or method", x.Type(), name)
	}
	z, err := b.augmented(thread, op, old, y)
	if err != nil {
		return nil, err
	}
	s, ok := x.(starlark.HasSetField)
	if !ok {
		return nil, fmt.Errorf("can't assign to .%s field of %s", name, x.Type())
	}
	return starlark.None, s.SetField(name, z)
}

// opCount charges a literal or a slice once it is built (its size is bounded
// by the source text or by the value sliced).
func (b *Budget) opCount(_ *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	v := args[0]
	if err := b.alloc(sizeOf(v), func() string { return fmt.Sprintf("%s of %d elements", v.Type(), starlark.Len(v)) }); err != nil {
		return nil, err
	}
	return v, nil
}

// opSlice charges a slice: a list is always a copy; a string, bytes or
// tuple slice with a step of 1 shares the memory of the value sliced.
func (b *Budget) opSlice(_ *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	v, shared := args[0], token(args[1]) == 1
	size := sizeOf(v)
	switch v.(type) {
	case starlark.String, starlark.Bytes, starlark.Tuple:
		if shared {
			size = stringBytes
		}
	}
	if err := b.alloc(size, func() string { return fmt.Sprintf("slice of %d elements", starlark.Len(v)) }); err != nil {
		return nil, err
	}
	return v, nil
}

// opElem charges an element a list comprehension appends.
func (b *Budget) opElem(_ *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	if err := b.alloc(slotBytes, func() string { return "list comprehension" }); err != nil {
		return nil, err
	}
	return args[0], nil
}

// opDictKey checks and charges a key a dict comprehension sets.
func (b *Budget) opDictKey(_ *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	if err := b.hashCost(args[0]); err != nil {
		return nil, err
	}
	if err := b.alloc(entryBytes, func() string { return "dict comprehension" }); err != nil {
		return nil, err
	}
	return args[0], nil
}

// opKey checks a dict key or an index before the interpreter hashes it.
func (b *Budget) opKey(_ *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	if err := b.hashCost(args[0]); err != nil {
		return nil, err
	}
	return args[0], nil
}

// opStar checks f(*x): the interpreter copies x into the argument tuple.
func (b *Budget) opStar(_ *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	return b.elements(args[0], slotBytes, "*args")
}

// opStarStar checks f(**x).
func (b *Budget) opStarStar(_ *starlark.Thread, args starlark.Tuple) (starlark.Value, error) {
	x := args[0]
	if d, ok := x.(*starlark.Dict); ok {
		if err := b.alloc(mul(2*slotBytes, int64(d.Len())), func() string { return fmt.Sprintf("**kwargs of %d entries", d.Len()) }); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// elements makes x safe for a library function that iterates it to build
// something of unit bytes per element: a sequence is charged by its length;
// any other iterable is drawn into a tuple element by element, charged and
// cancellable as it goes. Other values are returned as they are, for the
// library to report.
func (b *Budget) elements(x starlark.Value, unit int64, what string) (starlark.Value, error) {
	if n := length(x); n >= 0 {
		if err := b.alloc(mul(unit, int64(n)), func() string { return fmt.Sprintf("%s of %d elements", what, n) }); err != nil {
			return nil, err
		}
		return x, b.work(int64(n))
	}
	it, ok := x.(starlark.Iterable)
	if !ok {
		return x, nil
	}
	iter := it.Iterate()
	defer iter.Done()
	var out starlark.Tuple
	var e starlark.Value
	for iter.Next(&e) {
		if err := b.alloc(unit+slotBytes, func() string { return fmt.Sprintf("%s of more than %d elements", what, len(out)) }); err != nil {
			return nil, err
		}
		if err := b.tick(); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// drain collects the elements of an iterable, charging unit bytes for each
// (before, for a sequence) and checking the deadline as it goes.
func (b *Budget) drain(x starlark.Value, unit int64, what string) ([]starlark.Value, error) {
	n := length(x)
	if n >= 0 {
		if err := b.alloc(mul(unit, int64(n)), func() string { return fmt.Sprintf("%s of %d elements", what, n) }); err != nil {
			return nil, err
		}
	}
	it, ok := x.(starlark.Iterable)
	if !ok {
		return nil, fmt.Errorf("%s: got %s, want iterable", what, x.Type())
	}
	iter := it.Iterate()
	defer iter.Done()
	out := make([]starlark.Value, 0, max(n, 0))
	var e starlark.Value
	for iter.Next(&e) {
		if n < 0 {
			if err := b.alloc(unit, func() string { return fmt.Sprintf("%s of more than %d elements", what, len(out)) }); err != nil {
				return nil, err
			}
		}
		if err := b.tick(); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// shortRepr is a bounded repr for error messages.
func shortRepr(v starlark.Value) string {
	switch v := v.(type) {
	case starlark.String:
		if len(v) > 64 {
			return syntax.Quote(string(v[:64]), false) + "..."
		}
		return syntax.Quote(string(v), false)
	case starlark.Int, starlark.Float, starlark.Bool, starlark.NoneType:
		return v.String()
	case *starlarkstruct.Struct:
		return "struct(...)"
	}
	return v.Type()
}
