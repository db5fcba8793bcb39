package cups

import (
	"context"
	"crypto/sha1" //nolint:gosec // the starter kit's thumbprint is SHA-1 of the DER certificate
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// UpdateInfoPath is the only path a station posts to.
const UpdateInfoPath = "/update-info"

// Server is the CUPS server: it answers POST /update-info. It is a
// controller-runtime Runnable that runs on every replica (no leader
// election), and can also be started on its own.
type Server struct {
	opts     Options
	store    TwinStore
	blobs    BlobOpener
	cache    *TwinCache
	notifier Notifier
	log      logr.Logger
	logSet   bool
	reg      prometheus.Registerer
	now      func() time.Time
	tls      *tlsReloader

	m          *metrics
	handshakes *handshakeReporter
	rec        *recorder
	outcomes   map[string]outcomeMetrics
	bufs       sync.Pool
	addr       atomic.Pointer[net.Addr]
}

type outcomeMetrics struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

var (
	_ manager.Runnable               = (*Server)(nil)
	_ manager.LeaderElectionRunnable = (*Server)(nil)
	_ http.Handler                   = (*Server)(nil)
)

// Option customises a Server beyond its Options.
type Option func(*Server)

// WithNotifier sets who is told when a station owned by a rollout reports
// something new.
func WithNotifier(n Notifier) Option { return func(s *Server) { s.notifier = n } }

// WithLogger sets the server's logger; by default it is the logger of
// Start's context (the manager's), named "cups".
func WithLogger(l logr.Logger) Option { return func(s *Server) { s.log, s.logSet = l, true } }

// WithRegisterer sets where the metrics are registered; by default
// controller-runtime's metrics.Registry. Servers sharing a registerer share
// the collectors.
func WithRegisterer(r prometheus.Registerer) Option { return func(s *Server) { s.reg = r } }

// WithCache makes the server read twins through c, so that the controller
// can hold the same cache and invalidate it.
func WithCache(c *TwinCache) Option { return func(s *Server) { s.cache = c } }

// WithClock sets the server's clock (tests).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// NewServer returns a server reading twins from store (through a TwinCache)
// and blobs from blobs (nil when no credential or firmware is ever served).
// In TLS mode it loads the certificate, key and client CA files now.
func NewServer(opts Options, store TwinStore, blobs BlobOpener, options ...Option) (*Server, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("cups: a twin store is required")
	}
	s := &Server{
		opts:  opts,
		store: store,
		blobs: blobs,
		log:   ctrllog.Log.WithName("cups"),
		reg:   ctrlmetrics.Registry,
		now:   time.Now,
	}
	for _, o := range options {
		o(s)
	}
	if s.cache == nil {
		s.cache = NewTwinCache(store, opts.CacheTTL)
	}
	if !opts.Insecure {
		r, err := newTLSReloader(opts, &s.log)
		if err != nil {
			return nil, err
		}
		s.tls = r
	}
	s.m = newMetrics(s.reg)
	s.handshakes = newHandshakeReporter(s.m)
	s.outcomes = map[string]outcomeMetrics{}
	for _, o := range []string{OutcomeNoChange, OutcomeChange, OutcomeUpdate, OutcomeRefused, OutcomeBadRequest,
		OutcomeUnauthorized, OutcomeForbidden, OutcomeNotFound, OutcomeMethod, OutcomeError, OutcomeAborted} {
		s.outcomes[o] = outcomeMetrics{s.m.requests.WithLabelValues(o), s.m.latency.WithLabelValues(o)}
	}
	s.rec = newRecorder(s)
	limit := opts.BodyLimit
	s.bufs.New = func() any { b := make([]byte, limit+1); return &b }
	return s, nil
}

