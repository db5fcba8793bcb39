package stationsim

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"strings"
	"time"
)

// The station verifies the CUPS server the way mbedTLS 2.28 does
// (basicstation src/tls.c sets MBEDTLS_SSL_VERIFY_REQUIRED and, with
// TLS_SNI on by default, mbedtls_ssl_set_hostname with the host of the
// URI). Go's own check differs in one way that matters in the field: it
// matches an IP literal against iPAddress SAN entries, which mbedTLS 2.28
// never looks at. So the simulator turns Go's check off and does
// mbedTLS's: the chain against the set's trust, the name rule of
// x509_crt_verify_name, the default profile, and the key usages
// mbedtls_ssl_check_cert_usage checks for an ECDHE key exchange.

// Verification flags of mbedTLS 2.28 (include/mbedtls/x509.h), in the order
// mbedtls_x509_crt_verify_info prints them.
const (
	badCertExpired     uint32 = 0x01
	badCertCNMismatch  uint32 = 0x04
	badCertNotTrusted  uint32 = 0x08
	badCertFuture      uint32 = 0x0200
	badCertKeyUsage    uint32 = 0x0800
	badCertExtKeyUsage uint32 = 0x1000
	badCertBadMD       uint32 = 0x4000
	badCertBadKey      uint32 = 0x10000
)

// verifyStrings is x509_crt_verify_strings, restricted to the flags the
// simulator can raise.
var verifyStrings = []struct {
	flag uint32
	text string
}{
	{badCertExpired, "The certificate validity has expired"},
	{badCertCNMismatch, "The certificate Common Name (CN) does not match with the expected CN"},
	{badCertNotTrusted, "The certificate is not correctly signed by the trusted CA"},
	{badCertFuture, "The certificate validity starts in the future"},
	{badCertKeyUsage, "Usage does not match the keyUsage extension"},
	{badCertExtKeyUsage, "Usage does not match the extendedKeyUsage extension"},
	{badCertBadMD, "The certificate is signed with an unacceptable hash."},
	{badCertBadKey, "The certificate is signed with an unacceptable key (eg bad curve, RSA too short)."},
}

// mbedVerifyFailed is mbedtls_strerror(MBEDTLS_ERR_X509_CERT_VERIFY_FAILED),
// what the station logs ("[fd] Send failed: ...") when the handshake fails.
const mbedVerifyFailed = "X509 - Certificate verification failed, e.g. CRL, CA or signature check failed"

// CertVerifyError is the station refusing the server's certificate during
// the TLS handshake. Its text is mbedTLS's error followed by the reasons
// mbedtls_x509_crt_verify_info gives for the flags.
type CertVerifyError struct {
	// Host is the name the certificate was checked against (the host of
	// the URI, an IP literal included).
	Host string
	// Reasons are the verify_info lines, e.g. "The certificate Common
	// Name (CN) does not match with the expected CN".
	Reasons []string
	flags   uint32
}

func (e *CertVerifyError) Error() string {
	return mbedVerifyFailed + " (host " + e.Host + ": " + strings.Join(e.Reasons, "; ") + ")"
}

// NameMismatch reports whether the certificate does not name the host the
// way mbedTLS requires (MBEDTLS_X509_BADCERT_CN_MISMATCH).
func (e *CertVerifyError) NameMismatch() bool { return e.flags&badCertCNMismatch != 0 }

// NotTrusted reports whether the chain does not lead to the trust
// (MBEDTLS_X509_BADCERT_NOT_TRUSTED).
func (e *CertVerifyError) NotTrusted() bool { return e.flags&badCertNotTrusted != 0 }

func newCertVerifyError(host string, flags uint32) *CertVerifyError {
	e := &CertVerifyError{Host: host, flags: flags}
	for _, v := range verifyStrings {
		if flags&v.flag != 0 {
			e.Reasons = append(e.Reasons, v.text)
		}
	}
	return e
}

