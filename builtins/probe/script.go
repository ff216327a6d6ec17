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
	if prog := ShellProgram(command); prog != "" {
		p.Programs = []string{prog}
	}
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
