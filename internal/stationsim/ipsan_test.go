package stationsim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestIPOnlyServerCertificateRefused (issue 13): a CUPS server certificate
// whose only subjectAltName is the IP address of https://127.0.0.1:PORT is
// refused, as a real station (mbedTLS 2.28) refuses it; the same
// certificate with "127.0.0.1" as a dNSName is accepted. It uses only the
// simulator's long-standing API, so it also runs against the old simulator
// (which accepted the IP-only certificate through Go's TLS).
func TestIPOnlyServerCertificateRefused(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(dns []string, ips []net.IP) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "cups"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames: dns, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	poll := func(cert tls.Certificate) Result {
		srv := cupsTLSServer(t, cert) // https://127.0.0.1:PORT
		st := State{EUI: 1, CUPSURI: srv.URL, Package: "v1",
			CUPSCred: CredSet{Trust: caDER, Key: []byte("Authorization: Bearer t\r\n")}}
		return New(st, WithTimeout(5*time.Second)).Poll(context.Background())
	}
	g := NewWithT(t)
	res := poll(issue(nil, []net.IP{net.ParseIP("127.0.0.1")}))
	g.Expect(res.Err).To(MatchError(ContainSubstring("X509 - Certificate verification failed")), "IP-only certificate")
	g.Expect(res.StatusCode).To(BeZero())

	res = poll(issue([]string{"127.0.0.1"}, []net.IP{net.ParseIP("127.0.0.1")}))
	g.Expect(res.Err).NotTo(HaveOccurred(), "127.0.0.1 as a dNSName")
	g.Expect(res.StatusCode).To(Equal(200))
}