// verifyServer checks the server's chain as mbedTLS 2.28 does for a client
// with authmode required and hostname host. now is the time of the check.
func verifyServer(chain []*x509.Certificate, roots *x509.CertPool, host string, now time.Time) error {
	if len(chain) == 0 {
		return newCertVerifyError(host, badCertNotTrusted)
	}
	leaf := chain[0]
	var flags uint32
	if !MatchesHost(leaf, host) {
		flags |= badCertCNMismatch
	}
	flags |= profileFlags(leaf)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		// mbedTLS checks the extended key usage of the leaf only (below).
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	var inv x509.CertificateInvalidError
	switch {
	case err == nil:
	case errors.As(err, &inv) && inv.Reason == x509.Expired && now.Before(leaf.NotBefore):
		flags |= badCertFuture
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		flags |= badCertExpired
	default:
		flags |= badCertNotTrusted
	}
	flags |= usageFlags(leaf)
	if flags != 0 {
		return newCertVerifyError(host, flags)
	}
	return nil
}

// oidSubjectAltName is id-ce-subjectAltName.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// oidCommonName is id-at-commonName.
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// MatchesHost reports whether a Basics Station (mbedTLS 2.28,
// x509_crt_verify_name) accepts cert for host, the host part of its
// cups.uri. With a subjectAltName extension only its dNSName entries count
// (iPAddress entries are ignored, so an IP literal needs a dNSName holding
// the same text); without one, every subject CN counts. A name matches
// when equal ignoring ASCII case, or as a wildcard "*.rest" when host's
// text from its first dot on equals ".rest" (the dot not at position 0).
func MatchesHost(cert *x509.Certificate, host string) bool {
	hasSAN := false
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			hasSAN = true
			break
		}
	}
	if hasSAN {
		for _, name := range cert.DNSNames {
			if checkCN(name, host) {
				return true
			}
		}
		return false
	}
	for _, atv := range cert.Subject.Names {
		if !atv.Type.Equal(oidCommonName) {
			continue
		}
		if v, ok := atv.Value.(string); ok && checkCN(v, host) {
			return true
		}
	}
	return false
}

// checkCN is x509_crt_check_cn: exact (ASCII case-insensitive) or wildcard.
func checkCN(name, host string) bool {
	if len(name) == len(host) && memCaseEqual(name, host) {
		return true
	}
	return checkWildcard(host, name)
}

// checkWildcard is x509_check_wildcard.
func checkWildcard(host, name string) bool {
	if len(name) < 3 || name[0] != '*' || name[1] != '.' {
		return false
	}
	idx := strings.IndexByte(host, '.')
	if idx <= 0 {
		return false
	}
	return len(host)-idx == len(name)-1 && memCaseEqual(name[1:], host[idx:])
}

// memCaseEqual is x509_memcasecmp == 0: bytes equal, or differing only in
// the case of an ASCII letter.
func memCaseEqual(a, b string) bool {
	for i := 0; i < len(a); i++ {
		d := a[i] ^ b[i]
		if d == 0 {
			continue
		}
		c := a[i]
		if d == 32 && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			continue
		}
		return false
	}
	return true
}

// profileFlags applies mbedtls_x509_crt_profile_default to the leaf: SHA-2
// signatures only, RSA keys of at least 2048 bits, any curve.
func profileFlags(c *x509.Certificate) uint32 {
	var flags uint32
	switch c.SignatureAlgorithm {
	case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS,
		x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
	default:
		flags |= badCertBadMD
	}
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			flags |= badCertBadKey
		}
	case *ecdsa.PublicKey:
	}
	return flags
}

// usageFlags is mbedtls_ssl_check_cert_usage for the server of an ECDHE
// key exchange (the only kind the simulator offers): keyUsage, when
// present, must allow digitalSignature; extendedKeyUsage, when present,
// must hold serverAuth or anyExtendedKeyUsage.
func usageFlags(c *x509.Certificate) uint32 {
	var flags uint32
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		flags |= badCertKeyUsage
	}
	if len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0 {
		ok := false
		for _, u := range c.ExtKeyUsage {
			if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
				ok = true
			}
		}
		if !ok {
			flags |= badCertExtKeyUsage
		}
	}
	return flags
}

// verifyConnection returns the tls.Config.VerifyConnection of a station
// that trusts roots and connects to host.
func verifyConnection(roots *x509.CertPool, host string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		return verifyServer(cs.PeerCertificates, roots, host, time.Now())
	}
}
