// Command talon is a watchdog daemon whose probes, thresholds and escalation
// ladder are Starlark policies. See README.md.
package main

import (
	"os"

	"github.com/talon-dev/talon/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
