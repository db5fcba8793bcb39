// Package secretscan finds secrets in what a program wrote: logs, Kubernetes
// objects as JSON, CLI output, stored device twins. A test registers every
// secret the program was given or issued, with the forms it has on disk,
// and scans each output for the secret and its obvious encodings:
//
//   - the secret's text as given (a connection string, a token line);
//   - for a PEM block, its base64 body joined into one line, each full body
//     line, and its DER;
//   - for binary (DER keys, decoded account keys), lower and upper hex, and
//     standard, raw and URL-safe base64 at each of the three byte
//     alignments, so that the secret is found inside the base64 or hex of
//     something larger that holds it (a credential blob, a JSON []byte);
//   - for text, its standard base64, URL query escaping and JSON escaping.
//
// A finding names the secret and where it appeared, with only a short
// redacted prefix of the matched text, so a failing test never prints a
// secret itself.
//
//	s := secretscan.New()
//	s.AddText("IoT Hub SharedAccessKey", key)
//	s.AddPEM("CUPS server TLS key", pemBytes)
//	for _, f := range s.Scan("manager log", log) { t.Error(f) }
package secretscan

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// MinNeedle is the shortest encoding searched for: shorter fragments of a
// secret would match unrelated text by chance.
const MinNeedle = 16

// needle is one searchable form of a secret.
type needle struct {
	secret string // the secret's name
	form   string // how it is encoded
	text   []byte
}

// Scanner holds the secrets to look for.
type Scanner struct {
	needles  []needle
	patterns []pattern
	names    map[string]bool
}

// pattern is the shape of a credential the test did not register (one
// derived from a registered secret, such as a SAS token signed with a
// SharedAccessKey, or one nobody expected).
type pattern struct {
	name string
	re   *regexp.Regexp
}

// CredentialShapes are credentials recognised by their form alone: an IoT
// Hub SAS token (signed with the SharedAccessKey, valid until it expires),
// a storage SharedKey request signature, a connection string or account
// key assignment with a value, a bearer token, a PEM private key.
var CredentialShapes = map[string]*regexp.Regexp{
	"IoT Hub SAS token":           regexp.MustCompile(`SharedAccessSignature\s+[^"\s]*sig=[A-Za-z0-9%+/=]{8,}`),
	"storage SharedKey signature": regexp.MustCompile(`SharedKey(Lite)?\s+[A-Za-z0-9]+:[A-Za-z0-9+/=]{16,}`),
	"connection string key":       regexp.MustCompile(`(SharedAccessKey|AccountKey)=[A-Za-z0-9+/]{16,}`),
	"bearer token":                regexp.MustCompile(`(?i)bearer\s+[A-Za-z0-9._~+/-]{16,}`),
	"PEM private key":             regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),
	"storage SAS token in a URL":  regexp.MustCompile(`[?&]sig=[A-Za-z0-9%+/=]{16,}`),
}

// AddCredentialShapes registers CredentialShapes.
func (s *Scanner) AddCredentialShapes() {
	names := make([]string, 0, len(CredentialShapes))
	for n := range CredentialShapes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.patterns = append(s.patterns, pattern{name: n, re: CredentialShapes[n]})
		s.names["any "+n] = true
	}
}

// New returns an empty Scanner.
func New() *Scanner { return &Scanner{names: map[string]bool{}} }

// Finding is a secret found in a scanned output.
type Finding struct {
	// Secret names the secret.
	Secret string
	// Form is the encoding that matched ("as given", "base64", "hex", ...).
	Form string
	// Source names the output it appeared in.
	Source string
	// Offset is where in the output it appeared.
	Offset int
	// Redacted is a short prefix of the matched text and its length.
	Redacted string
}

func (f Finding) String() string {
	return fmt.Sprintf("secret %q (%s) appeared in %s at byte %d: %s", f.Secret, f.Form, f.Source, f.Offset, f.Redacted)
}

// Redact returns a prefix of s short enough to print and its length:
// "Eby8…(88 bytes)".
func Redact(s []byte) string {
	n := 4
	if len(s) < 16 {
		n = 0
	}
	return fmt.Sprintf("%q…(%d bytes)", s[:n], len(s))
}

// Names returns the names of the registered secrets, sorted.
func (s *Scanner) Names() []string {
	out := make([]string, 0, len(s.names))
	for n := range s.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s *Scanner) add(secret, form string, text []byte) {
	if len(text) < MinNeedle {
		return
	}
	for _, n := range s.needles {
		if n.secret == secret && bytes.Equal(n.text, text) {
			return
		}
	}
	s.names[secret] = true
	s.needles = append(s.needles, needle{secret: secret, form: form, text: bytes.Clone(text)})
}

