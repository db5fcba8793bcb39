package cups

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// Station A is the real station of the vectors; B is another station.
const (
	stationA = "001122FFFE334455"
	stationB = "0000000000000B0B"
	tokenA   = "station-a-token-7f3a"
	tokenB   = "station-b-token-91c2"
	// vectorKeyCRC is the CRC32 of testdata/sig-0.key.
	vectorKeyCRC = 4101823099
	// noCredCRC is the credential CRC of a station with no credential files.
	noCredCRC = 2077607535
)

// Secrets whose bytes must never reach an unauthenticated caller.
var (
	cupsCredSecret = []byte("CUPS-CREDENTIAL-SECRET-0123456789")
	tcCredSecret   = []byte("TC-CREDENTIAL-SECRET-9876543210")
)

func sha256Hex(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// syncBuffer collects log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.buf.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 1})
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a running server with in-memory twins and blobs.
type harness struct {
	store    *memStore
	blobs    *memBlobs
	srv      *Server
	url      string
	reg      *prometheus.Registry
	logs     *syncBuffer
	notified chan string
}

// startServer serves on a loopback port until the test ends.
func startServer(t testing.TB, opts Options, store *memStore, blobs *memBlobs, extra ...Option) *harness {
	t.Helper()
	h := &harness{store: store, blobs: blobs, reg: prometheus.NewRegistry(), logs: &syncBuffer{}, notified: make(chan string, 100)}
	options := append([]Option{
		WithRegisterer(h.reg),
		WithLogger(h.logs.logger()),
		WithNotifier(NotifierFunc(func(r, _ string) { h.notified <- r })),
	}, extra...)
	srv, err := NewServer(opts, store, blobs, options...)
	must(t, err)
	h.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	scheme := "https"
	if opts.Insecure {
		scheme = "http"
	}
	h.url = scheme + "://" + ln.Addr().String() + UpdateInfoPath
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server did not shut down")
		}
	})
	return h
}

// client returns an HTTP/1.1 client trusting serverCA (nil for plain HTTP)
// and presenting cert (nil for none).
func client(serverCA *testCA, cert *issued) *http.Client {
	tr := &http.Transport{ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 1024}
	if serverCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(serverCA.cert)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if cert != nil {
			// Always present it, even when the server's list of acceptable
			// CAs does not name its issuer (Go's client would otherwise
			// keep a rogue certificate to itself).
			tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &cert.tls, nil
			}
		}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// reply is what a client received.
type reply struct {
	status int
	body   []byte
	resp   *http.Response
}

// post sends body to url with optional extra header lines ("Name: value").
func post(c *http.Client, url string, body []byte, headers ...string) (*reply, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return &reply{status: resp.StatusCode, body: b, resp: resp}, err
}

// fleetTwinA is station A's twin: the URIs the vector station holds, new
// credentials (CRCs differ), package 2.0.7 signed with sig-0.key.
func fleetTwinA(t testing.TB, thumbprints ...string) *twin.Twin {
	return &twin.Twin{
		DeviceID: stationA,
		CUPS: twin.CUPS{
			CupsURI:     "http://127.0.0.1:7171",
			CupsCredCRC: u32(1234), TcCredCRC: u32(5678),
			CupsCredentialURL: "mem://a/cups.cred", TcCredentialURL: "mem://a/tc.cred",
			Firmware: twin.Firmware{
				Package: "2.0.7", URL: "mem://fw/2.0.7",
				Signature:   encodeB64(readVector(t, "signature.der")),
				KeyChecksum: u32(vectorKeyCRC),
			},
		},
		ClientThumbprints: thumbprints,
		TokenSHA256:       []string{strings.ToUpper(sha256Hex(tokenA))},
	}
}

// noCredTwinA is station A's twin whose credential CRCs are those of a
// station without credential files, so that only firmware is at stake.
func noCredTwinA(t testing.TB) *twin.Twin {
	tw := fleetTwinA(t)
	tw.CUPS.CupsCredCRC, tw.CUPS.TcCredCRC = u32(noCredCRC), u32(noCredCRC)
	return tw
}

// testBlobs holds the credentials and the vector firmware.
func testBlobs(t testing.TB) *memBlobs {
	b := newMemBlobs()
	b.put("mem://a/cups.cred", cupsCredSecret)
	b.put("mem://a/tc.cred", tcCredSecret)
	b.put("mem://fw/2.0.7", readVector(t, "update.bin"))
	return b
}

// counterValue reads a counter or histogram count from the registry.
func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if labelValue(m, k) != v {
					continue metric
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			if m.Histogram != nil {
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

func discard() logr.Logger { return logr.Discard() }

// serveOnLoopback serves srv on a loopback port until the test ends and
// returns its base URL (scheme, host and port, no path: a station's cups.uri).
func serveOnLoopback(t testing.TB, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	scheme := "https"
	if srv.opts.Insecure {
		scheme = "http"
	}
	return scheme + "://" + ln.Addr().String()
}

// settle waits until every queued observation is written.
func settle(t testing.TB, srv *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.rec.busy.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("observations still queued after 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
