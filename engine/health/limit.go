package health

// connsFor is the connection cap for a file descriptor limit of fds.
func connsFor(fds uint64) int {
	return int(min(max(fds/4, 16), 1024))
}