// AddText registers a secret that is text (a token, a connection string, a
// base64 account key as written in its file), with its text encodings.
// Surrounding white space is ignored.
func (s *Scanner) AddText(name, secret string) {
	secret = strings.TrimSpace(secret)
	if len(secret) < MinNeedle {
		panic(fmt.Sprintf("secretscan: secret %q is shorter than %d bytes: too short to search for reliably", name, MinNeedle))
	}
	s.add(name, "as given", []byte(secret))
	s.add(name, "query-escaped", []byte(url.QueryEscape(secret)))
	s.add(name, "path-escaped", []byte(url.PathEscape(secret)))
	if j, err := json.Marshal(secret); err == nil {
		s.add(name, "JSON-escaped", j[1:len(j)-1])
	}
	s.addBinary(name, "text", []byte(secret))
}

// AddBase64Text registers a secret written as base64 (an IoT Hub
// SharedAccessKey, a storage account key): its text forms, and the forms of
// the bytes it decodes to.
func (s *Scanner) AddBase64Text(name, secret string) {
	s.AddText(name, secret)
	if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(secret)); err == nil {
		s.addBinary(name, "decoded", raw)
	}
}

// AddBinary registers a binary secret (a DER private key, a credential
// blob's key part).
func (s *Scanner) AddBinary(name string, secret []byte) {
	if len(secret) < MinNeedle {
		panic(fmt.Sprintf("secretscan: secret %q is shorter than %d bytes", name, MinNeedle))
	}
	s.add(name, "raw bytes", secret)
	s.addBinary(name, "DER", secret)
}

// AddPEM registers every block of a PEM file (a private key): each block's
// base64 body as one line and line by line, and its DER in binary forms.
func (s *Scanner) AddPEM(name string, pemBytes []byte) {
	rest := pemBytes
	found := false
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		found = true
		body := base64.StdEncoding.EncodeToString(b.Bytes)
		s.add(name, "PEM body", []byte(body))
		for i := 0; i+64 <= len(body); i += 64 {
			s.add(name, "PEM body line", []byte(body[i:i+64]))
		}
		s.AddBinary(name, b.Bytes)
		s.addScalar(name, b.Bytes)
	}
	if !found {
		panic(fmt.Sprintf("secretscan: secret %q holds no PEM block", name))
	}
}

// addScalar adds the private scalar of an EC key (SEC 1 or PKCS #8 DER):
// the secret itself, whatever container a leak wraps it in.
func (s *Scanner) addScalar(name string, der []byte) {
	var k any
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		if k, err = x509.ParseECPrivateKey(der); err != nil {
			return
		}
	}
	if ec, ok := k.(*ecdsa.PrivateKey); ok {
		ek, err := ec.ECDH()
		if err == nil {
			s.addBinary(name, "EC private scalar", ek.Bytes())
		}
	}
}

// addBinary adds the hex and base64 forms of b at every alignment.
func (s *Scanner) addBinary(name, what string, b []byte) {
	s.add(name, what+" hex", []byte(hex.EncodeToString(b)))
	s.add(name, what+" HEX", []byte(strings.ToUpper(hex.EncodeToString(b))))
	for shift := 0; shift < 3 && shift < len(b); shift++ {
		// Only whole 3-byte groups encode the same whatever surrounds b.
		part := b[shift:]
		part = part[:len(part)/3*3]
		for _, enc := range []struct {
			form string
			e    *base64.Encoding
		}{{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding}} {
			s.add(name, fmt.Sprintf("%s %s (offset %d)", what, enc.form, shift), []byte(enc.e.EncodeToString(part)))
		}
	}
}

// Scan returns every registered secret that appears in data, which came
// from source.
func (s *Scanner) Scan(source string, data []byte) []Finding {
	var out []Finding
	seen := map[string]bool{}
	for _, n := range s.needles {
		i := bytes.Index(data, n.text)
		if i < 0 || seen[n.secret+"\x00"+n.form] {
			continue
		}
		seen[n.secret+"\x00"+n.form] = true
		out = append(out, Finding{Secret: n.secret, Form: n.form, Source: source, Offset: i, Redacted: Redact(n.text)})
	}
	for _, p := range s.patterns {
		if loc := p.re.FindIndex(data); loc != nil {
			out = append(out, Finding{Secret: "any " + p.name, Form: "by its shape", Source: source, Offset: loc[0], Redacted: Redact(data[loc[0]:loc[1]])})
		}
	}
	return out
}
