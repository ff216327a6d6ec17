package builtins

import (
	"strings"

	"go.starlark.net/syntax"

	"github.com/talon-dev/talon/builtins/probe"
)

// staticRun is a program a policy function runs, found without running it.
type staticRun struct {
	pos  string // of the call, "file:line:col"
	prog string
	via  string // the builtin: exec.run, kubectl.run, ssh.run
}

// runBuiltins are the run-phase builtins that run a program, and the
// program each runs when it is not named by the argv itself.
var runBuiltins = map[string]string{"exec.run": "", "kubectl.run": "kubectl", "ssh.run": "ssh"}

// shells run their -c argument as a command line.
var shells = map[string]bool{"sh": true, "bash": true, "zsh": true, "dash": true, "/bin/sh": true, "/bin/bash": true, "/bin/zsh": true}

// staticRuns walks the syntax trees of every policy file the load read for
// calls of exec.run, kubectl.run and ssh.run inside functions (the only
// place they may be called), and returns the programs they run where the
// source names them: the first element of a literal argv, the programs of
// a literal "sh -c" command line, and kubectl or ssh themselves. An argv
// computed at run time is not seen here; it is logged at its first run
// instead (notfound.go). A call with optional = True is left out.
func (c *collector) staticRuns() []staticRun {
	var out []staticRun
	for _, f := range c.files {
		if f.data == nil || strings.Contains(f.key, ":") { // services:…, config:
			continue
		}
		file, err := FileOptions().Parse(f.key, f.data, 0)
		if err != nil {
			continue // it loaded, so it parses; nothing to add if not
		}
		syntax.Walk(file, func(n syntax.Node) bool {
			call, ok := n.(*syntax.CallExpr)
			if !ok {
				return true
			}
			name := dotted(call.Fn)
			fixed, isRun := runBuiltins[name]
			if !isRun || optionalCall(call) {
				return true
			}
			pos := call.Lparen.String()
			if fixed != "" {
				out = append(out, staticRun{pos: pos, prog: fixed, via: name})
				return true
			}
			for _, prog := range argvPrograms(argvOf(call)) {
				out = append(out, staticRun{pos: pos, prog: prog, via: name})
			}
			return true
		})
	}
	return out
}

// dotted is "module.name" for a call of module.name, else "".
func dotted(e syntax.Expr) string {
	d, ok := e.(*syntax.DotExpr)
	if !ok {
		return ""
	}
	x, ok := d.X.(*syntax.Ident)
	if !ok {
		return ""
	}
	return x.Name + "." + d.Name.Name
}

// argvOf is the argv argument of a call: the first positional, or argv=.
func argvOf(call *syntax.CallExpr) syntax.Expr {
	for _, a := range call.Args {
		if b, ok := a.(*syntax.BinaryExpr); ok && b.Op == syntax.EQ {
			if id, ok := b.X.(*syntax.Ident); ok && id.Name == "argv" {
				return b.Y
			}
			continue
		}
		return a
	}
	return nil
}

// optionalCall reports a call with optional = True.
func optionalCall(call *syntax.CallExpr) bool {
	for _, a := range call.Args {
		if b, ok := a.(*syntax.BinaryExpr); ok && b.Op == syntax.EQ {
			id, _ := b.X.(*syntax.Ident)
			v, _ := b.Y.(*syntax.Ident)
			if id != nil && id.Name == "optional" && v != nil && v.Name == "True" {
				return true
			}
		}
	}
	return false
}

// argvPrograms is what a literal argv runs: its program and, for a shell
// given a literal command line with -c, the programs of that line.
func argvPrograms(e syntax.Expr) []string {
	var elems []syntax.Expr
	switch x := e.(type) {
	case *syntax.ListExpr:
		elems = x.List
	case *syntax.TupleExpr:
		elems = x.List
	default:
		return nil
	}
	words := make([]string, len(elems))
	for i, el := range elems {
		if lit, ok := el.(*syntax.Literal); ok {
			if s, ok := lit.Value.(string); ok {
				words[i] = s
			}
		}
	}
	if len(words) == 0 || words[0] == "" {
		return nil
	}
	out := []string{words[0]}
	for i := 1; i+1 < len(words) && shells[words[0]]; i++ {
		if strings.HasPrefix(words[i], "-") && strings.Contains(words[i], "c") {
			out = append(out, probe.ShellPrograms(words[i+1])...)
			break
		}
	}
	return out
}