// loadTLS builds the server's TLS configuration: its certificate, and client
// certificates verified against the CA bundle when one is given
// (VerifyClientCertIfGiven, so that token stations connect too).
func loadTLS(o Options) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cups: load TLS certificate %s: %w", o.CertFile, err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.NoClientCert,
	}
	if o.ClientCAFile != "" {
		pem, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("cups: read client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cups: client CA file %s holds no PEM certificate", o.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if o.RequireClientCertificate {
			// Not RequireAndVerifyClientCert: its refusal is an
			// unexported error, this one is counted and logged by name.
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errNoClientCertificate
				}
				return nil
			}
		}
	}
	return cfg, nil
}

// Cache returns the server's twin cache, for the controller to invalidate.
func (s *Server) Cache() *TwinCache { return s.cache }

// Addr returns the address the server listens on, nil before it listens.
func (s *Server) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica serves stations.
func (s *Server) NeedLeaderElection() bool { return false }

// Start implements manager.Runnable: it listens on Options.Addr and serves
// until ctx is cancelled, then shuts down gracefully.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("cups: listen on %s: %w", s.opts.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln (closing it) until ctx is cancelled, then shuts down
// gracefully: in-flight responses get Options.ShutdownTimeout to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.logSet {
		s.log = ctrllog.FromContext(ctx).WithName("cups")
	}
	addr := ln.Addr()
	s.addr.Store(&addr)
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		ErrorLog:          log.New(logWriter{s.log.V(1)}, "", 0),
		// Stations speak HTTP/1.1; no HTTP/2.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		BaseContext:  func(net.Listener) context.Context { return ctx },
	}
	// Writes are bounded per response and by the kernel (writebound.go).
	if kernelBoundsWrites {
		ln = writeBoundListener{Listener: ln, timeout: s.opts.WriteTimeout, log: s.log}
	} else {
		srv.WriteTimeout = s.opts.WriteTimeout
	}
	if s.opts.Insecure {
		s.log.Info("WARNING: CUPS SERVER RUNS WITHOUT TLS AND WITHOUT STATION AUTHENTICATION; "+
			"any caller may claim any station. This mode is for the embedded demo only, never for production.",
			"addr", addr.String())
	} else {
		cfg := s.tls.serverConfig()
		srv.TLSConfig = cfg
		// The handshake runs before net/http sees the connection, so that
		// a refused station is counted and logged (handshakeFailed).
		ln = newHandshakeListener(ln, cfg, handshakeTimeout(srv), s.handshakeFailed)
		s.log.Info("CUPS server listening", "addr", addr.String(), "clientCertificates", s.tls.config().ClientCAs != nil,
			"clientCertificateRequired", s.opts.RequireClientCertificate)
	}
	s.rec.start()
	defer s.rec.stop() // after the HTTP server: answered requests get their observations written
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("cups: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		s.log.Info("CUPS server closed connections still busy at shutdown", "error", err.Error())
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("cups: serve: %w", err)
	}
	return nil
}

// handshakeTimeout is how long net/http would give a TLS handshake: the
// shortest of its read and write timeouts.
func handshakeTimeout(srv *http.Server) time.Duration {
	var d time.Duration
	for _, v := range []time.Duration{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout} {
		if v > 0 && (d == 0 || v < d) {
			d = v
		}
	}
	return d
}

// logWriter sends net/http's own messages (TLS handshake failures are
// reported by handshakeFailed before net/http sees the connection) to
// the logger.
type logWriter struct{ l logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	outcome := OutcomeAborted
	defer func() {
		m := s.outcomes[outcome]
		m.count.Inc()
		m.latency.Observe(time.Since(start).Seconds())
	}()
	outcome = s.serve(w, r)
}

// lazyLog builds a request's logger on first use: a structured logger's
// WithValues (zap's in the manager) costs more than the whole no-change
// answer, which logs nothing at the default verbosity.
type lazyLog struct {
	base            logr.Logger
	remote, station string
	l               logr.Logger
	built           bool
}

func (z *lazyLog) get() logr.Logger {
	if !z.built {
		if z.station != "" {
			z.l = z.base.WithValues("remote", z.remote, "station", z.station)
		} else {
			z.l = z.base.WithValues("remote", z.remote)
		}
		z.built = true
	}
	return z.l
}

