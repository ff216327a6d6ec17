package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/talon-dev/talon/engine"
)

// position is where a key or table first appears in a document, and the
// kind of its value.
type position struct {
	line, col int
	kind      unstable.Kind
}

// positions maps key paths (parts joined by keyOf) to their positions.
type positions map[string]position

func keyOf(parts ...string) string { return strings.Join(parts, "\x00") }

// scanPositions records where every table and key of doc is. It stops at the
// first syntax error; the decoder reports that one.
func scanPositions(doc []byte) positions {
	// The decoder skips a UTF-8 byte order mark; so must the scan, or it
	// stops at once and every position (and `enabled` detection) is lost.
	doc = bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf"))
	out := positions{}
	var p unstable.Parser
	p.Reset(doc)
	var table []string
	record := func(parts []string, nodes []*unstable.Node, from int, kind unstable.Kind) {
		for i := from; i < len(parts); i++ {
			k := keyOf(parts[:i+1]...)
			if _, ok := out[k]; ok {
				continue
			}
			sh := p.Shape(nodes[i-from].Raw)
			k2 := unstable.Table
			if i == len(parts)-1 {
				k2 = kind
			}
			out[k] = position{line: sh.Start.Line, col: sh.Start.Column, kind: k2}
		}
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, nodes := keyParts(e.Key())
			table = parts
			record(parts, nodes, 0, unstable.Table)
		case unstable.KeyValue:
			parts, nodes := keyParts(e.Key())
			full := append(append([]string(nil), table...), parts...)
			record(full, nodes, len(table), e.Value().Kind)
		}
	}
	return out
}

func keyParts(it unstable.Iterator) ([]string, []*unstable.Node) {
	var parts []string
	var nodes []*unstable.Node
	for it.Next() {
		n := it.Node()
		parts = append(parts, string(n.Data))
		nodes = append(nodes, n)
	}
	return parts, nodes
}

// decodeStrict decodes doc into v, rejecting unknown keys, and turns the
// decoder's errors into one-line *engine.PosError values at the offending key.
func decodeStrict(file string, doc []byte, v any) error {
	doc = bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf"))
	err := toml.NewDecoder(bytes.NewReader(doc)).DisallowUnknownFields().Decode(v)
	if err == nil {
		return nil
	}
	root := reflect.TypeOf(v).Elem()
	var se *toml.StrictMissingError
	if errors.As(err, &se) && len(se.Errors) > 0 {
		e := &se.Errors[0]
		line, col := e.Position()
		return &engine.PosError{File: file, Line: line, Col: col, Message: unknownMessage(root, e.Key(), scanPositions(doc))}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if key := de.Key(); len(key) > 0 && strings.HasPrefix(msg, "cannot decode") {
			if m := typeMessage(root, key, scanPositions(doc)); m != "" {
				msg = m
			}
		}
		return &engine.PosError{File: file, Line: line, Col: col, Message: msg}
	}
	return &engine.PosError{File: file, Message: err.Error()}
}

// unknownMessage explains a key the target type has no field for.
func unknownMessage(t reflect.Type, key []string, pos positions) string {
	for i, part := range key {
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
			continue
		case reflect.Struct:
		default:
			return fmt.Sprintf("unexpected key %q", strings.Join(key[:i+1], "."))
		}
		f, ok := fieldByTag(t, part)
		if ok {
			t = f.Type
			continue
		}
		where := ""
		if i > 0 {
			where = " in [" + strings.Join(key[:i], ".") + "]"
		}
		what := "key"
		if p, ok := pos[keyOf(key[:i+1]...)]; ok && p.kind == unstable.Table {
			what = "table"
		}
		known := tomlKeys(t)
		if s := suggest(part, known); s != "" {
			return fmt.Sprintf("unknown %s %q%s; did you mean %q?", what, part, where, s)
		}
		return fmt.Sprintf("unknown %s %q%s; known keys: %s", what, part, where, strings.Join(known, ", "))
	}
	return fmt.Sprintf("unknown key %q", strings.Join(key, "."))
}

// typeMessage explains a value of the wrong type, or returns "".
func typeMessage(t reflect.Type, key []string, pos positions) string {
	for _, part := range key {
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := fieldByTag(t, part)
			if !ok {
				return ""
			}
			t = f.Type
		default:
			return ""
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	want := typeName(t)
	p, ok := pos[keyOf(key...)]
	if want == "" || !ok {
		return ""
	}
	name := strings.Join(key, ".")
	if p.kind == unstable.Array && t.Kind() == reflect.Slice {
		return fmt.Sprintf("%s: want %s, and every item must be %s", name, want, typeName(t.Elem()))
	}
	return fmt.Sprintf("%s: want %s, got %s", name, want, kindName(p.kind))
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a table"
	}
	return ""
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Bool:
		return "a boolean"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable, unstable.Table, unstable.ArrayTable:
		return "a table"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "a date"
	}
	return "a " + strings.ToLower(k.String())
}

// fieldByTag finds the field of struct t whose toml tag is name, looking
// through embedded structs as the decoder does.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			if g, ok := fieldByTag(f.Type, name); ok {
				return g, true
			}
			continue
		}
		if tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// suggest returns the known key closest to s, if it is close enough to be a typo.
func suggest(s string, known []string) string {
	limit := 1
	if len(s) >= 6 {
		limit = 2
	}
	best, bestD := "", limit+1
	for _, k := range known {
		if d := distance(strings.ToLower(s), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent bytes.
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
