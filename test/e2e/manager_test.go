package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// managerReadyTimeout bounds how long a started manager may take to serve
// its readiness probe and CUPS: it connects to the API server and syncs one
// informer, which takes about a second here; 30 s leaves room for a loaded
// CI machine.
const managerReadyTimeout = 30 * time.Second

// logTailLines is how much of the manager's log a failed test prints.
const logTailLines = 80

// manager is the manager binary running as a child process. It keeps its
// CUPS address across restarts, so stations keep their URL, and appends
// every run's output to one log file.
type manager struct {
	t *testing.T
	// args are the flags of every run, --cups-bind-address included.
	args []string
	// cupsAddr is the CUPS server's fixed host:port on 127.0.0.1.
	cupsAddr string
	// logPath is the log file of all runs.
	logPath string

	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the current run's process exits
	waitErr   error
	runs      int
	probeAddr string
}

// newManager returns a manager that runs with args (plus the kubeconfig,
// CUPS, metrics, probe and logging flags it adds) once start is called. It
// is killed in the test's cleanup.
func newManager(t *testing.T, args ...string) *manager {
	t.Helper()
	m := &manager{t: t, args: args, cupsAddr: freeAddr(t), logPath: filepath.Join(t.TempDir(), "manager.log")}
	t.Cleanup(m.kill)
	return m
}

// start runs the manager and waits until it answers its readiness probe and
// accepts CUPS connections. A manager that exits or never gets ready fails
// the test with its log.
func (m *manager) start() {
	m.t.Helper()
	m.mu.Lock()
	if m.cmd != nil {
		m.mu.Unlock()
		m.t.Fatal("manager already running")
	}
	m.runs++
	m.probeAddr = freeAddr(m.t)
	args := append([]string{
		"--kubeconfig=" + kubeconfigPath,
		"--cups-bind-address=" + m.cupsAddr,
		"--metrics-bind-address=" + freeAddr(m.t),
		"--health-probe-bind-address=" + m.probeAddr,
		"--zap-encoder=console",
		"--zap-log-level=info",
	}, m.args...)
	logFile, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		m.mu.Unlock()
		m.t.Fatalf("manager log: %v", err)
	}
	fmt.Fprintf(logFile, "=== run %d: %s %s\n", m.runs, managerBin, strings.Join(args, " "))
	var out io.Writer = logFile
	if os.Getenv("STATIONFLEET_TEST_LOG") != "" {
		out = io.MultiWriter(logFile, prefixWriter{w: os.Stderr, prefix: m.t.Name() + " manager: "})
	}
	cmd := exec.Command(managerBin, args...)
	cmd.Dir = m.t.TempDir()
	cmd.Env = managerEnv()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		m.mu.Unlock()
		m.t.Fatalf("start manager: %v", err)
	}
	exited := make(chan struct{})
	m.cmd, m.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		logFile.Close()
		m.mu.Lock()
		m.waitErr = err
		m.mu.Unlock()
		close(exited)
	}()
	probe := "http://" + m.probeAddr + "/readyz"
	m.mu.Unlock()

	deadline := time.Now().Add(managerReadyTimeout)
	for {
		select {
		case <-exited:
			m.t.Fatalf("manager exited during start (%v); log:\n%s", m.exitErr(), m.logTail(logTailLines))
		default:
		}
		if httpOK(probe) && tcpOpen(m.cupsAddr) {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("manager not ready within %s (readyz %s, CUPS %s); log:\n%s", managerReadyTimeout, probe, m.cupsAddr, m.logTail(logTailLines))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL to the manager's process group, as the kubelet does
// after a grace period or the kernel's OOM killer does, and waits for it to
// exit. It does nothing when the manager is not running.
func (m *manager) kill() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = killGroup(cmd.Process.Pid)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		m.t.Errorf("manager (pid %d) did not exit within 10s of SIGKILL", cmd.Process.Pid)
	}
}

// restart kills the manager and starts it again on the same CUPS address.
func (m *manager) restart() {
	m.t.Helper()
	m.kill()
	m.start()
}

// running reports whether the current run's process is alive.
func (m *manager) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

func (m *manager) exitErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waitErr
}

// cupsURL is the CUPS URL stations poll.
func (m *manager) cupsURL() string { return "http://" + m.cupsAddr }

// logTail returns the last n lines of the manager's log.
func (m *manager) logTail(n int) string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return fmt.Sprintf("<no manager log: %v>", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(lines)-n, m.logPath)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// logContains reports whether any run's log holds s.
func (m *manager) logContains(s string) bool {
	b, _ := os.ReadFile(m.logPath)
	return bytes.Contains(b, []byte(s))
}

// managerEnv is the test's environment without the variables the manager
// would take settings or secrets from, so that only the test's flags count.
func managerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "KUBECONFIG" || name == "IOTHUB_CONNECTION_STRING" || strings.HasPrefix(name, "AZURE_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpOK(url string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func tcpOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// prefixWriter writes each chunk to w with a prefix (for
// STATIONFLEET_TEST_LOG; the manager writes whole lines).
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
