// Command worker is a stand-in worker for the supervisor's tests. It serves
// /health and /sync on 127.0.0.1:$TW_PORT and appends what happens to
// $TW_EVENTS, one "EVENT PID UNIXNANO [DETAIL]" line each.
//
// $TW_PLAN lists, comma-separated, the behaviour of the 1st, 2nd, … start
// (counted from the "start" lines already in $TW_EVENTS; the last entry
// repeats). Each entry is '+'-joined flags:
//
//	healthy             /health answers 200 (the default)
//	unhealthy           /health answers 503 for ever
//	unhealthy-for=D     503 for D after start, then 200
//	unhealthy-after=D   200 for D after start, then 503
//	crash-after=D       exit 3 after D
//	sync-fail=N         the first N PUT /sync answer 500
//	ignore-term         ignore SIGTERM
//	grandchild          start a child of itself (same group, ignores SIGTERM)
//
// Whatever the plan, SIGUSR1 makes it crash at once (a "crash" event, exit
// 3), for tests that choose when; a "listening" event follows the bind.
//
// Run as "worker grandchild ARGS…" it only sleeps, ignoring SIGTERM.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var mu sync.Mutex

func event(name, detail string) {
	path := os.Getenv("TW_EVENTS")
	if path == "" {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %d %d %s\n", name, os.Getpid(), time.Now().UnixNano(), detail)
}

func starts() int {
	b, _ := os.ReadFile(os.Getenv("TW_EVENTS"))
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "start ") {
			n++
		}
	}
	return n
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "grandchild" {
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(time.Hour)
		return
	}
	plan := strings.Split(os.Getenv("TW_PLAN"), ",")
	n := starts()
	entry := plan[min(n, len(plan)-1)]
	flags := map[string]string{}
	for _, f := range strings.Split(entry, "+") {
		k, v, _ := strings.Cut(f, "=")
		flags[k] = v
	}
	dur := func(k string) time.Duration {
		d, err := time.ParseDuration(flags[k])
		if err != nil {
			fmt.Fprintf(os.Stderr, "bad %s: %v\n", k, err)
			os.Exit(2)
		}
		return d
	}
	start := time.Now()
	event("start", entry+" role="+os.Getenv("WORKER_ROLE")+" foo="+os.Getenv("FOO"))
	fmt.Println("worker stdout line")
	fmt.Fprintln(os.Stderr, "worker stderr line")

	if _, ok := flags["ignore-term"]; ok {
		signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM)
	} else {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		go func() {
			<-sigs
			event("term", "")
			os.Exit(0)
		}()
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		<-usr1
		event("crash", "SIGUSR1")
		os.Exit(3)
	}()
	if _, ok := flags["grandchild"]; ok {
		c := exec.Command(os.Args[0], append([]string{"grandchild"}, os.Args[1:]...)...)
		if err := c.Start(); err == nil {
			event("grandchild", strconv.Itoa(c.Process.Pid))
		}
	}
	if _, ok := flags["crash-after"]; ok {
		d := dur("crash-after")
		go func() {
			time.Sleep(d)
			event("crash", "")
			os.Exit(3)
		}()
	}
	syncFail := 0
	if v, ok := flags["sync-fail"]; ok {
		syncFail, _ = strconv.Atoi(v)
	}

	healthy := func() bool {
		since := time.Since(start)
		if _, ok := flags["unhealthy"]; ok {
			return false
		}
		if _, ok := flags["unhealthy-for"]; ok && since < dur("unhealthy-for") {
			return false
		}
		if _, ok := flags["unhealthy-after"]; ok && since >= dur("unhealthy-after") {
			return false
		}
		return true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusOK
		if !healthy() {
			code = http.StatusServiceUnavailable
		}
		event("health", strconv.Itoa(code))
		w.WriteHeader(code)
	})
	var syncs int
	mux.HandleFunc("/sync", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		syncs++
		k := syncs
		mu.Unlock()
		code := http.StatusOK
		if r.Method != http.MethodPut {
			code = http.StatusMethodNotAllowed
		} else if k <= syncFail {
			code = http.StatusInternalServerError
		}
		event("sync", strconv.Itoa(code))
		w.WriteHeader(code)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("TW_PORT"))
	if err != nil {
		event("bindfail", err.Error())
		os.Exit(1)
	}
	event("listening", "")
	http.Serve(ln, mux)
}
