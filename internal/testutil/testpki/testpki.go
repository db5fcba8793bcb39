// Package testpki issues the certificates tests, the soak run and the demo
// use for a CUPS server, named so that a real Basics Station accepts them.
//
// A station checks the server certificate with mbedTLS 2.28, which matches
// the host of its cups.uri against the dNSName entries of subjectAltName
// only: an iPAddress entry never matches, and a URI with an IP literal such
// as https://127.0.0.1:7171 needs a dNSName holding the text "127.0.0.1".
// Go clients (the IoT Hub client, curl-like tools) match an IP literal
// against iPAddress entries only. A certificate that serves both therefore
// carries every host as a dNSName, and IP literals also as iPAddresses:
// that is what ServerNames sets.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // thumbprints are SHA-1 by definition
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// LoopbackHosts are the hosts a loopback CUPS server certificate names:
// stations use https://127.0.0.1:PORT or https://localhost:PORT.
var LoopbackHosts = []string{"localhost", "127.0.0.1"}

// ServerNames sets tmpl's subjectAltName for hosts (LoopbackHosts when
// none): each host as a dNSName, IP literals also as an iPAddress. It
// leaves the subject alone (mbedTLS ignores the CN once a subjectAltName
// is present).
func ServerNames(tmpl *x509.Certificate, hosts ...string) {
	if len(hosts) == 0 {
		hosts = LoopbackHosts
	}
	tmpl.DNSNames, tmpl.IPAddresses = nil, nil
	for _, h := range hosts {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
}

// CA is a certificate authority made for a test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed EC P-256 CA valid for a day.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// PEM returns the CA certificate as PEM (a cups.trust or a client CA file).
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Issued is a certificate the CA signed, with its EC P-256 key.
type Issued struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// KeyDER is the key in SEC1 DER, the form a station's .key file holds.
	KeyDER []byte
}

// DER returns the certificate's DER (a station's .crt file).
func (i *Issued) DER() []byte { return i.Cert.Raw }

// CertPEM returns the certificate as PEM.
func (i *Issued) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.Cert.Raw})
}

// KeyPEM returns the key as an "EC PRIVATE KEY" PEM block.
func (i *Issued) KeyPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: i.KeyDER})
}

// TLS returns the certificate and key for a tls.Config.
func (i *Issued) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{i.Cert.Raw}, PrivateKey: i.Key, Leaf: i.Cert}
}

// Thumbprint is the hex SHA-1 of the DER certificate, as a twin's
// clientThumbprint list holds it.
func (i *Issued) Thumbprint() string {
	sum := sha1.Sum(i.Cert.Raw) //nolint:gosec // thumbprint
	return hex.EncodeToString(sum[:])
}

// IssueServer signs a CUPS server certificate for hosts (LoopbackHosts when
// none; see ServerNames): serverAuth, digitalSignature, EC P-256.
func (ca *CA) IssueServer(hosts ...string) (*Issued, error) {
	tmpl := leafTemplate("cups", x509.ExtKeyUsageServerAuth)
	ServerNames(tmpl, hosts...)
	return ca.sign(tmpl)
}

// IssueClient signs a station client certificate with the given common
// name: clientAuth, digitalSignature, EC P-256.
func (ca *CA) IssueClient(commonName string) (*Issued, error) {
	return ca.sign(leafTemplate(commonName, x509.ExtKeyUsageClientAuth))
}

// Sign signs tmpl (its SerialNumber and validity filled when unset) with a
// new EC P-256 key, for tests that need a certificate of another shape.
func (ca *CA) Sign(tmpl *x509.Certificate) (*Issued, error) {
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = serial()
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	}
	return ca.sign(tmpl)
}

func leafTemplate(cn string, usage x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
}

func (ca *CA) sign(tmpl *x509.Certificate) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return &Issued{Cert: cert, Key: key, KeyDER: kder}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
