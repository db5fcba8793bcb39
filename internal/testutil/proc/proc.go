// Package proc runs stationfleet's binaries (the manager, Azurite) as child
// processes of a test: started with fixed arguments, waited for until they
// are ready, killed with SIGKILL and started again as the same instance, with
// every run's output in one log file that a failing test prints the tail of.
//
//	p := proc.New(t, "manager", bin, args, func() bool {
//		return proc.HTTPOK("http://" + probe + "/readyz")
//	})
//	p.Start()
//	defer p.Kill()
package proc

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

// ReadyTimeout bounds how long a started process may take to get ready: the
// manager connects to the API server and syncs an informer in about a
// second, a cold Node start of Azurite takes about one; 30 s leaves room for
// a loaded CI machine.
const ReadyTimeout = 30 * time.Second

// killTimeout bounds how long a process may take to exit after SIGKILL; the
// kernel reaps it in milliseconds, so reaching it means something is wrong.
const killTimeout = 10 * time.Second

// startTailLines is how much of the log Start prints when a run fails.
const startTailLines = 80

// Process is a child process that can be killed with SIGKILL and started
// again, so with the same ports and data directory when its arguments name
// them. Every run appends to one log file, after a header line with the run's
// number, time and command line.
//
// Set the exported fields before Start; Args may change between runs.
type Process struct {
	// Name names the process in failure messages and its log file.
	Name string
	// Bin is the executable.
	Bin string
	// Args are the arguments of the next run.
	Args []string
	// Env is the environment of every run; New sets it to ChildEnv().
	Env []string
	// Dir is the working directory of every run; empty is the test's.
	Dir string
	// Ready reports whether a started run is ready; Start polls it.
	Ready func() bool
	// Echo, when not nil, also receives every run's output (for example
	// os.Stderr to follow the process live).
	Echo io.Writer

	t       testing.TB
	logPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current run's process exits
	waitErr  error         // the last run's exit, once exited is closed
	runs     int
	runStart int64 // log offset where the current run began
}

// New returns a Process that runs bin with args and is ready when ready
// reports true. It logs to a file in t's temporary directory and is killed
// in t's cleanup. Nothing runs until Start.
func New(t testing.TB, name, bin string, args []string, ready func() bool) *Process {
	t.Helper()
	p := &Process{Name: name, Bin: bin, Args: args, Env: ChildEnv(), Ready: ready, t: t,
		logPath: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(p.Kill)
	return p
}

// Start runs the process and waits until Ready reports true. A process that
// is running already, cannot start, exits first or is not ready within
// ReadyTimeout fails the test, the last two with the tail of its log.
func (p *Process) Start() {
	p.t.Helper()
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		p.t.Fatalf("%s already running", p.Name)
	}
	p.runs++
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		p.t.Fatalf("%s log: %v", p.Name, err)
	}
	if fi, err := f.Stat(); err == nil {
		p.runStart = fi.Size()
	}
	fmt.Fprintf(f, "=== run %d at %s: %s %s\n", p.runs, time.Now().Format(time.RFC3339Nano), p.Bin, strings.Join(p.Args, " "))
	var out io.Writer = f
	if p.Echo != nil {
		out = io.MultiWriter(f, p.Echo)
	}
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Dir = p.Dir
	cmd.Env = p.Env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		p.mu.Unlock()
		p.t.Fatalf("start %s: %v", p.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(exited)
	}()
	p.mu.Unlock()

	deadline := time.Now().Add(ReadyTimeout)
	for {
		select {
		case <-exited:
			p.t.Fatalf("%s exited during start (%v); log:\n%s", p.Name, p.ExitErr(), p.LogTail(startTailLines))
		default:
		}
		if p.Ready() {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready within %s; log:\n%s", p.Name, ReadyTimeout, p.LogTail(startTailLines))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill sends SIGKILL to the process group, as the kubelet does after a grace
// period or the kernel's OOM killer does, and waits for the exit. It does
// nothing when the process is not running.
func (p *Process) Kill() {
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
	case <-time.After(killTimeout):
		p.t.Errorf("%s (pid %d) did not exit within %s of SIGKILL", p.Name, cmd.Process.Pid, killTimeout)
	}
}

// Alive reports whether the current run is still running.
func (p *Process) Alive() bool {
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

// ExitErr returns how the last run that exited ended, as exec.Cmd.Wait
// reports it (for example "signal: killed" after Kill); nil when no run has
// exited or the last one exited with status 0.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Runs returns how many times the process was started.
func (p *Process) Runs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs
}

// LogPath returns the log file of all runs.
func (p *Process) LogPath() string { return p.logPath }

// CurrentLog returns the current (or last) run's log, its header included.
func (p *Process) CurrentLog() []byte {
	p.mu.Lock()
	off := p.runStart
	p.mu.Unlock()
	b, _ := os.ReadFile(p.logPath)
	if off > int64(len(b)) {
		return nil
	}
	return b[off:]
}

// LogTail returns the last n lines of every run's log.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("<no %s log: %v>", p.Name, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(lines)-n, p.logPath)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// LogContains reports whether any run's log holds s.
func (p *Process) LogContains(s string) bool {
	b, _ := os.ReadFile(p.logPath)
	return bytes.Contains(b, []byte(s))
}

// ChildEnv returns the test's environment without the variables a child
// would take settings or secrets from (KUBECONFIG, IOTHUB_CONNECTION_STRING,
// AZURE_*), so that only the test's flags count.
func ChildEnv() []string {
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

// FreeAddr returns a loopback host:port whose port was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	// The kernel may give a port back right after it was closed: two
	// calls for one process's flags (CUPS and probes) once got the same
	// port, and the manager could not start. No address is handed out
	// twice in a test binary.
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		if !handedOut[addr] {
			handedOut[addr] = true
			return addr
		}
	}
	t.Fatalf("find a free port: the kernel kept offering ports already handed out")
	return ""
}

var (
	handedOutMu sync.Mutex
	handedOut   = map[string]bool{}
)

// probeClient is the HTTP client of HTTPOK and HTTPAnswers; a probe that
// takes longer than a second counts as not ready.
var probeClient = &http.Client{Timeout: time.Second}

// HTTPOK reports whether a GET of url answers 200 OK.
func HTTPOK(url string) bool { return httpGet(url, true) }

// HTTPAnswers reports whether a GET of url gets any HTTP response.
func HTTPAnswers(url string) bool { return httpGet(url, false) }

func httpGet(url string, okOnly bool) bool {
	resp, err := probeClient.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return !okOnly || resp.StatusCode == http.StatusOK
}

// TCPOpen reports whether addr accepts a TCP connection within a second.
func TCPOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// BuildManager builds ./cmd/manager of the module in moduleRoot into dir and
// returns the binary's path.
func BuildManager(moduleRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/manager: %w\n%s", err, out)
	}
	return bin, nil
}
