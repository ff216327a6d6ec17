package builtins

import (
	"sync"
)

// missingPrograms logs, once per program, a program that a policy function
// asked to run at run time and that is not on the child PATH: the argv was
// computed, so talon validate could not name it (the literal ones it does
// name; see programs.go).
type missingPrograms struct {
	// log is Options.Log: where run-time notices go when the caller's run
	// environment has no log of its own (a probe.func).
	log  func(msg string, kv ...any)
	seen sync.Map // program → true
}

// report returns the NotFound hook of one call; fallback is the call's own log.
func (m *missingPrograms) report(fallback func(msg string, kv ...any)) func(program, pos string) {
	return func(program, pos string) {
		if _, dup := m.seen.LoadOrStore(program, true); dup {
			return
		}
		log := m.log
		if log == nil {
			log = fallback
		}
		if log != nil {
			log("a policy function runs a program that is not on the child PATH; install it or add its directory to path in config.toml (talon validate could not see it: its argv is computed)", "program", program, "at", pos)
		}
	}
}
