// Package azurite starts Azurite's blob service (the Azure Storage emulator
// from the npm package "azurite", pinned in hack/azurite) on 127.0.0.1 for
// tests and end-to-end programs, so that blob code is exercised with the real
// Azure SDK against a real server.
//
// The binary is $AZURITE_BLOB when set, otherwise
// <module root>/hack/azurite/node_modules/.bin/azurite-blob, installed by
// hack/azurite/install.sh (make azurite).
package azurite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/stationfleet/stationfleet/internal/syncbuf"
)

const (
	// Account is Azurite's well-known development storage account.
	Account = "devstoreaccount1"
	// AccountKey is the well-known shared key of devstoreaccount1, published
	// in Azurite's README; it is not a secret.
	AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

	// EnvBinary names the environment variable that overrides where
	// azurite-blob is found.
	EnvBinary = "AZURITE_BLOB"

	// modulePath identifies the module root when searching upwards for it.
	modulePath = "github.com/stationfleet/stationfleet"
	// relBinary is where hack/azurite/install.sh puts the binary.
	relBinary = "hack/azurite/node_modules/.bin/azurite-blob"

	// startTimeout bounds how long Azurite may take to answer; a cold Node
	// start takes about 1 s here, 30 s leaves room for a loaded CI machine.
	startTimeout = 30 * time.Second
	// startAttempts retries when the free port picked was taken by someone
	// else between our probe and Azurite's listen.
	startAttempts = 3
)

// Azurite is a running azurite-blob process.
type Azurite struct {
	// Endpoint is the blob service URL, path-style as Azurite wants it:
	// http://127.0.0.1:PORT/devstoreaccount1.
	Endpoint string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir is the data directory (--location).
	Dir string

	cmd     *exec.Cmd
	done    chan struct{}
	output  *syncbuf.Buffer
	ownDir  bool
	stopped sync.Once
}

// ConnectionString returns a connection string for devstoreaccount1 on this
// instance, as the Azure SDKs and tools accept it.
func (a *Azurite) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;",
		Account, AccountKey, a.Endpoint)
}

// Client returns an SDK client authenticated with the well-known shared key.
func (a *Azurite) Client() (*azblob.Client, error) {
	cred, err := azblob.NewSharedKeyCredential(Account, AccountKey)
	if err != nil {
		return nil, fmt.Errorf("azurite shared key: %w", err)
	}
	c, err := azblob.NewClientWithSharedKeyCredential(a.Endpoint+"/", cred, nil)
	if err != nil {
		return nil, fmt.Errorf("azurite client: %w", err)
	}
	return c, nil
}

// CreateContainer creates a container (test setup).
func (a *Azurite) CreateContainer(ctx context.Context, name string) error {
	c, err := a.Client()
	if err != nil {
		return err
	}
	if _, err := c.CreateContainer(ctx, name, nil); err != nil {
		return fmt.Errorf("create container %q: %w", name, err)
	}
	return nil
}

// Start starts Azurite for a test and stops it (SIGKILL) in the test's
// cleanup. When Azurite cannot start, the test fails; it never skips.
func Start(t testing.TB) *Azurite {
	t.Helper()
	a, err := startProcess(t.TempDir(), false)
	if err != nil {
		t.Fatalf("start Azurite: %v\nInstall it with `make azurite` (hack/azurite/install.sh) or point $%s at azurite-blob.", err, EnvBinary)
	}
	t.Cleanup(a.Stop)
	return a
}

// StartProcess starts Azurite outside a test (end-to-end programs, demos),
// with data in a new temporary directory. The caller must call Stop.
func StartProcess() (*Azurite, error) {
	dir, err := os.MkdirTemp("", "azurite-")
	if err != nil {
		return nil, fmt.Errorf("azurite data directory: %w", err)
	}
	a, err := startProcess(dir, true)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return a, nil
}

// Binary returns the azurite-blob executable to run: $AZURITE_BLOB, or the
// one installed under the module root's hack/azurite.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, relBinary)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("azurite-blob not installed at %s: %w", p, err)
	}
	return p, nil
}

func startProcess(dir string, ownDir bool) (*Azurite, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		a, err := launch(bin, dir, port)
		if err == nil {
			a.ownDir = ownDir
			return a, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func launch(bin, dir string, port int) (*Azurite, error) {
	out := &syncbuf.Buffer{Limit: outputLimit}
	cmd := exec.Command(bin,
		"--blobHost", "127.0.0.1",
		"--blobPort", strconv.Itoa(port),
		"--location", dir,
		// The SDK is often newer than the emulator's newest API version.
		"--skipApiVersionCheck",
		// Accept headers Azurite does not implement instead of failing.
		"--loose",
		// No access log.
		"--silent",
	)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	a := &Azurite{
		Endpoint: fmt.Sprintf("http://127.0.0.1:%d/%s", port, Account),
		Port:     port,
		Dir:      dir,
		cmd:      cmd,
		done:     make(chan struct{}),
		output:   out,
	}
	go func() {
		_ = cmd.Wait()
		close(a.done)
	}()
	if err := a.waitReady(); err != nil {
		a.kill()
		return nil, fmt.Errorf("%w; azurite output:\n%s", err, out.String())
	}
	return a, nil
}

// waitReady polls until Azurite answers HTTP on its port (any status: an
// unauthenticated request is refused with 403, which proves it is serving).
func (a *Azurite) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			return errors.New("azurite-blob exited during start")
		default:
		}
		resp, err := client.Get(a.Endpoint + "?comp=list")
		if err == nil {
			_ = resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("azurite-blob did not answer on %s within %s", a.Endpoint, startTimeout)
}

// Stop kills Azurite and its process group with SIGKILL (it ignores SIGTERM
// for a while), waits for it to exit, and removes a data directory that
// StartProcess created. It is safe to call more than once.
func (a *Azurite) Stop() {
	a.stopped.Do(func() {
		a.kill()
		if a.ownDir {
			_ = os.RemoveAll(a.Dir)
		}
	})
}

func (a *Azurite) kill() {
	pid := a.cmd.Process.Pid
	// The negative pid addresses the process group created by Setpgid.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = a.cmd.Process.Kill()
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// moduleRoot walks up from the working directory to the go.mod of this
// module (tests run in their package directory; programs usually at the root).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("module root of %s not found above the working directory; set $%s", modulePath, EnvBinary)
		}
		dir = parent
	}
}

// outputLimit is how much of the process output is kept for error
// messages: its last 64 KiB.
const outputLimit = 64 << 10

// PID returns the process id of azurite-blob (Node).
func (a *Azurite) PID() int { return a.cmd.Process.Pid }
