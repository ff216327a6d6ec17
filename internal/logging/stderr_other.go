//go:build !unix

package logging

import "os"

func dupStderr() (*os.File, error) { return os.Stderr, nil }

func sameFile(*os.File, string) bool { return false }
