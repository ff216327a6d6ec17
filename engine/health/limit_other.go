//go:build !unix

package health

// DefaultMaxConns is 256 where the descriptor limit cannot be read.
func DefaultMaxConns() int { return 256 }
