//go:build unix

package health

import "syscall"

// DefaultMaxConns is a quarter of the process's file descriptor limit,
// between 16 and 1024: the rest stays for probes (pipes, sockets), the
// journal, the log and the watcher, whatever the clients of /health do.
func DefaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 256
	}
	return connsFor(rl.Cur)
}
