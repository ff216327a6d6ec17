package bound

import (
	"errors"
	"fmt"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// writer prints values as str and repr do, within the budget: the text is
// checked against what is left of the memory budget as it grows, the cycle
// check is a set (go.starlark.net scans the path, which is quadratic in the
// depth), and nesting deeper than MaxDepth is an error (it recurses). It
// prints exactly what go.starlark.net prints, except where that would never
// end: a struct met again inside itself prints as struct(...).
type writer struct {
	b      *Budget
	fn     string // the builtin, for errors: "str", "repr", "%", ...
	out    strings.Builder
	path   []any        // containers being printed, outermost first
	deep   map[any]bool // the same as a set, once path is long
	depth  int
	visits int
	err    error
}

func (b *Budget) writer(fn string) *writer { return &writer{b: b, fn: fn} }

func (w *writer) str(s string) {
	if w.err != nil {
		return
	}
	if int64(w.out.Len())+int64(len(s)) > w.b.lim.Bytes-w.b.used {
		w.err = &Exceeded{Bound: "memory", Limit: Size(w.b.lim.Bytes), What: fmt.Sprintf("%s would produce more than %s of text", w.fn, Size(int64(w.out.Len()+len(s))))}
		w.b.thread.Cancel(w.err.Error())
		return
	}
	w.out.WriteString(s)
}

func (w *writer) byte(c byte) { w.str(string(c)) }

// text ends the writing: the string, charged.
func (w *writer) text() (starlark.String, error) {
	if w.err != nil {
		return "", w.err
	}
	n := int64(w.out.Len())
	if err := w.b.alloc(stringBytes+n, func() string { return w.fn }); err != nil {
		return "", err
	}
	if err := w.b.work(n / 64); err != nil {
		return "", err
	}
	return starlark.String(w.out.String()), nil
}

// str writes x as str(x) does: a string as it is, anything else as repr.
func (w *writer) strValue(x starlark.Value) {
	if s, ok := x.(starlark.String); ok {
		w.str(string(s))
		return
	}
	w.value(x)
}

// enter puts a list, dict or struct on the path of containers being
// printed; it reports false (and writes "...") when x is already on it: x
// contains itself. Short paths are scanned, long ones kept as a set too, so
// the check is never quadratic in the depth.
func (w *writer) enter(x any) bool {
	if w.onPath(x) {
		w.str("...")
		return false
	}
	w.path = append(w.path, x)
	if w.deep != nil {
		w.deep[x] = true
	} else if len(w.path) > 32 {
		w.deep = map[any]bool{}
		for _, p := range w.path {
			w.deep[p] = true
		}
	}
	return true
}

func (w *writer) onPath(x any) bool {
	if w.deep != nil {
		return w.deep[x]
	}
	for _, p := range w.path {
		if p == x {
			return true
		}
	}
	return false
}

func (w *writer) leave() {
	x := w.path[len(w.path)-1]
	w.path = w.path[:len(w.path)-1]
	if w.deep != nil {
		delete(w.deep, x)
	}
}

func (w *writer) value(x starlark.Value) {
	if w.err != nil {
		return
	}
	// A value printed costs about four interpreter steps.
	if w.visits++; w.visits%256 == 0 {
		if err := w.b.work(1024); err != nil {
			w.err = err
			return
		}
		if err := w.b.done(); err != nil {
			w.err = err
			return
		}
	}
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > MaxDepth {
		w.err = fmt.Errorf("%s: value nested more than %d levels deep", w.fn, MaxDepth)
		return
	}
	switch x := x.(type) {
	case nil:
		w.str("<nil>")
	case starlark.NoneType, starlark.Int, starlark.Bool, starlark.Float:
		w.str(x.String())
	case starlark.String:
		w.str(syntax.Quote(string(x), false))
	case *starlark.List:
		w.byte('[')
		if w.enter(x) {
			for i := 0; i < x.Len(); i++ {
				if i > 0 {
					w.str(", ")
				}
				w.value(x.Index(i))
			}
			w.leave()
		}
		w.byte(']')
	case starlark.Tuple:
		w.byte('(')
		for i, e := range x {
			if i > 0 {
				w.str(", ")
			}
			w.value(e)
		}
		if len(x) == 1 {
			w.byte(',')
		}
		w.byte(')')
	case *starlark.Function:
		w.str("<function " + x.Name() + ">")
	case *starlark.Builtin:
		if x.Receiver() != nil {
			w.str(fmt.Sprintf("<built-in method %s of %s value>", x.Name(), x.Receiver().Type()))
		} else {
			w.str(fmt.Sprintf("<built-in function %s>", x.Name()))
		}
	case *starlark.Dict:
		w.byte('{')
		if w.enter(x) {
			w.leave() // keys are printed outside the dict's path, as go.starlark.net does
			for i, kv := range x.Items() {
				if i > 0 {
					w.str(", ")
				}
				w.value(kv[0])
				w.str(": ")
				w.enter(x)
				w.value(kv[1])
				w.leave()
			}
		}
		w.byte('}')
	case *starlark.Set:
		w.str("set([")
		iter := x.Iterate()
		var e starlark.Value
		for i := 0; iter.Next(&e); i++ {
			if i > 0 {
				w.str(", ")
			}
			w.value(e)
		}
		iter.Done()
		w.str("])")
	case *starlarkstruct.Struct:
		if c, ok := x.Constructor().(starlark.String); ok {
			w.str(string(c))
		} else {
			w.value(x.Constructor())
		}
		w.byte('(')
		if w.enter(x) {
			for i, name := range x.AttrNames() {
				if i > 0 {
					w.str(", ")
				}
				w.str(name)
				w.str(" = ")
				f, err := x.Attr(name)
				if err != nil {
					w.err = err
					return
				}
				w.value(f)
			}
			w.leave()
		}
		w.byte(')')
	default:
		w.str(x.String())
	}
}

// render is repr(x), or str(x) when asStr.
func (b *Budget) render(fn string, x starlark.Value, asStr bool) (starlark.String, error) {
	w := b.writer(fn)
	if asStr {
		w.strValue(x)
	} else {
		w.value(x)
	}
	return w.text()
}

// interpolate is format % x, as go.starlark.net does it, with the text
// written within the budget.
func (b *Budget) interpolate(format string, x starlark.Value) (starlark.Value, error) {
	w := b.writer("%")
	index := 0
	nargs := 1
	if tuple, ok := x.(starlark.Tuple); ok {
		nargs = len(tuple)
	}
	for {
		i := strings.IndexByte(format, '%')
		if i < 0 {
			w.str(format)
			break
		}
		w.str(format[:i])
		format = format[i+1:]
		if format != "" && format[0] == '%' {
			w.byte('%')
			format = format[1:]
			continue
		}
		var arg starlark.Value
		if format != "" && format[0] == '(' {
			format = format[1:]
			j := strings.IndexByte(format, ')')
			if j < 0 {
				return nil, errors.New("incomplete format key")
			}
			key := format[:j]
			if dict, ok := x.(starlark.Mapping); !ok {
				return nil, errors.New("format requires a mapping")
			} else if v, found, _ := dict.Get(starlark.String(key)); found {
				arg = v
			} else {
				return nil, fmt.Errorf("key not found: %s", key)
			}
			format = format[j+1:]
		} else {
			if index >= nargs {
				return nil, errors.New("not enough arguments for format string")
			}
			if tuple, ok := x.(starlark.Tuple); ok {
				arg = tuple[index]
			} else {
				arg = x
			}
		}
		if format == "" {
			return nil, errors.New("incomplete format")
		}
		switch c := format[0]; c {
		case 's':
			w.strValue(arg)
		case 'r':
			w.value(arg)
		case '%':
			w.byte('%')
		default:
			// Numbers and characters print short: go.starlark.net does it.
			v, err := starlark.Binary(syntax.PERCENT, starlark.String("%"+string(c)), starlark.Tuple{arg})
			if err != nil {
				return nil, err
			}
			w.str(string(v.(starlark.String)))
		}
		if w.err != nil {
			return nil, w.err
		}
		format = format[1:]
		index++
	}
	if index < nargs {
		if _, ok := x.(starlark.Mapping); !ok {
			return nil, errors.New("too many arguments for format string")
		}
	}
	return w.text()
}

// format is str.format, as go.starlark.net does it, with the text written
// within the budget.
func (b *Budget) format(format string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	w := b.writer("format")
	var auto, manual bool
	index := 0
	for {
		literal := format
		i := strings.IndexByte(format, '{')
		if i >= 0 {
			literal = format[:i]
		}
		for {
			j := strings.IndexByte(literal, '}')
			if j < 0 {
				w.str(literal)
				break
			}
			if len(literal) == j+1 || literal[j+1] != '}' {
				return nil, errors.New("format: single '}' in format")
			}
			w.str(literal[:j+1])
			literal = literal[j+2:]
		}
		if i < 0 {
			break
		}
		if i+1 < len(format) && format[i+1] == '{' {
			w.byte('{')
			format = format[i+2:]
			continue
		}
		format = format[i+1:]
		i = strings.IndexByte(format, '}')
		if i < 0 {
			return nil, errors.New("format: unmatched '{' in format")
		}
		var arg starlark.Value
		conv := "s"
		var spec string
		field := format[:i]
		format = format[i+1:]
		var name string
		if i := strings.IndexByte(field, '!'); i < 0 {
			if i := strings.IndexByte(field, ':'); i < 0 {
				name = field
			} else {
				name, spec = field[:i], field[i+1:]
			}
		} else {
			name = field[:i]
			field = field[i+1:]
			if before, after, ok := strings.Cut(field, ":"); !ok {
				conv = field
			} else {
				conv, spec = before, after
			}
		}
		if name == "" {
			if manual {
				return nil, errors.New("format: cannot switch from manual field specification to automatic field numbering")
			}
			auto = true
			if index >= len(args) {
				return nil, errors.New("format: tuple index out of range")
			}
			arg = args[index]
			index++
		} else if num, ok := decimal(name); ok {
			if auto {
				return nil, errors.New("format: cannot switch from automatic field numbering to manual field specification")
			}
			manual = true
			if num >= len(args) {
				return nil, errors.New("format: tuple index out of range")
			}
			arg = args[num]
		} else {
			for _, kv := range kwargs {
				if string(kv[0].(starlark.String)) == name {
					arg = kv[1]
					break
				}
			}
			if arg == nil {
				switch {
				case strings.Contains(name, "."):
					return nil, fmt.Errorf("format: attribute syntax x.y is not supported in replacement fields: %s", name)
				case strings.Contains(name, "["):
					return nil, fmt.Errorf("format: element syntax a[i] is not supported in replacement fields: %s", name)
				case strings.Contains(name, "{"):
					return nil, errors.New("format: nested replacement fields not supported")
				}
				return nil, fmt.Errorf("format: keyword %s not found", name)
			}
		}
		if spec != "" {
			return nil, fmt.Errorf("format spec features not supported in replacement fields: %s", spec)
		}
		switch conv {
		case "s":
			w.strValue(arg)
		case "r":
			w.value(arg)
		default:
			return nil, fmt.Errorf("format: unknown conversion %q", conv)
		}
		if w.err != nil {
			return nil, w.err
		}
	}
	return w.text()
}

// decimal interprets s as a sequence of decimal digits.
func decimal(s string) (int, bool) {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > 1<<30 {
			return 0, false
		}
	}
	return n, s != ""
}
