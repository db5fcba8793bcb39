package cups

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"

	"github.com/stationfleet/stationfleet/internal/testutil/testpki"
)

// testCA is a certificate authority made in the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	ca, err := testpki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: ca.Cert, key: ca.Key, pem: ca.PEM()}
}

// issued is a certificate the test CA signed, with its key.
type issued struct {
	tls        tls.Certificate
	certPEM    []byte
	keyPEM     []byte
	certDER    []byte
	keyDER     []byte // SEC1
	thumbprint string // hex SHA-1 of the DER certificate, as the twin lists it
}

// issue signs a leaf: a server certificate for https://127.0.0.1 and
// https://localhost (testpki.ServerNames), or a station
// client certificate with the given common name.
func (ca *testCA) issue(t testing.TB, cn string, server bool) *issued {
	t.Helper()
	pki := &testpki.CA{Cert: ca.cert, Key: ca.key}
	issue := func() (*testpki.Issued, error) { return pki.IssueClient(cn) }
	if server {
		// Named as a real station needs it: "127.0.0.1" and "localhost"
		// as dNSNames (mbedTLS ignores iPAddress entries), 127.0.0.1 also
		// as an iPAddress for Go clients.
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: cn},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		testpki.ServerNames(tmpl)
		issue = func() (*testpki.Issued, error) { return pki.Sign(tmpl) }
	}
	c, err := issue()
	if err != nil {
		t.Fatal(err)
	}
	return toIssued(t, c)
}

func toIssued(t testing.TB, c *testpki.Issued) *issued {
	t.Helper()
	out := &issued{certPEM: c.CertPEM(), keyPEM: c.KeyPEM(), certDER: c.DER(), keyDER: c.KeyDER, thumbprint: c.Thumbprint()}
	var err error
	if out.tls, err = tls.X509KeyPair(out.certPEM, out.keyPEM); err != nil {
		t.Fatal(err)
	}
	return out
}

// writeTLSFiles writes the server certificate, its key and the client CA
// bundle to a temporary directory and returns Options pointing at them.
func writeTLSFiles(t testing.TB, server *issued, clientCA *testCA) Options {
	t.Helper()
	dir := t.TempDir()
	o := Options{
		CertFile: filepath.Join(dir, "tls.crt"),
		KeyFile:  filepath.Join(dir, "tls.key"),
	}
	must(t, os.WriteFile(o.CertFile, server.certPEM, 0o600))
	must(t, os.WriteFile(o.KeyFile, server.keyPEM, 0o600))
	if clientCA != nil {
		o.ClientCAFile = filepath.Join(dir, "ca.crt")
		must(t, os.WriteFile(o.ClientCAFile, clientCA.pem, 0o600))
	}
	return o
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
