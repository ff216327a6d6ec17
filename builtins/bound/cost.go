package bound

import (
	"fmt"
	"math"
	"math/bits"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Estimated sizes, in bytes, of what the interpreter allocates (measured on
// go.starlark.net with runtime.MemStats: the live heap per element, and for
// dicts and sets what building one allocates per entry, growth included).
const (
	headerBytes = 32  // a list, tuple, dict or set itself
	slotBytes   = 16  // one element of a list or tuple (an interface value)
	entryBytes  = 240 // one entry of a dict or set, with its share of the table's growth
	stringBytes = 16  // a string value besides its bytes
	wordBytes   = 8
)

// Per-operation limits on work that is not proportional to memory.
const (
	// MaxIntBits bounds the integers a policy may compute: multiplying or
	// printing larger ones is super-linear work in one step.
	MaxIntBits = 1 << 16
	// MaxIntDigits bounds the text int() parses (Python's own limit).
	MaxIntDigits = 4300
	// MaxVisit bounds the elements one comparison or hash may visit:
	// structures that share their elements ((t, t), [x] * 10) are walked
	// once per path, so their cost can be exponential in their size.
	MaxVisit = 1 << 20
	// MaxDepth bounds how deeply values may nest when printed, and how
	// deeply a loaded file's globals may nest (freezing them recurses).
	MaxDepth = 1000
)

// sizeOf is the estimated size of v itself, not counting elements that were
// charged when they were built.
func sizeOf(v starlark.Value) int64 {
	switch v := v.(type) {
	case starlark.String:
		return stringBytes + int64(len(v))
	case starlark.Bytes:
		return stringBytes + int64(len(v))
	case *starlark.List:
		return headerBytes + slotBytes*int64(v.Len())
	case starlark.Tuple:
		return headerBytes + slotBytes*int64(len(v))
	case *starlark.Dict:
		return headerBytes + entryBytes*int64(v.Len())
	case *starlark.Set:
		return headerBytes + entryBytes*int64(v.Len())
	case starlark.Int:
		if _, ok := v.Int64(); ok {
			return 0
		}
		return headerBytes + int64(intBits(v)/8)
	case starlark.Float:
		return wordBytes
	}
	return slotBytes
}

// mul multiplies sizes, saturating instead of overflowing.
func mul(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(lo)
}

func add(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func intBits(x starlark.Int) int {
	if n, ok := x.Int64(); ok {
		if n < 0 {
			n = -n
		}
		return bits.Len64(uint64(n))
	}
	return x.BigInt().BitLen()
}

func checkInt(v starlark.Value) error {
	if x, ok := v.(starlark.Int); ok && intBits(x) > MaxIntBits {
		return fmt.Errorf("integer too large: more than %d bits", MaxIntBits)
	}
	return nil
}

// length is the number of elements of a sequence, or -1.
func length(v starlark.Value) int {
	if s, ok := v.(starlark.Sequence); ok {
		return s.Len()
	}
	return -1
}

// visit counts the nodes a comparison of v may visit, up to limit+1:
// shared elements once per path, to the depth comparisons stop at.
func visit(v starlark.Value, depth int, limit int64) int64 {
	var n int64
	var walk func(v starlark.Value, d int)
	walk = func(v starlark.Value, d int) {
		n++
		if n > limit || d <= 0 {
			return
		}
		switch v := v.(type) {
		case starlark.String:
			n += int64(len(v)) / 64
		case *starlark.List:
			for i := 0; i < v.Len() && n <= limit; i++ {
				walk(v.Index(i), d-1)
			}
		case starlark.Tuple:
			for i := 0; i < len(v) && n <= limit; i++ {
				walk(v[i], d-1)
			}
		case *starlark.Dict:
			for _, kv := range v.Items() {
				if n > limit {
					return
				}
				walk(kv[0], d-1)
				walk(kv[1], d-1)
			}
		case *starlark.Set:
			n += int64(v.Len())
		case *starlarkstruct.Struct:
			for _, name := range v.AttrNames() {
				if n > limit {
					return
				}
				f, _ := v.Attr(name)
				if f != nil {
					walk(f, d-1)
				}
			}
		}
	}
	walk(v, depth)
	return n
}

// compareCost checks and charges a comparison of x and y: it visits at most
// the smaller of the two.
func (b *Budget) compareCost(x, y starlark.Value) error {
	if simple(x) || simple(y) {
		return nil
	}
	cx := visit(x, starlark.CompareLimit, MaxVisit)
	cy := visit(y, starlark.CompareLimit, MaxVisit)
	c := min(cx, cy)
	if c > MaxVisit {
		return fmt.Errorf("comparing %s with %s would visit more than %d elements (the values share elements or are too large)", x.Type(), y.Type(), MaxVisit)
	}
	return b.work(c)
}

// containsCost checks and charges x in y.
func (b *Budget) containsCost(x, y starlark.Value) error {
	switch y.(type) {
	case *starlark.Dict, *starlark.Set:
		return b.hashCost(x)
	case *starlark.List, starlark.Tuple:
		if simple(x) { // each comparison is over at the first element
			return b.work(int64(starlark.Len(y)))
		}
		c := visit(y, starlark.CompareLimit, MaxVisit)
		if c > MaxVisit {
			return fmt.Errorf("%s in %s would visit more than %d elements", x.Type(), y.Type(), MaxVisit)
		}
		return b.work(c)
	}
	return nil
}

// hashCost checks and charges hashing v, which walks tuples and structs to
// their leaves with no depth limit.
func (b *Budget) hashCost(v starlark.Value) error {
	switch v.(type) {
	case starlark.Tuple, *starlarkstruct.Struct:
	default:
		return nil
	}
	var n int64
	stack := []starlark.Value{v}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n++
		if n > MaxVisit {
			return fmt.Errorf("%s is too costly to hash: it has more than %d elements, counting shared ones each time", v.Type(), MaxVisit)
		}
		switch x := x.(type) {
		case starlark.Tuple:
			stack = append(stack, x...)
		case *starlarkstruct.Struct:
			for _, name := range x.AttrNames() {
				if f, _ := x.Attr(name); f != nil {
					stack = append(stack, f)
				}
			}
		}
	}
	return b.work(n)
}

// simple values compare in constant or linear time.
func simple(v starlark.Value) bool {
	switch v.(type) {
	case *starlark.List, starlark.Tuple, *starlark.Dict, *starlark.Set, *starlarkstruct.Struct:
		return false
	}
	return true
}

// MaxFreeze bounds the work of freezing a loaded file's globals. Freeze
// marks lists, dicts, sets and structs as it goes but walks a tuple every
// time it meets it, so a tuple that shares its elements ((t, t) built in a
// loop) costs exponential time to freeze; so does one nested too deeply.
const MaxFreeze = 4 << 20

// checkFreeze refuses globals that would cost more than MaxFreeze visits to
// freeze, or nest deeper than 10*MaxDepth levels (Freeze recurses), before
// they are frozen. It walks iteratively, as Freeze would.
func checkFreeze(g starlark.StringDict) (string, error) {
	type item struct {
		v     starlark.Value
		depth int
	}
	seen := map[any]bool{}
	var n int64
	for _, name := range g.Keys() {
		stack := []item{{g[name], 0}}
		for len(stack) > 0 {
			it := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if n++; n > MaxFreeze {
				return name, fmt.Errorf("global %s shares its elements so much that freezing it would visit more than %d elements", name, MaxFreeze)
			}
			if it.depth > 10*MaxDepth {
				return name, fmt.Errorf("global %s holds a value nested more than %d levels deep", name, 10*MaxDepth)
			}
			push := func(v starlark.Value) { stack = append(stack, item{v, it.depth + 1}) }
			switch x := it.v.(type) {
			case starlark.Tuple:
				for _, e := range x {
					push(e)
				}
			case *starlark.List:
				if !seen[x] {
					seen[x] = true
					for i := 0; i < x.Len(); i++ {
						push(x.Index(i))
					}
				}
			case *starlark.Dict:
				if !seen[x] {
					seen[x] = true
					for _, kv := range x.Items() {
						push(kv[0])
						push(kv[1])
					}
				}
			case *starlark.Set:
				if !seen[x] {
					seen[x] = true
					iter := x.Iterate()
					var e starlark.Value
					for iter.Next(&e) {
						push(e)
					}
					iter.Done()
				}
			case *starlarkstruct.Struct:
				if !seen[x] {
					seen[x] = true
					for _, a := range x.AttrNames() {
						if f, _ := x.Attr(a); f != nil {
							push(f)
						}
					}
				}
			case *starlark.Function:
				if !seen[x] {
					seen[x] = true
					for i := 0; i < x.NumParams(); i++ {
						if d := x.ParamDefault(i); d != nil {
							push(d)
						}
					}
				}
			}
		}
	}
	return "", nil
}
