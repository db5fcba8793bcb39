// Package promserver starts a real Prometheus server (Debian's `prometheus`
// package, /usr/bin/prometheus) on 127.0.0.1 for the demo and, through
// internal/testutil/promtest, the tests, scraping the given targets every
// second, so that analysis steps run against the real query engine and
// HTTP API. It does not import Go's testing package (the demo links it).
//
// The binary is $PROMETHEUS when set, else `prometheus` on $PATH.
package promserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stationfleet/stationfleet/internal/syncbuf"
)

// EnvBinary names the environment variable that overrides where the
// prometheus binary is found.
const EnvBinary = "PROMETHEUS"

const (
	// startTimeout bounds how long Prometheus may take to be ready; it is
	// ready in about 1 s here, 60 s leaves room for a loaded CI machine.
	startTimeout = 60 * time.Second
	// startAttempts retries when the free port picked was taken between
	// our probe and Prometheus's listen.
	startAttempts = 3
	// ScrapeInterval is how often the targets are scraped.
	ScrapeInterval = time.Second
)

// Prometheus is a running Prometheus server.
type Prometheus struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// Dir holds the configuration and the TSDB.
	Dir string

	cmd     *exec.Cmd
	done    chan struct{}
	out     *syncbuf.Buffer
	ownDir  bool
	stopped sync.Once
}

// StartProcess starts Prometheus with its data in a new temporary
// directory, removed by Stop. The caller must call Stop.
func StartProcess(targets ...string) (*Prometheus, error) {
	dir, err := os.MkdirTemp("", "prometheus-")
	if err != nil {
		return nil, fmt.Errorf("prometheus data directory: %w", err)
	}
	p, err := start(dir, true, targets)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// Binary returns the prometheus executable: $PROMETHEUS, or prometheus on
// $PATH.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("prometheus")
	if err != nil {
		return "", fmt.Errorf("prometheus is not installed: %w", err)
	}
	return p, nil
}

// StartIn starts Prometheus with its data in dir, which Stop leaves.
func StartIn(dir string, targets ...string) (*Prometheus, error) { return start(dir, false, targets) }

func start(dir string, ownDir bool, targets []string) (*Prometheus, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config(targets)), 0o600); err != nil {
		return nil, fmt.Errorf("write prometheus config: %w", err)
	}
	var lastErr error
	for range startAttempts {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		p, err := launch(bin, dir, cfg, addr)
		if err == nil {
			p.ownDir = ownDir
			return p, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// config scrapes each target's /metrics every ScrapeInterval.
func config(targets []string) string {
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = fmt.Sprintf("%q", t)
	}
	return fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: stationsim
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
}

func launch(bin, dir, cfg, addr string) (*Prometheus, error) {
	out := &syncbuf.Buffer{Limit: 1 << 20}
	cmd := exec.Command(bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	p := &Prometheus{URL: "http://" + addr, Dir: dir, cmd: cmd, done: make(chan struct{}), out: out}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

func (p *Prometheus) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("prometheus exited at start: %s", p.out.String())
		default:
		}
		if get(p.URL + "/-/ready") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("prometheus not ready after %s: %s", startTimeout, p.out.String())
}

// WaitScraped waits until every target was scraped successfully at least
// once (up == 1 for each), or ctx ends.
func (p *Prometheus) WaitScraped(ctx context.Context, targets int) error {
	q := url.Values{"query": {`count(up{job="stationsim"} == 1)`}}
	for {
		if body, ok := getBody(p.URL + "/api/v1/query?" + q.Encode()); ok &&
			strings.Contains(body, fmt.Sprintf(`"%d"]`, targets)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("prometheus did not scrape its %d targets: %w", targets, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop stops Prometheus (SIGTERM, then SIGKILL after 5 s) and removes its
// directory when it made it.
func (p *Prometheus) Stop() {
	p.stopped.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.kill()
		}
		if p.ownDir {
			_ = os.RemoveAll(p.Dir)
		}
	})
}

func (p *Prometheus) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Log returns what Prometheus printed.
func (p *Prometheus) Log() string { return p.out.String() }

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func get(u string) bool {
	_, ok := getBody(u)
	return ok
}

func getBody(u string) (string, bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil && !errors.Is(err, context.Canceled) {
		return "", false
	}
	return b.String(), resp.StatusCode == http.StatusOK
}
