package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/syncbuf"
)

// EnvSDKDir overrides where the pinned azure-iothub SDK and check.js are
// (default <module root>/hack/iothub-sdk, installed by `make iothub-sdk`).
const EnvSDKDir = "IOTHUB_SDK_DIR"

// emulator is the command running as a process.
type emulator struct {
	cmd    *exec.Cmd
	addr   string // where it listens
	cs     string // the connection string it printed
	csFile string
	caFile string
	usage  string // everything it printed before serving
	stderr *syncbuf.Buffer
	done   chan error
}

var (
	buildOnce sync.Once
	buildDir  string
	binary    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// build compiles this command once per test binary run: the tests run the
// binary a user runs, not its functions.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		var err error
		if buildDir, err = os.MkdirTemp("", "iothub-emulator-"); err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(buildDir, "iothub-emulator")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if p, err := exec.LookPath("go"); err == nil {
			gobin = p
		}
		out, err := exec.Command(gobin, "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

var listening = regexp.MustCompile(`^IoT Hub emulator "([^"]+)" listening on (\S+)$`)

// start runs the command and reads what it prints until its last line of
// usage; it is stopped (SIGTERM) in the test's cleanup unless stopped
// before.
func start(t *testing.T, args ...string) *emulator {
	t.Helper()
	cmd := exec.Command(build(t), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	e := &emulator{cmd: cmd, stderr: &syncbuf.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = e.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.done <- cmd.Wait() }()
	t.Cleanup(func() { e.stop(t) })

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var usage strings.Builder
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the emulator exited before it was ready:\n%s%s", usage.String(), e.stderr.String())
			}
			usage.WriteString(line + "\n")
			if m := listening.FindStringSubmatch(line); m != nil {
				e.addr = m[2]
			}
			if v, ok := strings.CutPrefix(line, "Connection string: "); ok {
				e.cs = v
			}
			if v, ok := strings.CutPrefix(line, "  (also in "); ok {
				e.csFile = strings.TrimSuffix(v, ")")
			}
			if v, ok := strings.CutPrefix(line, "CA certificate:    "); ok {
				e.caFile = v
			}
			if strings.HasPrefix(line, "stationfleet manager or CLI:") {
				e.usage = usage.String()
				go func() { // keep draining
					for range lines {
					}
				}()
				return e
			}
		case <-timeout:
			t.Fatalf("the emulator printed no usage within a minute:\n%s%s", usage.String(), e.stderr.String())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (e *emulator) stop(t *testing.T) {
	t.Helper()
	if e.cmd.ProcessState != nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-e.done:
		if err != nil {
			t.Errorf("the emulator exited with %v after SIGTERM:\n%s", err, e.stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
		t.Errorf("the emulator did not stop within 30s of SIGTERM")
	}
}

// sdkDir is where the pinned SDK and check.js are. A missing SDK fails the
// test: the check never skips.
func sdkDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(EnvSDKDir)
	if dir == "" {
		var err error
		if dir, err = filepath.Abs(filepath.Join("..", "..", "hack", "iothub-sdk")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "azure-iothub", "package.json")); err != nil {
		t.Fatalf("Microsoft's azure-iothub SDK is not installed in %s (%v): run `make iothub-sdk` (hack/iothub-sdk/install.sh) or point $%s at an installed copy", dir, err, EnvSDKDir)
	}
	return dir
}

// TestMicrosoftNodeSDK runs the emulator command as a user runs it, on
// 127.0.0.1:443 with the hub named localhost, and drives it with
// Microsoft's azure-iothub 1.16.6 (hack/iothub-sdk/check.js): create a
// device, update it, get its twin, update the twin with its ETag (a stale
// one refused) and with "*", query with paging, delete. Binding port 443
// needs root or CAP_NET_BIND_SERVICE, as CI has; the test fails (never
// skips) without it or without the SDK.
func TestMicrosoftNodeSDK(t *testing.T) {
	g := NewWithT(t)
	dir := sdkDir(t)
	node, err := exec.LookPath("node")
	g.Expect(err).NotTo(HaveOccurred(), "node is needed to run Microsoft's SDK")
	state := t.TempDir()

	e := start(t, "--addr", "127.0.0.1:443", "--state-dir", state)
	g.Expect(e.addr).To(Equal("127.0.0.1:443"))
	g.Expect(e.cs).To(HavePrefix("HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey="))
	g.Expect(e.csFile).To(Equal(filepath.Join(state, "connection-string")))
	b, err := os.ReadFile(e.csFile)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.TrimSpace(string(b))).To(Equal(e.cs))
	g.Expect(e.caFile).To(Equal(filepath.Join(state, "hubsim-ca.pem")))
	g.Expect(e.usage).To(ContainSubstring("NODE_EXTRA_CA_CERTS=" + e.caFile))
	_, key, _ := strings.Cut(e.cs, ";SharedAccessKey=")
	g.Expect(key).NotTo(BeEmpty())
	g.Expect(e.stderr.String()).NotTo(ContainSubstring(key), "the key is never logged")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	check := exec.CommandContext(ctx, node, filepath.Join(dir, "check.js"))
	check.Dir = dir
	check.Env = append(os.Environ(), "IOTHUB_CONNECTION_STRING="+e.cs, "NODE_EXTRA_CA_CERTS="+e.caFile)
	out, err := check.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "check.js with azure-iothub failed:\n%s\nemulator log:\n%s", out, e.stderr.String())
	for _, call := range []string{
		"ok create device",
		`ok update device (If-Match: "*")`,
		"ok get twin",
		"ok update twin with its ETag",
		"ok update twin with a stale ETag is refused (412)",
		`ok update twin with If-Match: "*"`,
		"ok Twin.update with the ETag it read",
		"ok query with paging: 3 pages of 2, no continuation after the last match",
		`ok delete 7 devices (If-Match: "*")`,
		"all calls passed",
	} {
		g.Expect(string(out)).To(ContainSubstring(call))
	}

	// SIGTERM saves the registry: every device the SDK made is gone.
	e.stop(t)
	reg, err := os.ReadFile(filepath.Join(state, "registry.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(reg)).NotTo(ContainSubstring("sdkcheck-"))
}

// On any other port the emulator says how to reach it, and the project's
// own client does so with WithEndpoint (the manager's --iothub-endpoint);
// a restart keeps the registry, the key and the CA.
func TestOwnPortAndRestart(t *testing.T) {
	g := NewWithT(t)
	state := t.TempDir()
	e := start(t, "--addr", "127.0.0.1:0", "--state-dir", state, "--hub-name", "hub.example.test")
	g.Expect(e.cs).To(HavePrefix("HostName=hub.example.test;"))
	g.Expect(e.usage).To(ContainSubstring("will not reach it"))
	g.Expect(e.usage).To(ContainSubstring("--iothub-endpoint=" + e.addr))

	ctx := context.Background()
	c, err := iothub.New(e.cs, iothub.WithCAFile(e.caFile), iothub.WithEndpoint(e.addr), iothub.WithoutRateLimits())
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.RegisterStation(ctx, "001122FFFE334455", map[string]any{"region": "eu"}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	_ = c.Close()
	e.stop(t)

	again := start(t, "--addr", "127.0.0.1:0", "--state-dir", state, "--hub-name", "hub.example.test")
	g.Expect(again.cs).To(Equal(e.cs), "same key after a restart")
	c, err = iothub.New(again.cs, iothub.WithCAFile(e.caFile), iothub.WithEndpoint(again.addr), iothub.WithoutRateLimits())
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	tw, err := c.Get(ctx, "001122FFFE334455")
	g.Expect(err).NotTo(HaveOccurred(), "same CA and registry after a restart")
	g.Expect(tw.Tags["region"]).To(Equal("eu"))
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"hub name with a port", []string{"--hub-name", "127.0.0.1:45529"}, `hub name "127.0.0.1:45529": a host name has no port`},
		{"hub name an IP address", []string{"--hub-name", "127.0.0.1"}, "an IP address is not a host name"},
		{"positional argument", []string{"serve"}, "every setting is a flag"},
		{"malformed address", []string{"--addr", "127.0.0.1:1:2"}, "listen 127.0.0.1:1:2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var out, errOut bytes.Buffer
			err := run(context.Background(), append(tc.args, "--state-dir", t.TempDir()), &out, &errOut)
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
			g.Expect(out.String()).To(BeEmpty(), "nothing printed as if it ran")
		})
	}
	g := NewWithT(t)
	var out, errOut bytes.Buffer
	g.Expect(errors.Is(run(context.Background(), []string{"-h"}, &out, &errOut), flag.ErrHelp)).To(BeTrue())
	g.Expect(errOut.String()).To(ContainSubstring("-hub-name"))
}