// authMethod is how a caller proved who it is.
type authMethod int

const (
	authNone authMethod = iota
	authCert
	authToken
)

// serve handles one request and returns its outcome.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) string {
	if r.URL.Path != UpdateInfoPath {
		refuseAndClose(w, "not found", http.StatusNotFound)
		return OutcomeNotFound
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuseAndClose(w, "method not allowed", http.StatusMethodNotAllowed)
		return OutcomeMethod
	}
	lg := &lazyLog{base: s.log, remote: r.RemoteAddr}

	// Parse the body, bounded.
	req, err := s.readRequest(r)
	if err != nil {
		lg.get().Info("refused malformed update-info request", "reason", err.Error())
		refuseAndClose(w, err.Error(), http.StatusBadRequest)
		return OutcomeBadRequest
	}
	deviceID := req.Router.DeviceID()
	lg.station = deviceID
	ctx := r.Context()

	// 1. Who is calling: a client certificate (whose CN must be the
	// router), a bearer token, or, in insecure mode, anybody.
	method, thumbprint, token, status := s.identify(r, req, lg)
	if status != 0 {
		return s.refuse(w, status)
	}

	// 2. The twin, through the cache.
	t, err := s.cache.Get(ctx, deviceID)
	switch {
	case errors.Is(err, twin.ErrNotFound):
		lg.get().Info("refused update-info for an unknown device")
		if method == authNone {
			return s.refuse(w, http.StatusNotFound)
		}
		return s.refuse(w, http.StatusForbidden)
	case err != nil:
		lg.get().Error(err, "read twin")
		http.Error(w, "twin registry unavailable", http.StatusServiceUnavailable)
		return OutcomeError
	}
	switch method {
	case authCert:
		if !thumbprintAllowed(t.ClientThumbprints, thumbprint) {
			lg.get().Info("refused update-info: client certificate thumbprint not in the twin", "thumbprint", thumbprint)
			return s.refuse(w, http.StatusForbidden)
		}
	case authToken:
		if !tokenAllowed(t.TokenSHA256, token) {
			lg.get().Info("refused update-info: bearer token not allowed for this station")
			return s.refuse(w, http.StatusForbidden)
		}
	}

	// 3-6. Decide.
	now := s.now()
	cached := t
	t = s.rec.overlay(cached)
	d, err := Decide(Input{Request: req, Twin: t, Authenticated: method != authNone, Now: now, Refresh: s.opts.ObservationRefresh})
	if err != nil {
		lg.get().Error(err, "twin holds inconsistent firmware fields; answering 500")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return OutcomeError
	}
	// An update counts as sent (towards maxUpdateAttempts) only once the
	// whole answer went out while the station still waited for it: a blob
	// store outage answered with a 503, or an answer the station gave up on
	// because this server was slow (a busy machine, a slow IoT Hub), must
	// not use up a station's attempts.
	commit := func(sent bool) {
		if !sent && d.Update != nil {
			d.Outcome.Served = ""
			var changed bool
			d.Observation, d.Record, changed = Observe(t.Observation, req, d.Outcome, now, s.opts.ObservationRefresh)
			d.Notify = changed && t.Ownership != nil
		}
		if d.Record {
			s.rec.record(ctx, deviceID, req, d, now, cached, lg.get())
		}
	}
	if d.Update == nil {
		commit(true)
	}
	if d.IsNoChange() {
		h := w.Header()
		h["Content-Type"] = octetStream
		h["Content-Length"] = noChangeLength
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(noChangeBody)
		if s.log.V(1).Enabled() {
			lg.get().V(1).Info("update-info: nothing to change", "refusal", d.Outcome.Refusal)
		}
		if d.Outcome.Refusal != "" {
			return OutcomeRefused
		}
		return OutcomeNoChange
	}
	if d.Update == nil {
		return s.respond(ctx, w, d, lg.get(), func(bool) {})
	}
	return s.respond(ctx, w, d, lg.get(), commit)
}

var (
	octetStream    = []string{"application/octet-stream"}
	noChangeLength = []string{strconv.Itoa(noChangeBodySize)}
)

