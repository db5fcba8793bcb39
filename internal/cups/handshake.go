package cups

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TLS handshake failure reasons, the values of the "reason" label of
// stationfleet_cups_tls_handshake_failures_total. The set is closed.
const (
	// HandshakeUnknownCA: the station's client certificate is not signed by
	// a CA of --cups-client-ca-file (a station locked out by its CA).
	HandshakeUnknownCA = "unknown_ca"
	// HandshakeExpired: the station's client certificate has expired or is
	// not valid yet (check the station's clock too).
	HandshakeExpired = "expired"
	// HandshakeNoCertificate: the station presented no client certificate
	// and --cups-require-client-certificate is set.
	HandshakeNoCertificate = "no_certificate"
	// HandshakeBadCertificate: any other problem with the station's
	// certificate (not for client authentication, unparsable, a signature
	// that does not match its key).
	HandshakeBadCertificate = "bad_certificate"
	// HandshakeServerCertRejected: the station refused the server's
	// certificate (its cups.trust does not hold the CA that signed it).
	HandshakeServerCertRejected = "server_certificate_rejected"
	// HandshakeProtocol: the peer does not speak TLS (plain HTTP on the TLS
	// port), or shares no version or cipher suite with the server.
	HandshakeProtocol = "protocol"
	// HandshakeClosed: the peer closed or reset the connection before the
	// handshake finished (load balancer TCP probes, port scanners).
	HandshakeClosed = "closed"
	// HandshakeTimeout: the handshake did not finish within the server's
	// header read timeout.
	HandshakeTimeout = "timeout"
	// HandshakeOther is every other failure.
	HandshakeOther = "other"
)

// handshakeReasons is every reason, for the metric's initial zero values.
var handshakeReasons = []string{HandshakeUnknownCA, HandshakeExpired, HandshakeNoCertificate, HandshakeBadCertificate,
	HandshakeServerCertRejected, HandshakeProtocol, HandshakeClosed, HandshakeTimeout, HandshakeOther}

// quietReasons are counted but logged only at debug verbosity: they are what
// health probes and scanners cause, not a station that cannot get in.
var quietReasons = map[string]bool{HandshakeClosed: true, HandshakeTimeout: true}

// errNoClientCertificate refuses, in the handshake, a peer that presented
// no certificate when one is required.
var errNoClientCertificate = errors.New("the station presented no client certificate, and one is required")

// classifyHandshake returns the reason of a failed handshake and the leaf
// certificate the peer presented, when it presented one.
func classifyHandshake(err error) (string, *x509.Certificate) {
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		var leaf *x509.Certificate
		if len(cve.UnverifiedCertificates) > 0 {
			leaf = cve.UnverifiedCertificates[0]
		}
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		switch {
		case errors.As(cve.Err, &unknown):
			return HandshakeUnknownCA, leaf
		case errors.As(cve.Err, &invalid) && invalid.Reason == x509.Expired:
			return HandshakeExpired, leaf
		default:
			return HandshakeBadCertificate, leaf
		}
	}
	var opErr *net.OpError
	var recErr tls.RecordHeaderError
	switch {
	case errors.Is(err, errNoClientCertificate):
		return HandshakeNoCertificate, nil
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// An alert the peer sent: about a certificate, it refused ours.
		if strings.Contains(opErr.Err.Error(), "certificate") {
			return HandshakeServerCertRejected, nil
		}
		return HandshakeProtocol, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return HandshakeTimeout, nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return HandshakeClosed, nil
	case errors.As(err, &recErr):
		return HandshakeProtocol, nil
	}
	// crypto/tls's own refusals are plain errors; these phrases have been
	// stable since Go 1.0 ("client certificate": unparsable, bad signature,
	// unsupported key).
	msg := err.Error()
	switch {
	case strings.Contains(msg, "client certificate"):
		return HandshakeBadCertificate, nil
	case strings.HasPrefix(msg, "tls: "):
		return HandshakeProtocol, nil
	}
	return HandshakeOther, nil
}

// handshakeListener hands the HTTP server TLS connections whose handshake
// has already completed. Each accepted connection's handshake runs in its
// own goroutine (a slow peer never holds up the accept loop), so that a
// failed handshake is seen with its error, the peer's address and the
// certificate the peer offered: net/http only logs such failures as text,
// and never runs a handler for them. The HTTP server's own handshake on the
// returned *tls.Conn is then a no-op, and r.TLS is set as usual.
type handshakeListener struct {
	inner   net.Listener
	cfg     *tls.Config
	timeout time.Duration
	failed  func(net.Conn, error)

	ready   chan net.Conn
	errs    chan error    // accept errors, for Accept to return
	stopped chan struct{} // closed when the accept loop ended on a permanent error
	stopErr error
	done    chan struct{} // closed by Close
	once    sync.Once

	mu       sync.Mutex
	inflight map[net.Conn]struct{}
}

// newHandshakeListener starts accepting on inner. timeout bounds each
// handshake; failed is called with each connection whose handshake failed
// (never after Close).
func newHandshakeListener(inner net.Listener, cfg *tls.Config, timeout time.Duration, failed func(net.Conn, error)) *handshakeListener {
	l := &handshakeListener{
		inner: inner, cfg: cfg, timeout: timeout, failed: failed,
		ready: make(chan net.Conn), errs: make(chan error), stopped: make(chan struct{}), done: make(chan struct{}),
		inflight: map[net.Conn]struct{}{},
	}
	go l.acceptLoop()
	return l
}

// Accept implements net.Listener.
func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.stopped:
		return nil, l.stopErr
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener: it stops accepting and closes the
// connections still in their handshake.
func (l *handshakeListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.mu.Lock()
		for c := range l.inflight {
			_ = c.Close()
		}
		l.mu.Unlock()
	})
	return err
}

// Addr implements net.Listener.
func (l *handshakeListener) Addr() net.Addr { return l.inner.Addr() }

func (l *handshakeListener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			// net/http retries temporary errors (too many open files)
			// with a backoff: hand them over, and go on.
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // as net/http does
				select {
				case l.errs <- err:
					continue
				case <-l.done:
					return
				}
			}
			l.stopErr = err
			close(l.stopped)
			return
		}
		l.mu.Lock()
		select {
		case <-l.done:
			l.mu.Unlock()
			_ = c.Close()
			return
		default:
		}
		l.inflight[c] = struct{}{}
		l.mu.Unlock()
		go l.handshake(c)
	}
}

// handshake completes c's handshake and hands the connection over, or
// reports the failure and closes it.
func (l *handshakeListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	if l.timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(l.timeout))
	}
	err := tc.HandshakeContext(context.Background())
	l.mu.Lock()
	delete(l.inflight, c)
	l.mu.Unlock()
	if err != nil {
		select {
		case <-l.done: // closed by Close: not the peer's doing
		default:
			l.failed(tc, err)
		}
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			// As net/http does: tell a plain-HTTP client what went wrong.
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	select {
	case l.ready <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP request line.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}
