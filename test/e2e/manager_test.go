package e2e

import (
	"io"
	"os"
	"testing"

	"github.com/stationfleet/stationfleet/internal/testutil/proc"
)

// logTailLines is how much of the manager's log a failed test prints.
const logTailLines = 80

// manager is the manager binary running as a child process. It keeps its
// CUPS address across restarts, so stations keep their URL, and appends
// every run's output to one log file.
type manager struct {
	t *testing.T
	// args are the test's flags of every run.
	args []string
	// cupsAddr is the CUPS server's fixed host:port on 127.0.0.1.
	cupsAddr string
	// probeAddr is the current run's health probe host:port.
	probeAddr string
	// p is the process; its arguments are set anew for every run.
	p *proc.Process
}

// newManager returns a manager that runs with args (plus the kubeconfig,
// CUPS, metrics, probe and logging flags it adds) once start is called. It
// is killed in the test's cleanup.
func newManager(t *testing.T, args ...string) *manager {
	t.Helper()
	m := &manager{t: t, args: args, cupsAddr: proc.FreeAddr(t)}
	// Ready: answers its readiness probe and accepts CUPS connections.
	m.p = proc.New(t, "manager", managerBin, nil, func() bool {
		return proc.HTTPOK("http://"+m.probeAddr+"/readyz") && proc.TCPOpen(m.cupsAddr)
	})
	if os.Getenv("STATIONFLEET_TEST_LOG") != "" {
		m.p.Echo = prefixWriter{w: os.Stderr, prefix: t.Name() + " manager: "}
	}
	return m
}

// start runs the manager, with fresh metrics and probe ports, and waits
// until it answers its readiness probe and accepts CUPS connections. A
// manager that exits or never gets ready fails the test with its log.
func (m *manager) start() {
	m.t.Helper()
	m.probeAddr = proc.FreeAddr(m.t)
	m.p.Args = append([]string{
		"--kubeconfig=" + kubeconfigPath,
		"--cups-bind-address=" + m.cupsAddr,
		"--metrics-bind-address=" + proc.FreeAddr(m.t),
		// Plain HTTP, so that a test scrapes without a token (relayWrites);
		// TestMetricsServedOnlyToAuthorizedScrapers runs the default,
		// HTTPS with authentication and authorization.
		"--metrics-secure=false",
		"--health-probe-bind-address=" + m.probeAddr,
		"--zap-encoder=console",
		"--zap-log-level=info",
	}, m.args...)
	m.p.Dir = m.t.TempDir()
	m.p.Start()
}

// kill sends SIGKILL to the manager's process group and waits for it to
// exit. It does nothing when the manager is not running.
func (m *manager) kill() { m.p.Kill() }

// restart kills the manager and starts it again on the same CUPS address.
func (m *manager) restart() {
	m.t.Helper()
	m.kill()
	m.start()
}

// running reports whether the current run's process is alive.
func (m *manager) running() bool { return m.p.Alive() }

// exitErr is how the last run that exited ended ("signal: killed" after
// kill).
func (m *manager) exitErr() error { return m.p.ExitErr() }

// cupsURL is the CUPS URL stations poll.
func (m *manager) cupsURL() string { return "http://" + m.cupsAddr }

// logTail returns the last n lines of the manager's log.
func (m *manager) logTail(n int) string { return m.p.LogTail(n) }

// logContains reports whether any run's log holds s.
func (m *manager) logContains(s string) bool { return m.p.LogContains(s) }

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
