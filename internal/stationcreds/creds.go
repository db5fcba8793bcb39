// Package stationcreds issues the CUPS credentials of LoRa Basics Station
// gateways: client certificates signed by an operator's CA (common name the
// station EUI) or random bearer tokens, in the forms the station and the
// CUPS server need them.
//
// A credential set on the station is three files, <set>.trust, <set>.crt and
// <set>.key (basicstation src/sys.c): the trust anchor of the CUPS server's
// certificate, the client certificate (absent for a token) and the client
// key, or a token as raw HTTP header lines. The station identifies the set
// by a CRC32 over the three files ([Credential.CRC]) and reports it as
// cupsCredCrc; a CUPS server rotates it by sending a credential blob
// ([Credential.Blob]): DER trust, DER certificate or four zero bytes, DER key
// or the token.
//
// The station's blob parser reads an ASN.1 length in long form as two bytes
// (asn1_seqlen in src/sys.c), so a DER element of 128 to 255 bytes would be
// misread: EC keys are therefore written as SEC1 (121 bytes, short form)
// rather than PKCS#8 (138 bytes), and Issue refuses any element the station
// would misread.
//
// The package holds no state and never logs; secrets leave it only in the
// station files and the blob.
package stationcreds

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // the starter kit's thumbprint is SHA-1 of the DER certificate
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"strings"
	"time"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// KeyType is the client key algorithm of a certificate credential.
type KeyType string

// Key types a 2.0.6 station was checked with (DESIGN.md section 3).
const (
	// KeyECP256 is ECDSA on P-256 (the default).
	KeyECP256 KeyType = "ec-p256"
	// KeyRSA2048 is RSA with a 2048-bit modulus.
	KeyRSA2048 KeyType = "rsa-2048"
)

// DefaultValidity is how long an issued client certificate is valid: long,
// because a station whose certificate expires can no longer reach CUPS to
// get a new one; rotate well before.
const DefaultValidity = 5 * 365 * 24 * time.Hour

// EmptyCRC is the credential CRC of a station without any credential file
// (three absent files, each counted as four zero bytes).
const EmptyCRC uint32 = 2077607535

// CA is an operator's certificate authority for station client
// certificates: the CUPS server's --cups-client-ca-file.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key signs the issued certificates.
	Key crypto.Signer
}

// ParseCA reads a CA from PEM: the certificate, and its private key as
// PKCS#8, SEC1 or PKCS#1. It checks that the key belongs to the
// certificate and that the certificate may sign certificates.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := ParseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert := certs[0]
	if !cert.IsCA || (cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0) {
		return nil, fmt.Errorf("CA certificate %q is not a CA (basicConstraints CA:TRUE and keyCertSign needed)", cert.Subject.CommonName)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("CA key does not belong to the CA certificate %q", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// ParseCertificates reads certificates from PEM or DER.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	if !strings.Contains(string(b), "-----BEGIN") {
		certs, err := x509.ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor DER certificates: %w", err)
		}
		if len(certs) == 0 {
			return nil, errors.New("no certificate")
		}
		return certs, nil
	}
	var certs []*x509.Certificate
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return certs, nil
}

func parsePrivateKey(b []byte) (crypto.Signer, error) {
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY PEM block")
		}
		var (
			k   any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted private keys are not supported; decrypt with openssl pkcs8 first")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s block: %w", block.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s block holds a %T, not a signing key", block.Type, k)
		}
		return s, nil
	}
}

// Credential is one issued CUPS credential set. Key and Token are secrets.
type Credential struct {
	// Kind is twin.KindX509 or twin.KindToken.
	Kind string
	// Trust is the DER trust anchor of the CUPS server's certificate
	// (cups.trust).
	Trust []byte
	// Cert is the DER client certificate (cups.crt); nil for a token.
	Cert []byte
	// Key is the DER client key (cups.key) or, for a token, the header
	// line the station sends ("Authorization: Bearer ...\r\n").
	Key []byte
	// Token is the bare bearer token, empty for a certificate.
	Token string
	// NotAfter is when the certificate expires; zero for a token.
	NotAfter time.Time
}

// IssueOptions tune IssueCert.
type IssueOptions struct {
	// KeyType is the client key algorithm; empty means KeyECP256.
	KeyType KeyType
	// Validity is how long the certificate is valid; 0 means DefaultValidity.
	Validity time.Duration
	// Now is the issue time; zero means time.Now.
	Now time.Time
}

// IssueCert issues a client certificate for the station deviceID (its
// common name, as the CUPS server checks it against the request's router),
// signed by ca, with trust as the station's cups.trust (DER or PEM).
func IssueCert(ca *CA, deviceID string, trust []byte, o IssueOptions) (*Credential, error) {
	trustDER, err := trustDER(trust)
	if err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	validity := o.Validity
	if validity <= 0 {
		validity = DefaultValidity
	}
	var (
		key    crypto.Signer
		keyDER []byte
	)
	switch o.KeyType {
	case "", KeyECP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate P-256 key: %w", err)
		}
		key = k
		if keyDER, err = x509.MarshalECPrivateKey(k); err != nil {
			return nil, fmt.Errorf("encode P-256 key: %w", err)
		}
	case KeyRSA2048:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("generate RSA key: %w", err)
		}
		key = k
		keyDER = x509.MarshalPKCS1PrivateKey(k)
	default:
		return nil, fmt.Errorf("key type %q: use %s or %s", o.KeyType, KeyECP256, KeyRSA2048)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("a certificate valid for %s would outlive the CA (expires %s): shorten the validity or renew the CA",
			validity, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: deviceID},
		NotBefore:    now.Add(-5 * time.Minute), // station clocks drift
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign client certificate: %w", err)
	}
	c := &Credential{Kind: twin.KindX509, Trust: trustDER, Cert: certDER, Key: keyDER, NotAfter: notAfter.UTC().Truncate(time.Second)}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// tokenBytes is the entropy of a bearer token: 256 bits.