// readRequest reads at most BodyLimit bytes of body and parses them.
func (s *Server) readRequest(r *http.Request) (*Request, error) {
	limit := s.opts.BodyLimit
	if r.ContentLength > limit {
		return nil, &RequestError{Msg: fmt.Sprintf("body of %d bytes exceeds the limit of %d", r.ContentLength, limit)}
	}
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	n, err := io.ReadFull(r.Body, buf)
	switch {
	case err == nil: // filled limit+1 bytes: too long
		return nil, &RequestError{Msg: fmt.Sprintf("body exceeds the limit of %d bytes", limit)}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
	default:
		return nil, &RequestError{Msg: "reading body: " + err.Error()}
	}
	return ParseRequest(buf[:n])
}

// identify works out who the caller claims to be and how it proves it. A
// non-zero status refuses the request before any twin is read.
func (s *Server) identify(r *http.Request, req *Request, lg *lazyLog) (method authMethod, thumbprint string, token []byte, status int) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if len(r.TLS.VerifiedChains) == 0 { // not reachable with VerifyClientCertIfGiven; defence in depth
			lg.get().Info("refused update-info: unverified client certificate")
			return 0, "", nil, http.StatusForbidden
		}
		leaf := r.TLS.PeerCertificates[0]
		eui, err := ParseEUI(leaf.Subject.CommonName)
		if err != nil {
			lg.get().Info("refused update-info: client certificate common name is not an EUI", "commonName", excerpt([]byte(leaf.Subject.CommonName)))
			return 0, "", nil, http.StatusForbidden
		}
		if eui != req.Router {
			lg.get().Info("refused update-info: router is not the station of the client certificate", "certificateStation", eui.DeviceID())
			return 0, "", nil, http.StatusForbidden
		}
		sum := sha1.Sum(leaf.Raw) //nolint:gosec // thumbprint, not a security hash here: the chain was verified
		return authCert, hex.EncodeToString(sum[:]), nil, 0
	}
	if tok, ok := bearerToken(r); ok {
		sum := sha256.Sum256([]byte(tok))
		return authToken, "", sum[:], 0
	}
	if s.opts.Insecure {
		return authNone, "", nil, 0
	}
	lg.get().Info("refused update-info: no client certificate and no bearer token")
	return 0, "", nil, http.StatusUnauthorized
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(prefix):])
	return tok, tok != ""
}

// thumbprintAllowed compares the hex SHA-1 thumbprint case-insensitively
// (and ignoring ':' separators) with the twin's list.
func thumbprintAllowed(allowed []string, thumbprint string) bool {
	for _, a := range allowed {
		if strings.EqualFold(strings.ReplaceAll(a, ":", ""), thumbprint) {
			return true
		}
	}
	return false
}

// tokenAllowed compares the token's SHA-256 in constant time with each hex
// hash in the twin's list.
func tokenAllowed(allowed []string, sum []byte) bool {
	ok := 0
	for _, a := range allowed {
		want, err := hex.DecodeString(strings.TrimSpace(a))
		if err != nil || len(want) != sha256.Size {
			continue
		}
		ok |= subtle.ConstantTimeCompare(want, sum)
	}
	return ok == 1
}

// refuseAndClose answers a request the server refuses (malformed,
// unauthenticated, unknown) and closes the connection after the answer: a
// Basics Station opens a new connection for every CUPS session, so only a
// hostile client would keep a refused connection open (for IdleTimeout)
// to hold server resources.
func refuseAndClose(w http.ResponseWriter, msg string, status int) {
	w.Header().Set("Connection", "close")
	http.Error(w, msg, status)
}

// refuse answers an authentication or lookup failure with no detail.
func (s *Server) refuse(w http.ResponseWriter, status int) string {
	refuseAndClose(w, http.StatusText(status), status)
	switch status {
	case http.StatusUnauthorized:
		return OutcomeUnauthorized
	case http.StatusNotFound:
		return OutcomeNotFound
	default:
		return OutcomeForbidden
	}
}

