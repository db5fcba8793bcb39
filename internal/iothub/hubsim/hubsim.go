// Package hubsim is an Azure IoT Hub emulator: an HTTPS server speaking the
// service REST API that github.com/amenzhinsky/iothub/iotservice (and
// Microsoft's service SDKs) use for device identities, twins and device
// queries.
//
// It is strict where IoT Hub is strict, so that code that works against it
// works against a hub: SAS tokens are verified (HMAC-SHA256 over the
// URL-encoded resource and expiry, expiry enforced, unknown policy or wrong
// key refused with 401); the api-version query parameter is required and
// must be a version IoT Hub documents; twin writes honour If-Match ETags
// (412 on a stale one), increment versions and apply JSON merge patches with
// null deleting; twin documents are checked against IoT Hub's key rules and
// size limits; queries are parsed strictly and paged with
// x-ms-max-item-count and x-ms-continuation in a stable order.
//
// State lives in memory and, when Options.StateFile is set, in a file written
// atomically shortly after each change and on shutdown, so a restart loses
// nothing. Tests inject faults (429 with Retry-After, 5xx, latency, dropped
// connections, concurrent writers) and read per-operation counters.
//
// The hub has a name, as every IoT hub has: a host name without a port
// (default "localhost"). It is the HostName of the connection string, the
// resource SAS tokens sign, and a DNS name of the server certificate. Where
// the emulator listens (Addr) is a separate matter: Microsoft's SDKs connect
// to HostName on port 443, so a standalone emulator for them listens on
// 127.0.0.1:443 (cmd/iothub-emulator); tests listen on a free port and tell
// the project's client to dial it (iothub.WithEndpoint), the way a hosts-file
// entry or a port forward would.
//
// Typical use in a test:
//
//	hub := hubsim.Start(t, hubsim.Options{})
//	client, _ := iothub.New(hub.ConnectionString(), iothub.WithCAFile(hub.CAFile()), iothub.WithEndpoint(hub.Addr()))
//
// and in a program:
//
//	hub, err := hubsim.New(hubsim.Options{Addr: "127.0.0.1:443", StateFile: "hub.json", CertDir: dir})
//	go hub.Serve(ctx)
package hubsim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// DefaultPolicyName is the shared access policy the emulator creates when
// Options.PolicyName is empty; IoT Hub creates a policy of this name with
// every hub.
const DefaultPolicyName = "iothubowner"

// DefaultHubName is the hub's host name when Options.HubName is empty: it
// resolves to the loopback address everywhere and is a DNS name of the
// emulator's server certificate.
const DefaultHubName = "localhost"

// APIVersions are the service API versions the emulator accepts: those IoT
// Hub documents for its data-plane REST API. iotservice v0.9.1 sends
// 2020-09-30; Microsoft's SDKs send 2021-04-12 and later.
var APIVersions = []string{
	"2018-06-30", "2019-03-30", "2019-10-01", "2020-03-13", "2020-06-30",
	"2020-09-30", "2021-04-12", "2021-11-30",
}

// Options configures an emulator. The zero value is usable.
type Options struct {
	// Addr is the TCP address to listen on; default "127.0.0.1:0" (a free
	// loopback port).
	Addr string
	// HubName is the hub's host name, without a port, as IoT Hub's
	// "<hub>.azure-devices.net": the connection string's HostName, the
	// resource every SAS token must sign, and a DNS name of the server
	// certificate. Default DefaultHubName.
	HubName string
	// PolicyName is the shared access policy of the connection string;
	// default DefaultPolicyName.
	PolicyName string
	// PolicyKey is that policy's key, base64 as in a connection string.
	// When empty, the key saved in StateFile is reused, or a random one made.
	PolicyKey string
	// ExtraPolicies are further policies, name to base64 key.
	ExtraPolicies map[string]string
	// StateFile, when set, is where the registry is persisted.
	StateFile string
	// SaveInterval is how often the state file is rewritten while the
	// registry changes; default 1s. Shutdown always writes it.
	SaveInterval time.Duration
	// CertDir is where the CA certificate (hubsim-ca.pem) and its key are
	// kept, and where the server certificate of this run is written
	// (hubsim-server.pem, certificate chain only); an existing CA there is
	// reused. Default: a new temporary directory.
	CertDir string
	// Logger receives the emulator's log; default discards.
	Logger logr.Logger
	// Now is the clock used for token expiry; default time.Now.
	Now func() time.Time
}

// Server is a running IoT Hub emulator.
type Server struct {
	opts     Options
	log      logr.Logger
	now      func() time.Time
	ln       net.Listener
	host     string // the hub's name: HostName of the connection string
	addr     string // where it listens
	policies map[string][]byte
	keyB64   string
	caFile   string
	caPool   *x509.CertPool
	tlsCfg   *tls.Config
	store    *store
	faults   faults
	counters counters
	apiVer   map[string]bool
	handler  http.Handler

	mu      sync.Mutex
	srv     *http.Server
	served  chan struct{}
	closing bool
}