const tokenBytes = 32

// IssueToken issues a random bearer token with trust as the station's
// cups.trust (DER or PEM). The station sends it as "Authorization: Bearer
// TOKEN"; the twin keeps only its SHA-256.
func IssueToken(trust []byte) (*Credential, error) {
	trustDER, err := trustDER(trust)
	if err != nil {
		return nil, err
	}
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("generate token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	c := &Credential{Kind: twin.KindToken, Trust: trustDER, Key: []byte("Authorization: Bearer " + tok + "\r\n"), Token: tok}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// trustDER returns the first certificate of trust as DER.
func trustDER(trust []byte) ([]byte, error) {
	if len(trust) == 0 {
		return nil, errors.New("no trust certificate: the station needs the CA of the CUPS server's certificate (cups.trust)")
	}
	certs, err := ParseCertificates(trust)
	if err != nil {
		return nil, fmt.Errorf("trust certificate: %w", err)
	}
	return certs[0].Raw, nil
}

// check refuses a credential the station's blob parser would misread.
func (c *Credential) check() error {
	parts := []struct {
		name string
		b    []byte
	}{{"trust certificate", c.Trust}, {"client certificate", c.Cert}}
	if c.Kind == twin.KindX509 {
		parts = append(parts, struct {
			name string
			b    []byte
		}{"client key", c.Key})
	}
	for _, p := range parts {
		if len(p.b) == 0 {
			continue
		}
		if err := stationReadable(p.b); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	if n := len(c.Blob()); n > 65535 {
		return fmt.Errorf("credential blob of %d bytes: CUPS carries at most 65535", n)
	}
	return nil
}

// stationReadable checks that a DER element's length is one the station's
// asn1_seqlen reads right: short form, or long form in exactly two bytes.
func stationReadable(der []byte) error {
	if len(der) < 2 || der[0] != 0x30 {
		return errors.New("not a DER SEQUENCE")
	}
	switch l := der[1]; {
	case l < 0x80:
		if int(l)+2 != len(der) {
			return errors.New("DER length does not match")
		}
	case l == 0x82:
		if len(der) < 4 || int(der[2])<<8|int(der[3])+4 != len(der) {
			return errors.New("DER length does not match")
		}
	default:
		return fmt.Errorf("DER element of %d bytes: Basics Station reads only lengths under 128 or in two bytes (256 to 65535)", len(der))
	}
	return nil
}

// Blob is the CUPS credential segment (cupsCredentialUrl's content): DER
// trust, DER certificate or four zero bytes, DER key or the token.
func (c *Credential) Blob() []byte {
	b := make([]byte, 0, len(c.Trust)+len(c.Cert)+len(c.Key)+4)
	b = append(b, c.Trust...)
	if len(c.Cert) == 0 {
		b = append(b, 0, 0, 0, 0)
	} else {
		b = append(b, c.Cert...)
	}
	return append(b, c.Key...)
}

// CRC is the station's credential CRC of the set (sys_crcCred): CRC32 over
// trust, certificate and key, an empty one counting as four zero bytes.
func (c *Credential) CRC() uint32 { return CRC(c.Trust, c.Cert, c.Key) }

// CRC is the station's credential CRC over the contents of its .trust, .crt
// and .key files; a missing or empty file counts as four zero bytes.
func CRC(trust, cert, key []byte) uint32 {
	var crc uint32
	zero := []byte{0, 0, 0, 0}
	for _, p := range [][]byte{trust, cert, key} {
		if len(p) == 0 {
			p = zero
		}
		crc = crc32.Update(crc, crc32.IEEETable, p)
	}
	return crc
}

// Thumbprint is the upper-case hex SHA-1 of the DER client certificate, the
// form of desired.clientThumbprint; empty for a token.
func (c *Credential) Thumbprint() string {
	if len(c.Cert) == 0 {
		return ""
	}
	return Thumbprint(c.Cert)
}

// Thumbprint is the upper-case hex SHA-1 of a DER certificate.
func Thumbprint(der []byte) string {
	sum := sha1.Sum(der) //nolint:gosec // an identifier, as IoT Hub and the starter kit use it
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// TokenSHA256 is the hex SHA-256 of the bearer token, the form of
// tags.stationfleet.tokens; empty for a certificate.
func (c *Credential) TokenSHA256() string {
	if c.Token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(c.Token))
	return hex.EncodeToString(sum[:])
}

// Record returns the credential's twin record (no secret) with the given
// id, roles, issue time and blob URL.
func (c *Credential) Record(id int, roles []string, issued time.Time, url string) twin.CredentialRecord {
	r := twin.CredentialRecord{ID: id, Kind: c.Kind, Thumbprint: c.Thumbprint(), TokenSHA256: c.TokenSHA256(),
		CRC: c.CRC(), Roles: roles, IssuedAt: issued.UTC().Truncate(time.Second), URL: url}
	if !c.NotAfter.IsZero() {
		na := c.NotAfter
		r.NotAfter = &na
	}
	return r
}