// respond opens the blobs the decision needs and streams the response. It
// calls commit(true) once the whole answer was sent, or commit(false) when
// it was not (a blob that cannot be opened, a station that hung up).
func (s *Server) respond(ctx context.Context, w http.ResponseWriter, d Decision, log logr.Logger, commit func(sent bool)) string {
	resp := Response{CupsURI: d.CupsURI, TcURI: d.TcURI}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	open := func(what, url string) (Blob, bool) {
		if s.blobs == nil {
			log.Error(errors.New("no blob store configured"), "cannot serve blob", "blob", what)
			return Blob{}, false
		}
		rc, n, err := s.blobs.Open(ctx, url)
		if err != nil {
			log.Error(err, "open blob", "blob", what)
			return Blob{}, false
		}
		closers = append(closers, rc)
		return Blob{R: rc, Size: n}, true
	}
	var ok bool
	if d.CupsCredURL != "" {
		if resp.CupsCred, ok = open("cupsCredential", d.CupsCredURL); !ok {
			commit(false)
			http.Error(w, "blob store unavailable", http.StatusServiceUnavailable)
			return OutcomeError
		}
	}
	if d.TcCredURL != "" {
		if resp.TcCred, ok = open("tcCredential", d.TcCredURL); !ok {
			commit(false)
			http.Error(w, "blob store unavailable", http.StatusServiceUnavailable)
			return OutcomeError
		}
	}
	if d.Update != nil {
		if resp.Update, ok = open("firmware", d.Update.URL); !ok {
			commit(false)
			http.Error(w, "blob store unavailable", http.StatusServiceUnavailable)
			return OutcomeError
		}
		resp.KeyCRC, resp.Signature = d.Update.KeyCRC, d.Update.Signature
	}
	n, err := resp.Len()
	if err != nil {
		log.Error(err, "response exceeds what a station accepts")
		commit(false)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return OutcomeError
	}
	// The whole answer within WriteTimeout (writebound.go); net/http
	// clears the deadline once the request is done.
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout)); err != nil {
		log.Error(err, "cannot set the response's write deadline")
	}
	h := w.Header()
	h["Content-Type"] = octetStream
	h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	w.WriteHeader(http.StatusOK)
	written, err := resp.WriteTo(w)
	if err == nil {
		err = ctx.Err() // the station hung up: it did not wait for the answer
	}
	if err != nil {
		commit(false)
		log.Error(err, "response cut short; aborting the connection", "written", written, "length", n)
		s.m.bytes.WithLabelValues("aborted").Add(float64(written))
		// Abort: the station must see a broken connection, never a body
		// shorter than its Content-Length that it might take as complete.
		panic(http.ErrAbortHandler)
	}
	// Counted before the last buffered bytes go out: the station cannot
	// poll again before it has the whole answer, so its next poll sees the
	// count (the cached twin is replaced in commit).
	commit(true)
	credBytes := resp.CupsCred.Size + resp.TcCred.Size
	s.m.bytes.WithLabelValues("update").Add(float64(resp.Update.Size))
	s.m.bytes.WithLabelValues("credentials").Add(float64(credBytes))
	s.m.bytes.WithLabelValues("other").Add(float64(n - resp.Update.Size - credBytes))
	if d.CupsCredURL != "" {
		s.m.credentials.WithLabelValues("cups").Inc()
	}
	if d.TcCredURL != "" {
		s.m.credentials.WithLabelValues("tc").Inc()
	}
	if d.Update != nil {
		s.m.updates.Inc()
		log.Info("update-info: firmware sent", "package", d.Update.Package, "bytes", n)
		return OutcomeUpdate
	}
	log.Info("update-info: URIs or credentials sent", "cupsUri", d.CupsURI != "", "tcUri", d.TcURI != "",
		"cupsCredential", d.CupsCredURL != "", "tcCredential", d.TcCredURL != "")
	if d.Outcome.Refusal != "" {
		return OutcomeRefused
	}
	return OutcomeChange
}