// New creates an emulator listening on opts.Addr, with its CA written to
// CAFile and its state loaded from opts.StateFile. Call Serve to answer
// requests.
func New(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.PolicyName == "" {
		opts.PolicyName = DefaultPolicyName
	}
	if opts.HubName == "" {
		opts.HubName = DefaultHubName
	}
	if err := ValidateHubName(opts.HubName); err != nil {
		return nil, err
	}
	if opts.SaveInterval <= 0 {
		opts.SaveInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:   opts,
		log:    opts.Logger,
		now:    opts.Now,
		store:  newStore(),
		apiVer: map[string]bool{},
	}
	if s.log.GetSink() == nil {
		s.log = logr.Discard()
	}
	for _, v := range APIVersions {
		s.apiVer[v] = true
	}
	var savedKey string
	if opts.StateFile != "" {
		if err := s.store.load(opts.StateFile); err != nil {
			return nil, err
		}
		savedKey = readSavedKey(opts.StateFile, opts.PolicyName)
	}
	key := opts.PolicyKey
	if key == "" {
		key = savedKey
	}
	if key == "" {
		key = randomKey()
	}
	s.keyB64 = key
	s.policies = map[string][]byte{}
	kb, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return nil, fmt.Errorf("policy %s: key is not base64: %w", opts.PolicyName, err)
	}
	s.policies[opts.PolicyName] = kb
	for name, k := range opts.ExtraPolicies {
		kb, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return nil, fmt.Errorf("policy %s: key is not base64: %w", name, err)
		}
		s.policies[name] = kb
	}
	if opts.StateFile != "" {
		if err := saveKey(opts.StateFile, opts.PolicyName, key); err != nil {
			return nil, err
		}
	}

	dir := opts.CertDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "hubsim-"); err != nil {
			return nil, fmt.Errorf("cert dir: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cert dir: %w", err)
	}
	ca, caKey, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	cert, err := serverCert(ca, caKey, opts.HubName)
	if err != nil {
		return nil, err
	}
	if err := writeServerCert(dir, cert); err != nil {
		return nil, err
	}
	s.caFile = filepath.Join(dir, caCertFile)
	s.caPool = x509.NewCertPool()
	s.caPool.AddCert(ca)
	s.tlsCfg = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"}, // HTTP/1.1 only, as IoT Hub's REST API; lets faults hijack
	}

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", opts.Addr, err)
	}
	s.ln = ln
	s.host = strings.ToLower(opts.HubName)
	s.addr = ln.Addr().String()
	s.handler = s.routes()
	return s, nil
}

// ValidateHubName checks that name is what IoT Hub puts in a connection
// string's HostName: a DNS host name, without a port or a scheme. An IP
// address is refused too: IoT Hub's names are DNS names, and the emulator's
// server certificate names the hub by a DNS subjectAltName.
func ValidateHubName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("hub name %q: %s; use a host name such as %s or myhub.example.test (where the emulator listens is set apart, by its address)", name, why, DefaultHubName)
	}
	switch {
	case name == "":
		return bad("empty")
	case strings.Contains(name, "://"):
		return bad("a host name has no scheme")
	case strings.Contains(name, ":"):
		return bad("a host name has no port")
	case net.ParseIP(name) != nil:
		return bad("an IP address is not a host name")
	case len(name) > 253:
		return bad("longer than 253 characters")
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad("each dot-separated label must be 1 to 63 characters, not starting or ending with '-'")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return bad("only letters, digits, '-' and '.' are allowed")
			}
		}
	}
	return nil
}

// keyFile is where the generated policy key is kept beside the state file,
// so the connection string survives a restart.
func keyFile(stateFile string) string { return stateFile + ".policy" }

func readSavedKey(stateFile, policy string) string {
	b, err := os.ReadFile(keyFile(stateFile))
	if err != nil {
		return ""
	}
	var m map[string]string
	if json.Unmarshal(b, &m) != nil {
		return ""
	}
	return m[policy]
}

func saveKey(stateFile, policy, key string) error {
	b, _ := json.Marshal(map[string]string{policy: key})
	return writeFileAtomic(keyFile(stateFile), b, 0o600)
}

// TB is the part of testing.TB that Start needs.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	TempDir() string
}

// Start runs an emulator for the duration of a test; it stops (and saves its
// state) in the test's cleanup.
func Start(t TB, opts Options) *Server {
	t.Helper()
	if opts.CertDir == "" {
		opts.CertDir = t.TempDir()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("start hubsim: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("hubsim: %v", err)
		}
	})
	return s
}

