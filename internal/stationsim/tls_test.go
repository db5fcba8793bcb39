package stationsim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/testutil/testpki"
)

// cupsTLSServer answers every request with "nothing to change", presenting
// cert.
func cupsTLSServer(t *testing.T, cert tls.Certificate) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "14")
		_, _ = w.Write(make([]byte, 14))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// TestServerCertificateCheckedAsMbedTLS: the simulated station accepts a
// CUPS server certificate exactly when a real station (mbedTLS 2.28)
// does. Go's TLS would accept the IP-only certificate that a real station
// refuses with "X509 - Certificate verification failed", and refuse the
// CN-only one a real station accepts.
func TestServerCertificateCheckedAsMbedTLS(t *testing.T) {
	ca, err := testpki.NewCA("cups CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := testpki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(ca *testpki.CA, mutate func(*x509.Certificate)) tls.Certificate {
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: "cups"},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		mutate(tmpl)
		iss, err := ca.Sign(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		return iss.TLS()
	}
	good, err := ca.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		cert     tls.Certificate
		host     string // in cups.uri
		wantErr  bool
		mismatch bool
	}{
		{name: "testpki server certificate, URI with 127.0.0.1", cert: good.TLS(), host: "127.0.0.1"},
		{name: "testpki server certificate, URI with localhost", cert: good.TLS(), host: "localhost"},
		{name: "IP-only subjectAltName is refused (mbedTLS ignores iPAddress entries)", host: "127.0.0.1", wantErr: true, mismatch: true,
			cert: leaf(ca, func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")} })},
		{name: "IP SAN plus DNS localhost, URI with 127.0.0.1, is refused", host: "127.0.0.1", wantErr: true, mismatch: true,
			cert: leaf(ca, func(c *x509.Certificate) {
				c.IPAddresses, c.DNSNames = []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}
			})},
		{name: "wrong DNS name is refused", host: "localhost", wantErr: true, mismatch: true,
			cert: leaf(ca, func(c *x509.Certificate) { c.DNSNames = []string{"cups.example.com"} })},
		{name: "CN is ignored when a subjectAltName is present", host: "127.0.0.1", wantErr: true, mismatch: true,
			cert: leaf(ca, func(c *x509.Certificate) {
				c.Subject.CommonName, c.DNSNames = "127.0.0.1", []string{"cups.example.com"}
			})},
		{name: "CN counts when there is no subjectAltName", host: "127.0.0.1",
			cert: leaf(ca, func(c *x509.Certificate) { c.Subject.CommonName = "127.0.0.1" })},
		{name: "DNS name matches ignoring case", host: "LocalHost",
			cert: leaf(ca, func(c *x509.Certificate) { c.DNSNames = []string{"localhost"} })},
		{name: "signed by a CA outside cups.trust is refused", host: "127.0.0.1", wantErr: true,
			cert: leaf(otherCA, func(c *x509.Certificate) { testpki.ServerNames(c) })},
		{name: "clientAuth-only extended key usage is refused", host: "127.0.0.1", wantErr: true,
			cert: leaf(ca, func(c *x509.Certificate) {
				testpki.ServerNames(c)
				c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
			})},
		{name: "expired certificate is refused", host: "127.0.0.1", wantErr: true,
			cert: leaf(ca, func(c *x509.Certificate) {
				testpki.ServerNames(c)
				c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
			})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			srv := cupsTLSServer(t, tt.cert)
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
			st := State{
				EUI:      0x001122FFFE334455,
				CUPSURI:  "https://" + net.JoinHostPort(tt.host, port),
				CUPSCred: CredSet{Trust: ca.Cert.Raw, Key: []byte("Authorization: Bearer t\r\n")},
				Package:  "v1",
			}
			res := New(st, WithTimeout(5*time.Second)).Poll(context.Background())
			if !tt.wantErr {
				g.Expect(res.Err).NotTo(HaveOccurred())
				g.Expect(res.StatusCode).To(Equal(200))
				return
			}
			var cve *CertVerifyError
			g.Expect(errors.As(res.Err, &cve)).To(BeTrue(), "want a certificate refusal, got %v", res.Err)
			g.Expect(res.Err.Error()).To(ContainSubstring("X509 - Certificate verification failed"))
			g.Expect(cve.NameMismatch()).To(Equal(tt.mismatch), cve.Error())
			if tt.mismatch {
				g.Expect(cve.Reasons).To(ContainElement("The certificate Common Name (CN) does not match with the expected CN"))
			}
			g.Expect(res.StatusCode).To(BeZero(), "no request was sent")
		})
	}
}

