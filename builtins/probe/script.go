package probe

import (
	"fmt"
	"regexp"
	"strings"

	"go.starlark.net/starlark"
)

func init() {
	Register(Builtin{Name: "probe.script", Fn: scriptProbe, Doc: `def script(name, command, **common):
Runs command with "sh -c" in its own process group; exit status 0 passes.
The whole group is killed at the timeout, pipelines and background jobs included.
name: unique probe name
command: shell command line, e.g. "! kubectl get nodes | grep -q disk-pressure"`})
}

func scriptProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		c       Common
		name    string
		command string
	)
	if err := c.Unpack(b, args, kwargs, "name", &name, "command", &command); err != nil {
		return nil, err
	}
	if strings.TrimSpace(command) == "" {
		return nil, fmt.Errorf("%s: %s: command must not be empty", b.Name(), name)
	}
	p, err := c.Spec(thread, b, name, "script", CommandCheck([]string{"sh", "-c", command}, nil, ""), command)
	if err != nil {
		return nil, err
	}
	p.Programs = ShellPrograms(command)
	return Declare(thread, b, p)
}

var (
	plainWord  = regexp.MustCompile(`^[A-Za-z0-9_./+-]+$`)
	assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
)

// shellWords are reserved words and builtins that name no program.
var shellWords = map[string]bool{
	"!": true, "{": true, "(": true, "if": true, "for": true, "while": true, "until": true, "case": true,
	"set": true, "export": true, "cd": true, "exec": true, "eval": true, ".": true, ":": true, "source": true,
	"unset": true, "trap": true, "exit": true, "return": true, "local": true, "readonly": true, "wait": true,
	"ulimit": true, "umask": true, "command": true, "builtin": true, "type": true, "read": true,
}

// ShellProgram is the program a shell command line starts with, for
// `talon validate`, or "" when the first word is not a plain program name
// (a keyword, a builtin, a variable, a quoted or computed word).
// Leading VAR=value assignments are skipped.
func ShellProgram(command string) string {
	for _, w := range strings.Fields(command) {
		if assignment.MatchString(w) {
			continue
		}
		if shellWords[w] || !plainWord.MatchString(w) {
			return ""
		}
		return w
	}
	return ""
}

// ShellPrograms lists, in order and once each, the programs a shell command
// line runs that can be named without running it: the first plain word of
// every simple command — each member of a pipeline, each command after ;,
// &&, || and &, each command of a $( ) substitution, a subshell or a group,
// and the command after the keywords if, then, else, elif, while, until, do,
// ! and time, and after exec and command. Leading VAR=value assignments are
// skipped; words the shell computes (variables, quotes, globs) are not
// programs it can name, and are left out.
func ShellPrograms(command string) []string {
	var out []string
	seen := map[string]bool{}
	for _, seg := range shellSegments(command) {
		if p := segmentProgram(strings.Fields(seg)); p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// shellSegments splits a command line into simple commands at the
// operators and parentheses that are not quoted or escaped.
func shellSegments(command string) []string {
	var segs []string
	var cur strings.Builder
	var quote byte
	flush := func() {
		segs = append(segs, cur.String())
		cur.Reset()
	}
	for i := 0; i < len(command); i++ {
		ch := command[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			} else if ch == '\\' && quote == '"' && i+1 < len(command) {
				cur.WriteByte(ch)
				i++
				ch = command[i]
			}
			cur.WriteByte(ch)
			continue
		case ch == '\'' || ch == '"':
			quote = ch
		case ch == '\\' && i+1 < len(command):
			cur.WriteByte(ch)
			i++
			ch = command[i]
		case ch == '#' && (cur.Len() == 0 || isSpace(command[i-1])):
			// A comment runs to the end of the line.
			for i < len(command) && command[i] != '\n' {
				i++
			}
			flush()
			continue
		case ch == '&' && (i > 0 && strings.IndexByte("<>", command[i-1]) >= 0 || i+1 < len(command) && command[i+1] == '>'),
			ch == '|' && i > 0 && command[i-1] == '>':
			// 2>&1, &>file, >|file: redirections, not operators.
		case strings.IndexByte("|&;()`\n", ch) >= 0:
			if ch == '(' && cur.Len() > 0 && cur.String()[cur.Len()-1] == '$' {
				s := cur.String()
				cur.Reset()
				cur.WriteString(s[:len(s)-1])
			}
			flush()
			continue
		}
		cur.WriteByte(ch)
	}
	flush()
	return segs
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// prefixWords come before the program of a simple command.
var prefixWords = map[string]bool{
	"!": true, "{": true, "if": true, "then": true, "else": true, "elif": true, "while": true, "until": true,
	"do": true, "time": true, "exec": true, "command": true,
}

// endWords start a segment that runs no program by name.
var endWords = map[string]bool{
	"}": true, "fi": true, "done": true, "esac": true, "for": true, "case": true, "select": true, "in": true, "function": true,
}

func segmentProgram(words []string) string {
	for _, w := range words {
		switch {
		case assignment.MatchString(w) || prefixWords[w]:
			continue
		case endWords[w] || shellWords[w] || strings.HasPrefix(w, "-") || !plainWord.MatchString(w):
			return ""
		}
		return w
	}
	return ""
}
