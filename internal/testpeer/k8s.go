//go:build linux

package testpeer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// KubeCluster is a real Kubernetes API server (kube-apiserver backed by
// etcd) listening on loopback only. There is no controller manager,
// scheduler or kubelet: objects are stored and validated, but nothing acts on
// them. Tests set status themselves, e.g.
//
//	k.Kubectl(t, "patch", "node", "cp-1", "--subresource=status", "--type=merge", "-p", `{"status":{...}}`)
type KubeCluster struct {
	// Kubeconfig is the path of a kubeconfig file for the cluster admin
	// (user "admin" in group system:masters, bearer token, CA data).
	Kubeconfig string
	// Server is the API server URL, https://127.0.0.1:PORT.
	Server string
	// Token is the admin's bearer token.
	Token string
	// CAFile is the PEM file of the (self-signed) serving certificate.
	CAFile string
	// Dir is the cluster's scratch directory; the peers' logs are
	// Dir/etcd.log and Dir/kube-apiserver.log.
	Dir string

	kubectl  string
	cacheDir string
}

// Timeouts for starting the cluster and for one kubectl call.
const (
	etcdReadyTimeout      = 30 * time.Second
	apiserverReadyTimeout = 90 * time.Second
	kubectlTimeout        = 2 * time.Minute
	stopGrace             = 10 * time.Second
	startAttempts         = 3 // new ports each time, in case FreePort raced
)