// TestMatchesHost is mbedTLS's name rule, wildcards included.
func TestMatchesHost(t *testing.T) {
	withSAN := func(dns ...string) *x509.Certificate {
		return &x509.Certificate{DNSNames: dns, Extensions: []pkix.Extension{{Id: oidSubjectAltName}}}
	}
	withCN := func(cn string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: cn}}}}
	}
	tests := []struct {
		cert *x509.Certificate
		host string
		want bool
	}{
		{withSAN("cups.example.com"), "cups.example.com", true},
		{withSAN("cups.example.com"), "CUPS.Example.COM", true},
		{withSAN("cups.example.com"), "cups.example.co", false},
		{withSAN("*.example.com"), "cups.example.com", true},
		{withSAN("*.example.com"), "a.b.example.com", false},
		{withSAN("*.example.com"), "example.com", false},
		{withSAN("*.example.com"), ".example.com", false},
		{withSAN("127.0.0.1"), "127.0.0.1", true},
		{withSAN(), "127.0.0.1", false}, // IP-only SAN: no dNSName at all
		{withSAN("x", "127.0.0.1"), "127.0.0.1", true},
		{withCN("127.0.0.1"), "127.0.0.1", true},
		{withCN("*.example.com"), "cups.example.com", true},
		{withCN("cups"), "127.0.0.1", false},
	}
	for _, tt := range tests {
		if got := MatchesHost(tt.cert, tt.host); got != tt.want {
			t.Errorf("MatchesHost(SAN %v CN %v, %q) = %v, want %v", tt.cert.DNSNames, tt.cert.Subject.Names, tt.host, got, tt.want)
		}
	}
}

// TestFleetStationsKeepTheirOwnTLSIdentity: stations of one Fleet share a
// TLS session cache, yet each speaks to CUPS with its own client
// certificate (or none, with a token), also after its credential changes.
// A resumed TLS session carries the client certificate of the handshake
// that made it, so a station resuming another's session would speak with
// the other station's identity, which no real station can do.
func TestFleetStationsKeepTheirOwnTLSIdentity(t *testing.T) {
	g := NewWithT(t)
	serverCA, err := testpki.NewCA("cups server CA")
	g.Expect(err).NotTo(HaveOccurred())
	server, err := serverCA.IssueServer()
	g.Expect(err).NotTo(HaveOccurred())
	stationCA, err := testpki.NewCA("stations CA")
	g.Expect(err).NotTo(HaveOccurred())

	var mu sync.Mutex
	var peer string // the last request's client certificate CN, or its token
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		peer = r.Header.Get("Authorization")
		if len(r.TLS.PeerCertificates) > 0 {
			peer = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		mu.Unlock()
		w.Header().Set("Content-Length", "14")
		_, _ = w.Write(make([]byte, 14))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{server.TLS()}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	uri := srv.URL // https://127.0.0.1:port, a dNSName of the certificate

	certCred := func(cn string) CredSet {
		c, err := stationCA.IssueClient(cn)
		g.Expect(err).NotTo(HaveOccurred())
		return CredSet{Trust: serverCA.Cert.Raw, Cert: c.DER(), Key: c.KeyDER}
	}
	stations := []*Station{
		New(State{EUI: 1, CUPSURI: uri, Package: "1", CUPSCred: certCred("station-1")}),
		New(State{EUI: 2, CUPSURI: uri, Package: "1", CUPSCred: certCred("station-2")}),
		New(State{EUI: 3, CUPSURI: uri, Package: "1", CUPSCred: CredSet{Trust: serverCA.Cert.Raw, Key: []byte("Authorization: Bearer token-of-station-3\r\n")}}),
	}
	want := []string{"station-1", "station-2", "Bearer token-of-station-3"}
	NewFleet(stations, FleetOptions{})
	poll := func(i int) string {
		t.Helper()
		res := stations[i].Poll(context.Background())
		g.Expect(res.Err).NotTo(HaveOccurred(), "station %d", i)
		mu.Lock()
		defer mu.Unlock()
		return peer
	}
	for round := range 3 {
		for i := range stations {
			g.Expect(poll(i)).To(Equal(want[i]), "round %d: station %d speaks as itself", round, i)
		}
	}
	// A new credential: the station's next session uses it, not a session
	// resumed with the old one.
	st := stations[0].State()
	st.CUPSCred = certCred("station-1-rotated")
	stations[0].SetState(st)
	g.Expect(poll(0)).To(Equal("station-1-rotated"))
}
