//go:build linux

package probe_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe/probetest"
	"github.com/talon-dev/talon/internal/testpeer"
)

// fakeDockerEngine serves the two Engine API endpoints `docker inspect
// --type=container` calls (HEAD /_ping for version negotiation, then
// GET /v1.47/containers/NAME/json) on a unix socket, with recorded response
// shapes from testdata/docker. It returns the socket path and a function
// listing the requests seen so far.
func fakeDockerEngine(t *testing.T) (sock string, requests func() []string) {
	t.Helper()
	fixture := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "docker", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	containers := map[string][]byte{
		"joelclaw-controlplane-1": fixture("running.json"),
		"joelclaw-exited":         fixture("exited.json"),
	}
	notFound := string(fixture("notfound.json"))
	var mu sync.Mutex
	var seen []string
	containerPath := regexp.MustCompile(`^/v1\.\d+/containers/([^/]+)/json$`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Server", "Docker/27.4.1 (linux)")
		w.Header().Set("Api-Version", "1.47")
		w.Header().Set("Ostype", "linux")
		if r.URL.Path == "/_ping" {
			w.Header().Set("Docker-Experimental", "false")
			w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("OK"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		m := containerPath.FindStringSubmatch(r.URL.Path)
		if m == nil {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintln(w, `{"message":"page not found"}`)
			return
		}
		body, ok := containers[m[1]]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, notFound, m[1])
			return
		}
		w.Write(body)
	})
	sock = filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// hangingUnixSocket accepts connections on a unix socket and never answers.
func hangingUnixSocket(t *testing.T) string {
	t.Helper()
	return silentListener(t, "unix", filepath.Join(t.TempDir(), "hang.sock"))
}

func TestDockerProbe(t *testing.T) {
	t.Parallel()
	testpeer.Need(t, "docker")
	sock, _ := fakeDockerEngine(t)
	home := "HOME=" + t.TempDir() // the CLI reads ~/.docker; keep the real one out
	missing := filepath.Join(t.TempDir(), "nothing.sock")

	cases := []struct {
		name, src string
		env       []string
		passed    bool
		output    string
	}{
		{"running", `probe.docker("talos", "joelclaw-controlplane-1", host = "unix://` + sock + `")`, nil, true, "running"},
		{"socket path", `probe.docker("talos", "joelclaw-controlplane-1", host = "` + sock + `")`, nil, true, "running"},
		{"DOCKER_HOST from the environment", `probe.docker("talos", "joelclaw-controlplane-1")`, []string{"DOCKER_HOST=unix://" + sock}, true, "running"},
		{"exited", `probe.docker("talos", "joelclaw-exited", host = "unix://` + sock + `")`, nil, false, "container joelclaw-exited is exited"},
		{"no such container", `probe.docker("talos", "nope", host = "unix://` + sock + `")`, nil, false, "exit status 1: Error response from daemon: No such container: nope"},
		{"no daemon", `probe.docker("talos", "nope", host = "unix://` + missing + `")`, nil, false, "Cannot connect to the Docker daemon at unix://" + missing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, _ := probetest.RunWithEnv(t, probetest.MustDeclare(t, tc.src), append([]string{home}, tc.env...)...)
			if res.Passed != tc.passed || !strings.Contains(res.Output, tc.output) {
				t.Fatalf("got passed=%v output=%q; want passed=%v output containing %q", res.Passed, res.Output, tc.passed, tc.output)
			}
		})
	}

	t.Run("requests", func(t *testing.T) {
		// An engine of its own, so the parallel cases' requests don't mix in.
		sock2, requests2 := fakeDockerEngine(t)
		res, _ := probetest.RunWithEnv(t, probetest.MustDeclare(t, `probe.docker("talos", "joelclaw-controlplane-1", host = "unix://`+sock2+`")`), home)
		if !res.Passed || res.Detail["status"] != "running" {
			t.Fatalf("got %+v", res)
		}
		want := []string{"HEAD /_ping", "GET /v1.47/containers/joelclaw-controlplane-1/json"}
		if got := requests2(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("the docker CLI requested %q, want %q", got, want)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		hang := hangingUnixSocket(t)
		res, took := probetest.RunWithEnv(t, probetest.MustDeclare(t, `probe.docker("talos", "joelclaw-controlplane-1", host = "unix://`+hang+`", timeout = "1s")`), home)
		if res.Passed || !res.TimedOut || !strings.HasPrefix(res.Output, "timeout after 1s") {
			t.Fatalf("got %+v", res)
		}
		if took > 2*time.Second {
			t.Fatalf("1s timeout took %v", took)
		}
	})
}

func TestDockerBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{"\nprobe.docker(\"d\", \"-f\")", "talon.star:2:13: in <toplevel>\nError in probe.docker: probe.docker: d: container \"-f\" is not a container name or ID"},
		{`probe.docker("d", "c", host = "localhost:2375")`, `probe.docker: d: host "localhost:2375": want a unix://, tcp:// or ssh:// URL (as in DOCKER_HOST) or a socket path`},
		{`probe.docker("d", "c", host = "http://127.0.0.1:2375")`, `probe.docker: d: host "http://127.0.0.1:2375": want a unix://, tcp:// or ssh:// URL (as in DOCKER_HOST) or a socket path`},
		{`probe.docker("d", "c", host = "npipe:////./pipe/docker_engine")`, `probe.docker: d: host "npipe:////./pipe/docker_engine": want a unix://, tcp:// or ssh:// URL (as in DOCKER_HOST) or a socket path`},
		{`probe.docker("d")`, `probe.docker: missing argument for container`},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
}