// Serve answers requests until ctx is done, then shuts down gracefully and
// writes the state file. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.srv != nil {
		s.mu.Unlock()
		return errors.New("hubsim: Serve called twice")
	}
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:          log.New(io.Discard, "", 0), // TLS handshake noise from dropped connections
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.counters.conns.Add(1)
			}
		},
	}
	s.served = make(chan struct{})
	srv := s.srv
	s.mu.Unlock()
	s.log.Info("IoT Hub emulator listening", "hostName", s.host, "addr", s.addr, "caFile", s.caFile, "stateFile", s.opts.StateFile)

	saverDone := make(chan struct{})
	stopSaver := make(chan struct{})
	go func() {
		defer close(saverDone)
		if s.opts.StateFile == "" {
			return
		}
		t := time.NewTicker(s.opts.SaveInterval)
		defer t.Stop()
		for {
			select {
			case <-stopSaver:
				return
			case <-t.C:
				if s.store.isChanged() {
					if err := s.store.save(s.opts.StateFile); err != nil {
						s.log.Error(err, "save state")
					}
				}
			}
		}
	}()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(s.ln, s.tlsCfg)) }()
	var err error
	select {
	case <-ctx.Done():
		// Requests in flight get a moment to finish. Connections a client
		// opened but never used count as busy for 5s in net/http's Shutdown,
		// so after the grace period the rest are closed rather than waited for.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close()
		}
		cancel()
		<-errc
	case err = <-errc:
	}
	close(stopSaver)
	<-saverDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if s.opts.StateFile != "" {
		if serr := s.store.save(s.opts.StateFile); serr != nil && err == nil {
			err = serr
		}
	}
	close(s.served)
	return err
}

// Close releases the listener of a server that was never served (Serve
// stops through its context and closes the listener itself).
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("hubsim: Close after Serve: cancel Serve's context instead")
	}
	return s.ln.Close()
}

// Save writes the state file now (a no-op without Options.StateFile).
func (s *Server) Save() error {
	if s.opts.StateFile == "" {
		return nil
	}
	return s.store.save(s.opts.StateFile)
}

// HostName is the hub's host name as it appears in the connection string
// (Options.HubName, "localhost" by default): never a port.
func (s *Server) HostName() string { return s.host }

// Addr is the address the emulator listens on ("127.0.0.1:PORT"). A client
// whose HostName does not lead there by itself dials it instead
// (iothub.WithEndpoint), keeping HostName for TLS and SAS.
func (s *Server) Addr() string { return s.addr }

// ConnectionString is the service connection string for the emulator's
// policy: HostName=<hub name>;SharedAccessKeyName=...;SharedAccessKey=...
// It holds a secret: do not log it.
func (s *Server) ConnectionString() string {
	return "HostName=" + s.host + ";SharedAccessKeyName=" + s.opts.PolicyName + ";SharedAccessKey=" + s.keyB64
}

// CAFile is the path of the PEM CA certificate that signed the emulator's
// server certificate; clients trust the emulator through it.
func (s *Server) CAFile() string { return s.caFile }

// ServerCertFile is the path of the PEM server certificate chain this run
// serves (for inspection; clients trust CAFile).
func (s *Server) ServerCertFile() string {
	return filepath.Join(filepath.Dir(s.caFile), serverCertFile)
}

// CertPool holds the emulator's CA.
func (s *Server) CertPool() *x509.CertPool { return s.caPool }

// ClientTLSConfig is a client TLS configuration trusting the emulator.
func (s *Server) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12}
}

// Seed creates (or replaces) a device and its twin directly, without HTTP:
// for setting up large fleets quickly. tags and desired are copied as JSON.
func (s *Server) Seed(deviceID string, tags, desired map[string]any) error {
	if !validDeviceID(deviceID) {
		return fmt.Errorf("seed %q: invalid device id", deviceID)
	}
	t, err := normalize(tags)
	if err != nil {
		return fmt.Errorf("seed %q: tags: %w", deviceID, err)
	}
	d, err := normalize(desired)
	if err != nil {
		return fmt.Errorf("seed %q: desired: %w", deviceID, err)
	}
	if err := validateDoc(t, false); err != nil {
		return fmt.Errorf("seed %q: tags: %w", deviceID, err)
	}
	if err := validateDoc(d, false); err != nil {
		return fmt.Errorf("seed %q: desired: %w", deviceID, err)
	}
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	dev := s.store.newDeviceLocked(deviceID, "", "", "", s.now())
	dev.Tags, dev.Desired = t, d
	s.store.putLocked(dev)
	return nil
}

// normalize round-trips v through JSON so that it holds only the types a
// decoded request holds (map[string]any, []any, json.Number, ...).
func normalize(v map[string]any) (map[string]any, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeObject(b)
}

func decodeObject(b []byte) (map[string]any, error) {
	var m map[string]any
	if err := unmarshalNumber(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// TwinDocument returns the twin of deviceID as GET /twins would return it,
// decoded with encoding/json defaults; ok is false when the device does not
// exist.
func (s *Server) TwinDocument(deviceID string) (doc map[string]any, ok bool) {
	d := s.store.get(deviceID)
	if d == nil {
		return nil, false
	}
	b, _ := json.Marshal(renderTwin(d))
	_ = json.Unmarshal(b, &doc) // numbers as float64, as a test expects them
	return doc, true
}

// DeviceCount returns how many devices the registry holds.
func (s *Server) DeviceCount() int {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	return len(s.store.devices)
}
