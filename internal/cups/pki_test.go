package cups

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // thumbprints
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		// Named as a real station needs it: "127.0.0.1" and "localhost"
		// as dNSNames (mbedTLS ignores iPAddress entries), 127.0.0.1 also
		// as an iPAddress for Go clients.
		testpki.ServerNames(tmpl)
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := &issued{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		certDER: der,
		keyDER:  kder,
	}
	sum := sha1.Sum(der) //nolint:gosec // thumbprint
	out.thumbprint = hex.EncodeToString(sum[:])
	out.tls, err = tls.X509KeyPair(out.certPEM, out.keyPEM)
	if err != nil {
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
