package soak

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
)

// readyTimeout bounds how long a started process may take to serve: the
// manager connects to the API server and syncs an informer in about a
// second, a cold Node start of Azurite takes about one; 30 s leaves room
// for a loaded CI machine.
const readyTimeout = 30 * time.Second

// process is a child process that can be killed with SIGKILL and started
// again with the same arguments (so the same ports and data directory). Every
// run appends to one log file.
type process struct {
	t       testing.TB
	name    string
	bin     string
	args    []string
	env     []string
	logPath string
	ready   func() bool

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	runs     int
	runStart int64 // log offset where the current run began
}

func newProcess(t testing.TB, name, bin string, args []string, ready func() bool) *process {
	p := &process{t: t, name: name, bin: bin, args: args, env: childEnv(), ready: ready,
		logPath: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(p.kill)
	return p
}

// start runs the process and waits until ready reports true.
func (p *process) start() {
	p.t.Helper()
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		p.t.Fatalf("%s already running", p.name)
	}
	p.runs++
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		p.t.Fatalf("%s log: %v", p.name, err)
	}
	fi, _ := f.Stat()
	p.runStart = fi.Size()
	fmt.Fprintf(f, "=== run %d at %s: %s %s\n", p.runs, time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		p.mu.Unlock()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() { _ = cmd.Wait(); f.Close(); close(exited) }()
	p.mu.Unlock()

	deadline := time.Now().Add(readyTimeout)
	for !p.ready() {
		select {
		case <-exited:
			p.t.Fatalf("%s exited during start; log:\n%s", p.name, p.logTail(60))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready within %s; log:\n%s", p.name, readyTimeout, p.logTail(60))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL to the process group and waits for the exit. It does
// nothing when the process is not running.
func (p *process) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = killGroup(cmd.Process.Pid)
	_ = cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s (pid %d) did not exit within 10s of SIGKILL", p.name, cmd.Process.Pid)
	}
}

// alive reports whether the current run is still running.
func (p *process) alive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// currentLog returns the current run's log.
func (p *process) currentLog() []byte {
	p.mu.Lock()
	off := p.runStart
	p.mu.Unlock()
	b, _ := os.ReadFile(p.logPath)
	if off > int64(len(b)) {
		return nil
	}
	return b[off:]
}

// logTail returns the last n lines of every run's log.
func (p *process) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("<no %s log: %v>", p.name, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(lines)-n, p.logPath)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// childEnv is the test's environment without variables the children would
// take settings or secrets from, so that only the flags count.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "KUBECONFIG" || k == "IOTHUB_CONNECTION_STRING" || strings.HasPrefix(k, "AZURE_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func tcpOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

var probeClient = &http.Client{Timeout: time.Second}

func httpAnswers(url string, okOnly bool) bool {
	resp, err := probeClient.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return !okOnly || resp.StatusCode == http.StatusOK
}

// startAzurite runs azurite-blob on a fixed port and data directory, so it
// can be killed and started again as the same storage account.
func startAzurite(t testing.TB) (*process, string) {
	t.Helper()
	bin, err := azurite.Binary()
	if err != nil {
		t.Fatalf("azurite: %v (install it with `make azurite`)", err)
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	endpoint := "http://" + addr + "/" + azurite.Account
	p := newProcess(t, "azurite", bin, []string{
		"--blobHost", "127.0.0.1", "--blobPort", port, "--location", t.TempDir(),
		"--skipApiVersionCheck", "--loose", "--silent",
	}, func() bool { return httpAnswers(endpoint+"?comp=list", false) })
	p.start()
	return p, endpoint
}

// logHas reports whether b holds s.
func logHas(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
