package cups

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
)

// expiredCert is a station certificate signed by ca that expired yesterday.
func expiredCert(t testing.TB, ca *testCA, cn string) *issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-72 * time.Hour),
		NotAfter:     time.Now().Add(-24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	out := &issued{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
	out.tls, err = tls.X509KeyPair(out.certPEM, out.keyPEM)
	must(t, err)
	return out
}

// defaultLevelLines collects only what a logger at the default verbosity
// (the manager's --zap-log-level=info) would print.
type defaultLevelLines struct{ buf syncBuffer }

func (d *defaultLevelLines) lines() []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(d.buf.String()), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// handshakeLines returns the default-level lines about failed handshakes.
func (d *defaultLevelLines) handshakeLines() []string {
	var out []string
	for _, l := range d.lines() {
		if strings.Contains(l, "TLS handshake failed") {
			out = append(out, l)
		}
	}
	return out
}

// TestServerReportsRefusedHandshakes: a station the TLS layer refuses (its
// certificate from another CA, expired, none when one is required, or our
// certificate refused by it) never reaches the HTTP handler, yet each
// refusal is counted by reason and logged once at the default level with
// the station's address, the reason and its certificate's subject.
func TestServerReportsRefusedHandshakes(t *testing.T) {
	serverCA, stationCA, rogueCA := newTestCA(t, "server CA"), newTestCA(t, "station CA"), newTestCA(t, "rogue CA")
	store := newMemStore()
	store.put(fleetTwinA(t))
	body := readVector(t, "request-package-2.0.7.json")

	tests := []struct {
		name     string
		require  bool
		tls12    bool    // as mbedTLS 2.28 speaks it
		trust    *testCA // the CA the station trusts for the server
		cert     *issued
		reason   string
		contains []string // in the log line
	}{
		{name: "certificate from another CA", trust: serverCA, cert: rogueCA.issue(t, stationA, false), reason: HandshakeUnknownCA,
			contains: []string{`"subject"="CN=` + stationA + `"`, `"issuer"="CN=rogue CA"`, `"station"="` + stationA + `"`, `"remote"="127.0.0.1:`}},
		{name: "certificate from another CA over TLS 1.2", tls12: true, trust: serverCA, cert: rogueCA.issue(t, stationA, false), reason: HandshakeUnknownCA,
			contains: []string{`"subject"="CN=` + stationA + `"`, `"issuer"="CN=rogue CA"`}},
		{name: "the station does not trust the server's CA over TLS 1.2", tls12: true, trust: rogueCA, cert: stationCA.issue(t, stationA, false),
			reason: HandshakeServerCertRejected, contains: []string{"remote error"}},
		{name: "expired certificate", trust: serverCA, cert: expiredCert(t, stationCA, "11:22ff:fe33:4455"), reason: HandshakeExpired,
			contains: []string{`"subject"="CN=11:22ff:fe33:4455"`, `"station"="` + stationA + `"`, `"notAfter"=`, "expired"}},
		{name: "no certificate when one is required", require: true, trust: serverCA, reason: HandshakeNoCertificate,
			contains: []string{"no client certificate"}},
		{name: "the station does not trust the server's CA", trust: rogueCA, cert: stationCA.issue(t, stationA, false),
			reason: HandshakeServerCertRejected, contains: []string{"remote error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			opts := writeTLSFiles(t, serverCA.issue(t, "cups", true), stationCA)
			opts.RequireClientCertificate = tt.require
			logs := &defaultLevelLines{}
			h := startServer(t, opts, store, testBlobs(t), WithLogger(logs.buf.loggerAt(0)))

			c := client(tt.trust, tt.cert)
			if tt.tls12 {
				c.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS12
			}
			_, err := post(c, h.url, body)
			g.Expect(err).To(HaveOccurred(), "the handshake must fail")
			g.Eventually(func() float64 {
				return counterValue(t, h.reg, "stationfleet_cups_tls_handshake_failures_total", map[string]string{"reason": tt.reason})
			}).Should(BeEquivalentTo(1), "counted once, by reason")
			g.Expect(counterValue(t, h.reg, "stationfleet_cups_requests_total", nil)).To(BeZero(), "the HTTP handler never ran")
			g.Eventually(logs.handshakeLines).Should(HaveLen(1))
			line := logs.handshakeLines()[0]
			g.Expect(line).To(ContainSubstring(`"reason"="` + tt.reason + `"`))
			for _, s := range tt.contains {
				g.Expect(line).To(ContainSubstring(s))
			}
			g.Expect(line).NotTo(ContainSubstring("PRIVATE KEY"))
			if tt.cert != nil {
				g.Expect(line).NotTo(ContainSubstring(string(tt.cert.keyPEM)))
			}
			g.Consistently(logs.handshakeLines, 200*time.Millisecond).Should(HaveLen(1), "exactly one line")
		})
	}
}

// TestServerHandshakeLogIsRateLimited: a fleet locked out by its CA
// retries all at once; every refusal is counted, the log shows a sample
// and how many lines it left out.
func TestServerHandshakeLogIsRateLimited(t *testing.T) {
	g := NewWithT(t)
	serverCA, stationCA, rogueCA := newTestCA(t, "server CA"), newTestCA(t, "station CA"), newTestCA(t, "rogue CA")
	store := newMemStore()
	store.put(fleetTwinA(t))
	logs := &defaultLevelLines{}
	now := time.Now()
	clock := func() time.Time { return now }
	h := startServer(t, writeTLSFiles(t, serverCA.issue(t, "cups", true), stationCA), store, testBlobs(t),
		WithLogger(logs.buf.loggerAt(0)), WithClock(clock))
	rogue := rogueCA.issue(t, stationA, false)
	const attempts = 3 * handshakeLogBurst
	for range attempts {
		_, err := post(client(serverCA, rogue), h.url, readVector(t, "request-package-2.0.7.json"))
		g.Expect(err).To(HaveOccurred())
	}
	count := func() float64 {
		return counterValue(t, h.reg, "stationfleet_cups_tls_handshake_failures_total", map[string]string{"reason": HandshakeUnknownCA})
	}
	g.Eventually(count).Should(BeEquivalentTo(attempts), "every refusal is counted")
	g.Expect(logs.handshakeLines()).To(HaveLen(handshakeLogBurst), "the clock stood still: only the burst is logged")

	// Later, the next refusal's line says how many were left out.
	now = now.Add(handshakeLogEvery)
	_, err := post(client(serverCA, rogue), h.url, readVector(t, "request-package-2.0.7.json"))
	g.Expect(err).To(HaveOccurred())
	g.Eventually(logs.handshakeLines).Should(HaveLen(handshakeLogBurst + 1))
	g.Expect(logs.handshakeLines()[handshakeLogBurst]).To(ContainSubstring(`"suppressed"=10`))
}

// TestServerHandshakeProbesAndPlainHTTP: a TCP probe that connects and
// closes is counted but not logged at the default level (a load balancer
// does it every few seconds); a plain-HTTP client is counted as a protocol
// failure, logged, and told what went wrong.
func TestServerHandshakeProbesAndPlainHTTP(t *testing.T) {
	g := NewWithT(t)
	serverCA, stationCA := newTestCA(t, "server CA"), newTestCA(t, "station CA")
	store := newMemStore()
	store.put(fleetTwinA(t))
	logs := &defaultLevelLines{}
	h := startServer(t, writeTLSFiles(t, serverCA.issue(t, "cups", true), stationCA), store, testBlobs(t), WithLogger(logs.buf.loggerAt(0)))
	u, err := url.Parse(h.url)
	g.Expect(err).NotTo(HaveOccurred())

	for range 3 {
		c, err := net.Dial("tcp", u.Host)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.Close()).To(Succeed())
	}
	g.Eventually(func() float64 {
		return counterValue(t, h.reg, "stationfleet_cups_tls_handshake_failures_total", map[string]string{"reason": HandshakeClosed})
	}).Should(BeEquivalentTo(3))

	c, err := net.Dial("tcp", u.Host)
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	_, err = io.WriteString(c, "POST /update-info HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	reply, _ := io.ReadAll(c)
	g.Expect(string(reply)).To(ContainSubstring("400 Bad Request"))
	g.Expect(string(reply)).To(ContainSubstring("HTTP request to an HTTPS server"))
	g.Eventually(func() float64 {
		return counterValue(t, h.reg, "stationfleet_cups_tls_handshake_failures_total", map[string]string{"reason": HandshakeProtocol})
	}).Should(BeEquivalentTo(1))
	g.Eventually(logs.handshakeLines).Should(HaveLen(1), "only the plain-HTTP client is logged: %v", logs.lines())
	g.Expect(logs.handshakeLines()[0]).To(ContainSubstring(`"reason"="protocol"`))

	// A station that gets in is served as before, through the same listener.
	r, err := post(client(serverCA, stationCA.issue(t, stationA, false)), h.url, readVector(t, "request-package-2.0.7.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(403), "a valid chain whose thumbprint the twin does not list")
}

func TestClassifyHandshake(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{errors.New("tls: failed to parse client certificate: x509: malformed"), HandshakeBadCertificate},
		{errors.New("tls: invalid signature by the client certificate: bad"), HandshakeBadCertificate},
		{errors.New("tls: client offered only unsupported versions: [301]"), HandshakeProtocol},
		{errors.New("tls: no cipher suite supported by both client and server"), HandshakeProtocol},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: protocol version not supported")}, HandshakeProtocol},
		{&net.OpError{Op: "read", Err: io.EOF}, HandshakeClosed},
		{io.EOF, HandshakeClosed},
		{errors.New("something else"), HandshakeOther},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			got, leaf := classifyHandshake(tt.err)
			NewWithT(t).Expect(got).To(Equal(tt.want))
			NewWithT(t).Expect(leaf).To(BeNil())
		})
	}
}

// loggerAt returns a logger into b that keeps messages up to verbosity v.
func (b *syncBuffer) loggerAt(v int) logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.buf.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: v})
}
