package bound

import (
	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// The hidden builtins the rewrite calls. '$' cannot appear in a Starlark
// identifier, so no policy can name, shadow or call them.
const (
	opBinary   = "talon$op"       // talon$op(TOKEN, x, y): x <op> y
	opAug      = "talon$aug"      // x op= y on a name: x = talon$aug(TOKEN, x, y), in place for += and |=
	opAugIndex = "talon$augindex" // x[i] op= y: talon$augindex(x, i, TOKEN, y)
	opAugAttr  = "talon$augattr"  // x.f op= y: talon$augattr(x, "f", TOKEN, y)
	opCount    = "talon$count"    // a literal, charged once built
	opSlice    = "talon$slice"    // x[lo:hi:step]: talon$slice(x[...], 1 if the step is 1 else 0)
	opElem     = "talon$elem"     // an element appended by a list comprehension
	opDictKey  = "talon$dictkey"  // a key set by a dict comprehension
	opKey      = "talon$key"      // a dict key or an index, checked before it is hashed
	opMethod   = "talon$method"   // x.name for a costly method of a built-in type
	opStar     = "talon$star"     // f(*x)
	opStarStar = "talon$starstar" // f(**x)
)

// costlyMethods are the method names whose receiver may be a string, list,
// dict or set and whose work or result grows with their arguments. x.name
// for these becomes talon$method(x.name): the attribute is looked up as
// usual (same errors), and a method of a built-in type is swapped for its
// accounting version.
var costlyMethods = map[string]bool{
	"join": true, "replace": true, "split": true, "rsplit": true, "splitlines": true,
	"lower": true, "upper": true, "title": true, "capitalize": true, "format": true,
	"append": true, "extend": true, "insert": true, "index": true, "remove": true,
	"get": true, "pop": true, "setdefault": true, "update": true,
	"items": true, "keys": true, "values": true,
	"add": true, "discard": true, "union": true, "difference": true, "intersection": true,
	"symmetric_difference": true, "issubset": true, "issuperset": true,
}

// Rewrite routes the costly constructs of f through the hidden builtins; see
// the package documentation. Positions are kept: a hidden call sits where the
// construct it replaces was, so errors and step counts point at the same
// file:line:col as before.
func Rewrite(f *syntax.File) {
	f.Stmts = stmts(f.Stmts)
}

func stmts(ss []syntax.Stmt) []syntax.Stmt {
	for i, s := range ss {
		ss[i] = stmt(s)
	}
	return ss
}

func stmt(s syntax.Stmt) syntax.Stmt {
	switch s := s.(type) {
	case *syntax.AssignStmt:
		s.RHS = expr(s.RHS)
		if s.Op == syntax.EQ {
			s.LHS = target(s.LHS)
			return s
		}
		op := tokenLit(s.OpPos, s.Op-syntax.PLUS_EQ+syntax.PLUS)
		switch lhs := unparen(s.LHS).(type) {
		case *syntax.Ident:
			read := &syntax.Ident{NamePos: lhs.NamePos, Name: lhs.Name}
			return &syntax.AssignStmt{OpPos: s.OpPos, Op: syntax.EQ, LHS: lhs,
				RHS: call(s.OpPos, opAug, op, read, s.RHS)}
		case *syntax.IndexExpr:
			return &syntax.ExprStmt{X: call(s.OpPos, opAugIndex, expr(lhs.X), key(lhs.Lbrack, expr(lhs.Y)), op, s.RHS)}
		case *syntax.DotExpr:
			name := &syntax.Literal{Token: syntax.STRING, TokenPos: lhs.NamePos, Raw: `"` + lhs.Name.Name + `"`, Value: lhs.Name.Name}
			return &syntax.ExprStmt{X: call(s.OpPos, opAugAttr, expr(lhs.X), name, op, s.RHS)}
		}
		return s // the resolver reports what cannot be assigned to
	case *syntax.DefStmt:
		params(s.Params)
		s.Body = stmts(s.Body)
	case *syntax.ExprStmt:
		s.X = expr(s.X)
	case *syntax.IfStmt:
		s.Cond = expr(s.Cond)
		s.True = stmts(s.True)
		s.False = stmts(s.False)
	case *syntax.ForStmt:
		s.Vars = target(s.Vars)
		s.X = expr(s.X)
		s.Body = stmts(s.Body)
	case *syntax.WhileStmt:
		s.Cond = expr(s.Cond)
		s.Body = stmts(s.Body)
	case *syntax.ReturnStmt:
		if s.Result != nil {
			s.Result = expr(s.Result)
		}
	}
	return s
}

func params(ps []syntax.Expr) {
	for _, p := range ps {
		if b, ok := p.(*syntax.BinaryExpr); ok && b.Op == syntax.EQ {
			b.Y = expr(b.Y)
		}
	}
}

// target rewrites the expressions inside an assignment target, never the
// target itself.
func target(e syntax.Expr) syntax.Expr {
	switch e := e.(type) {
	case *syntax.IndexExpr:
		e.X = expr(e.X)
		e.Y = key(e.Lbrack, expr(e.Y))
	case *syntax.DotExpr:
		e.X = expr(e.X)
	case *syntax.TupleExpr:
		for i, x := range e.List {
			e.List[i] = target(x)
		}
	case *syntax.ListExpr:
		for i, x := range e.List {
			e.List[i] = target(x)
		}
	case *syntax.ParenExpr:
		e.X = target(e.X)
	}
	return e
}

func expr(e syntax.Expr) syntax.Expr {
	switch e := e.(type) {
	case *syntax.BinaryExpr:
		e.X, e.Y = expr(e.X), expr(e.Y)
		switch e.Op {
		case syntax.AND, syntax.OR:
			return e
		}
		return call(e.OpPos, opBinary, tokenLit(e.OpPos, e.Op), e.X, e.Y)
	case *syntax.UnaryExpr:
		if e.X != nil {
			e.X = expr(e.X)
		}
	case *syntax.ParenExpr:
		e.X = expr(e.X)
	case *syntax.CondExpr:
		e.Cond, e.True, e.False = expr(e.Cond), expr(e.True), expr(e.False)
	case *syntax.CallExpr:
		e.Fn = expr(e.Fn)
		for i, a := range e.Args {
			switch a := a.(type) {
			case *syntax.BinaryExpr:
				if a.Op == syntax.EQ { // name = value
					a.Y = expr(a.Y)
					continue
				}
			case *syntax.UnaryExpr:
				switch a.Op {
				case syntax.STAR:
					a.X = call(a.OpPos, opStar, expr(a.X))
					continue
				case syntax.STARSTAR:
					a.X = call(a.OpPos, opStarStar, expr(a.X))
					continue
				}
			}
			e.Args[i] = expr(a)
		}
	case *syntax.DotExpr:
		e.X = expr(e.X)
		if costlyMethods[e.Name.Name] {
			return call(e.Dot, opMethod, e)
		}
	case *syntax.IndexExpr:
		e.X = expr(e.X)
		e.Y = key(e.Lbrack, expr(e.Y))
	case *syntax.SliceExpr:
		e.X = expr(e.X)
		for _, p := range []*syntax.Expr{&e.Lo, &e.Hi, &e.Step} {
			if *p != nil {
				*p = expr(*p)
			}
		}
		// With a step of 1 a string, bytes or tuple slice shares the
		// value sliced; otherwise it is a copy.
		one := e.Step == nil
		if lit, ok := e.Step.(*syntax.Literal); ok && lit.Value == int64(1) {
			one = true
		}
		flag := &syntax.Literal{Token: syntax.INT, TokenPos: e.Lbrack, Raw: "0", Value: int64(0)}
		if one {
			flag.Raw, flag.Value = "1", int64(1)
		}
		return call(e.Lbrack, opSlice, e, flag)
	case *syntax.ListExpr:
		for i, x := range e.List {
			e.List[i] = expr(x)
		}
		return call(e.Lbrack, opCount, e)
	case *syntax.TupleExpr:
		for i, x := range e.List {
			e.List[i] = expr(x)
		}
		return call(syntax.Start(e), opCount, e)
	case *syntax.DictExpr:
		for _, x := range e.List {
			entry := x.(*syntax.DictEntry)
			entry.Key = key(entry.Colon, expr(entry.Key))
			entry.Value = expr(entry.Value)
		}
		return call(e.Lbrace, opCount, e)
	case *syntax.Comprehension:
		at := e.Lbrack
		for _, c := range e.Clauses {
			switch c := c.(type) {
			case *syntax.ForClause:
				c.Vars = target(c.Vars)
				c.X = expr(c.X)
				at = c.For
			case *syntax.IfClause:
				c.Cond = expr(c.Cond)
			}
		}
		if entry, ok := e.Body.(*syntax.DictEntry); ok {
			entry.Key = call(at, opDictKey, expr(entry.Key))
			entry.Value = expr(entry.Value)
		} else {
			e.Body = call(at, opElem, expr(e.Body))
		}
	case *syntax.LambdaExpr:
		params(e.Params)
		e.Body = expr(e.Body)
	}
	return e
}

func key(pos syntax.Position, e syntax.Expr) syntax.Expr { return call(pos, opKey, e) }

func call(pos syntax.Position, name string, args ...syntax.Expr) *syntax.CallExpr {
	return &syntax.CallExpr{Fn: &syntax.Ident{NamePos: pos, Name: name}, Lparen: pos, Args: args, Rparen: pos}
}

func tokenLit(pos syntax.Position, t syntax.Token) *syntax.Literal {
	return &syntax.Literal{Token: syntax.INT, TokenPos: pos, Raw: "0", Value: int64(t)}
}

func unparen(e syntax.Expr) syntax.Expr {
	for {
		p, ok := e.(*syntax.ParenExpr)
		if !ok {
			return e
		}
		e = p.X
	}
}

// ExecFile parses, rewrites, compiles and runs one policy file on thread,
// which Run has set up; predeclared are the host's names (bound adds the
// accounting universe and the hidden builtins). Like
// starlark.ExecFileOptions, it freezes the globals it returns.
func ExecFile(opts *syntax.FileOptions, thread *starlark.Thread, filename string, src []byte, predeclared starlark.StringDict) (starlark.StringDict, error) {
	f, err := opts.Parse(filename, src, 0)
	if err != nil {
		return nil, err
	}
	Rewrite(f)
	env := Predeclared(predeclared)
	prog, err := starlark.FileProgram(f, env.Has)
	if err != nil {
		return nil, err
	}
	g, err := prog.Init(thread, env)
	if err != nil {
		return g, err
	}
	if name, err := checkFreeze(g); err != nil {
		pos := syntax.MakePosition(&f.Path, 1, 1)
		for _, b := range f.Module.(*resolve.Module).Globals {
			if b.First != nil && b.First.Name == name {
				pos = b.First.NamePos
			}
		}
		return g, syntax.Error{Pos: pos, Msg: err.Error()}
	}
	g.Freeze()
	return g, nil
}

// Predeclared returns host's names plus the accounting universe and the
// hidden builtins the rewrite calls; host's names win.
func Predeclared(host starlark.StringDict) starlark.StringDict {
	env := make(starlark.StringDict, len(universe)+len(hidden)+len(host))
	for k, v := range universe {
		env[k] = v
	}
	for k, v := range hidden {
		env[k] = v
	}
	for k, v := range host {
		env[k] = v
	}
	return env
}