// StartKube starts etcd and kube-apiserver on 127.0.0.1 (free ports, data in
// temporary directories), waits until /readyz answers ok and returns the
// cluster. Both processes are stopped by t.Cleanup. It needs the programs
// etcd, kube-apiserver (built by hack/k8s/build.sh into .cache/k8s) and
// kubectl; see Need for what happens when one is missing.
//
// Authorization is RBAC; the admin user is in system:masters, so
// `kubectl auth can-i` and `--as=` impersonation behave as on a real
// cluster. The ServiceAccount and TaintNodesByCondition admission plugins
// are disabled so that pods can be created without a controller manager and
// nodes keep exactly the taints a test gives them.
//
// If the test fails, the last lines of both peers' logs are logged when it
// ends. Starting takes 3-5 s (7 s on a cold page cache), so tests of one
// package may share one cluster through TestMain.
func StartKube(t testing.TB) *KubeCluster {
	t.Helper()
	bins := Need(t, "etcd", "kube-apiserver", "kubectl")
	began := time.Now()

	dir := t.TempDir()
	// etcd fsyncs a lot; keep its data (~120 MB) on tmpfs when there is one.
	etcdData := filepath.Join(dir, "etcd-data")
	if fi, err := os.Stat(shmDir); err == nil && fi.IsDir() {
		sweepStaleEtcdData()
		prefix := fmt.Sprintf("%s%d-", shmPrefix, os.Getpid())
		if d, err := os.MkdirTemp(shmDir, prefix); err == nil {
			etcdData = d
			t.Cleanup(func() { os.RemoveAll(d) }) // runs after the processes stop
		}
	}

	var procs []*peerProc
	t.Cleanup(func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
		if t.Failed() {
			for _, p := range procs {
				t.Logf("testpeer: last lines of %s:\n%s", p.logPath, tail(p.logPath, 60))
			}
		}
	})
	// fail stops the test; the cleanup above then logs the peers' logs.
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("testpeer: "+format, args...)
	}

	// --- etcd ---
	var etcdURL string
	for attempt := 1; ; attempt++ {
		clientPort, peerPort := FreePort(t), FreePort(t)
		etcdURL = fmt.Sprintf("http://127.0.0.1:%d", clientPort)
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
		os.RemoveAll(etcdData)
		if err := os.MkdirAll(etcdData, 0o700); err != nil {
			fail("etcd data dir: %v", err)
		}
		p, err := startProc(dir, "etcd", bins["etcd"],
			"--name=testpeer",
			"--data-dir="+etcdData,
			"--listen-client-urls="+etcdURL,
			"--advertise-client-urls="+etcdURL,
			"--listen-peer-urls="+peerURL,
			"--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=testpeer="+peerURL,
			"--initial-cluster-state=new",
			"--logger=zap",
			"--log-level=warn",
		)
		if err != nil {
			fail("starting etcd: %v", err)
		}
		procs = append(procs, p)
		err = waitFor(p, etcdReadyTimeout, func() error { return etcdHealthy(etcdURL) })
		if err == nil {
			break
		}
		exited := p.exited()
		p.stop()
		if !exited || attempt == startAttempts || !portTaken(p) {
			fail("etcd not healthy at %s: %v", etcdURL, err)
		}
		t.Logf("testpeer: etcd port taken (attempt %d), retrying on new ports", attempt)
	}

	// --- credentials ---
	certPEM, keyPEM, err := selfSignedServingCert()
	if err != nil {
		fail("serving cert: %v", err)
	}
	saKeyPEM, err := ecKeyPEM()
	if err != nil {
		fail("service-account key: %v", err)
	}
	token := randomHex(16)
	files := map[string][]byte{
		"serving.crt": certPEM,
		"serving.key": keyPEM,
		"sa.key":      saKeyPEM,
		"tokens.csv":  []byte(token + `,admin,admin,"system:masters"` + "\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			fail("writing %s: %v", name, err)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)

	// --- kube-apiserver ---
	var server string
	for attempt := 1; ; attempt++ {
		port := FreePort(t)
		server = fmt.Sprintf("https://127.0.0.1:%d", port)
		p, err := startProc(dir, "kube-apiserver", bins["kube-apiserver"],
			kubeAPIServerArgs(dir, port, etcdURL)...)
		if err != nil {
			fail("starting kube-apiserver: %v", err)
		}
		procs = append(procs, p)
		client := &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		}
		err = waitFor(p, apiserverReadyTimeout, func() error { return apiserverReady(client, server, token) })
		client.CloseIdleConnections()
		if err == nil {
			break
		}
		exited := p.exited()
		p.stop()
		if !exited || attempt == startAttempts || !portTaken(p) {
			fail("kube-apiserver not ready at %s: %v", server, err)
		}
		t.Logf("testpeer: kube-apiserver port taken (attempt %d), retrying on a new port", attempt)
	}

	// --- kubeconfig ---
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testpeer
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: testpeer
  context:
    cluster: testpeer
    user: admin
    namespace: default
current-context: testpeer
`, server, base64.StdEncoding.EncodeToString(certPEM), token)
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		fail("writing kubeconfig: %v", err)
	}

	t.Logf("testpeer: kube-apiserver ready at %s in %v", server, time.Since(began).Round(time.Millisecond))
	return &KubeCluster{
		Kubeconfig: kubeconfig,
		Server:     server,
		Token:      token,
		CAFile:     filepath.Join(dir, "serving.crt"),
		Dir:        dir,
		kubectl:    bins["kubectl"],
		cacheDir:   filepath.Join(dir, "kubectl-cache"),
	}
}

const (
	shmDir    = "/dev/shm"
	shmPrefix = "testpeer-etcd-" // then the test process's pid, "-", random
)

// sweepStaleEtcdData removes etcd data directories on tmpfs left behind by
// test processes that died before their cleanup ran (e.g. a `go test`
// timeout); their etcd was killed with them (Pdeathsig).
func sweepStaleEtcdData() {
	entries, err := os.ReadDir(shmDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), shmPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(filepath.Join(shmDir, e.Name()))
		}
	}
}

// kubeAPIServerArgs are the flags of a loopback-only kube-apiserver.
func kubeAPIServerArgs(dir string, port int, etcdURL string) []string {
	return []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The "kubernetes" Endpoints may not hold a loopback address, so
		// don't maintain it (nothing in-cluster needs to reach the server).
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(port),
		"--etcd-servers=" + etcdURL,
		"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file=" + filepath.Join(dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(dir, "serving.key"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--service-account-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/24",
		"--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}
}

// Kubectl runs kubectl against the cluster and returns its standard output.
// The test fails if kubectl exits non-zero.
func (k *KubeCluster) Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := k.RunKubectl("", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// Apply runs `kubectl apply -f -` with the given manifest(s) on standard input.
func (k *KubeCluster) Apply(t testing.TB, yaml string) {
	t.Helper()
	out, errOut, err := k.RunKubectl(yaml, "apply", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply: %v\nstdout:\n%s\nstderr:\n%s\nmanifest:\n%s", err, out, errOut, yaml)
	}
}

// RunKubectl runs kubectl against the cluster with stdin as its standard
// input and returns its standard output and error. Unlike Kubectl it does not
// fail the test, for commands whose non-zero exit is an answer
// (e.g. `auth can-i`).
func (k *KubeCluster) RunKubectl(stdin string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	full := append([]string{"--kubeconfig=" + k.Kubeconfig, "--cache-dir=" + k.cacheDir}, args...)
	cmd := exec.CommandContext(ctx, k.kubectl, full...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.Kubeconfig)
	var o, e bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout = &o
	cmd.Stderr = &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// peerProc is a child process in its own process group, logging to a file.
type peerProc struct {
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	waitErr error
}

func startProc(dir, name, path string, args ...string) (*peerProc, error) {
	logPath := filepath.Join(dir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(lf, "### %s %s\n", path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL, // don't outlive a crashed test binary
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &peerProc{cmd: cmd, logPath: logPath, logFile: lf, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *peerProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL (to whatever is left
// of the group) after the process exits or stopGrace passes, and waits for
// the process to be reaped. Once the process has been reaped it signals
// nothing, so a reused process-group id is never hit.
func (p *peerProc) stop() {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// portTaken reports whether the process's log says a port was already in use.
func portTaken(p *peerProc) bool {
	return strings.Contains(tail(p.logPath, 80), "address already in use")
}

// waitFor polls check every 100 ms until it succeeds, the process exits or
// timeout passes.
func waitFor(p *peerProc, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	lastErr := errors.New("not checked yet")
	for {
		if p.exited() {
			return fmt.Errorf("process exited (%v); last check: %v", p.waitErr, lastErr)
		}
		if lastErr = check(); lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v: %v", timeout, lastErr)
		}
		select {
		case <-p.done:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func etcdHealthy(url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"health":"true"`)) {
		return fmt.Errorf("etcd /health: %s %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func apiserverReady(c *http.Client, server, token string) error {
	req, err := http.NewRequest(http.MethodGet, server+"/readyz", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("/readyz: %s %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// selfSignedServingCert returns a self-signed ECDSA certificate (which is
// also its own CA) for 127.0.0.1, ::1 and localhost, and its key.
func selfSignedServingCert() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "testpeer kube-apiserver"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// ecKeyPEM returns a new ECDSA P-256 private key (service-account signing
// key; kube-apiserver derives the public key from it).
func ecKeyPEM() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
