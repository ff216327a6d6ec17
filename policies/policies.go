// Package policies holds the policies shipped with Talon. Default is the
// embedded default policy, run when the user has none of their own.
package policies

import (
	"embed"
	"io/fs"
	"testing/fstest"
)

//go:embed default.star default_test.star
var embedded embed.FS

// DefaultSource returns the text of default.star.
func DefaultSource() []byte {
	b, _ := embedded.ReadFile("default.star")
	return b
}

// Default is a policy directory holding default.star as its talon.star:
//
//	builtins.Load("<embedded default>", builtins.Options{FS: policies.Default, ...})
//
// It can open talon.star and nothing else.
var Default fs.FS = defaultFS{}

type defaultFS struct{}

func (defaultFS) Open(name string) (fs.File, error) {
	if name != "talon.star" {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return embedded.Open("default.star")
}

// DefaultWithTests is the embedded default policy with its tests
// (default_test.star), for `talon test` when no policy directory is set.
func DefaultWithTests() fs.FS {
	pol, _ := embedded.ReadFile("default.star")
	tests, _ := embedded.ReadFile("default_test.star")
	return fstest.MapFS{"talon.star": {Data: pol, Mode: 0o444}, "default_test.star": {Data: tests, Mode: 0o444}}
}
