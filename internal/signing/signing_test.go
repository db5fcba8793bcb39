package signing

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// Vectors captured from a real Basics Station 2.0.6 (copied from
// shared/testdata/basicstation-2.0.6).
const vectorKeyCRC = 4101823099

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVectorSigKey(t *testing.T) {
	g := NewWithT(t)
	sigKey := readTestdata(t, "sig-0.key")
	g.Expect(KeyCRC(sigKey)).To(Equal(uint32(vectorKeyCRC)))

	pub, err := ParseSigKey(sigKey)
	g.Expect(err).NotTo(HaveOccurred())
	again, err := MarshalSigKey(pub)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(Equal(sigKey))

	// The private key in sig-0.pem is the other half of sig-0.key.
	priv, err := ParsePrivateKeyPEM(readTestdata(t, "sig-0.pem"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(priv.PublicKey.Equal(pub)).To(BeTrue())
	crc, err := PublicKeyCRC(&priv.PublicKey)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(crc).To(Equal(uint32(vectorKeyCRC)))
}

func TestVectorSignatureVerifies(t *testing.T) {
	sigKey := readTestdata(t, "sig-0.key")
	update := readTestdata(t, "update.bin")
	der := readTestdata(t, "signature.der")
	pub, err := ParseSigKey(sigKey)
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(update)
	flipped[len(flipped)/2] ^= 0x01
	flippedSig := bytes.Clone(der)
	flippedSig[len(flippedSig)-3] ^= 0x01

	tests := []struct {
		name    string
		data    []byte
		der     []byte
		key     func() any
		wantErr bool
	}{
		{name: "the station's vector verifies", data: update, der: der},
		{name: "a flipped data byte fails", data: flipped, der: der, wantErr: true},
		{name: "a flipped signature byte fails", data: update, der: flippedSig, wantErr: true},
		{name: "another key fails", data: update, der: der, key: func() any { return &other.PublicKey }, wantErr: true},
		{name: "trailing bytes after the DER fail", data: update, der: append(bytes.Clone(der), 0), wantErr: true},
		{name: "empty signature fails", data: update, der: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			k := pub
			if tt.key != nil {
				k = tt.key().(*ecdsaPublicKey)
			}
			err := Verify(k, bytes.NewReader(tt.data), tt.der)
			v := NewVerifier(k, tt.der)
			_, _ = v.Write(tt.data[:10])
			_, _ = v.Write(tt.data[10:])
			verr := v.Verify()
			if tt.wantErr {
				g.Expect(errors.Is(err, ErrBadSignature)).To(BeTrue(), "err = %v", err)
				g.Expect(errors.Is(verr, ErrBadSignature)).To(BeTrue(), "verifier err = %v", verr)
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(verr).NotTo(HaveOccurred())
			g.Expect(v.Size()).To(Equal(int64(len(tt.data))))
		})
	}
}

func TestSignRoundTripAndBase64(t *testing.T) {
	g := NewWithT(t)
	priv, err := GenerateKey()
	g.Expect(err).NotTo(HaveOccurred())
	data := bytes.Repeat([]byte("firmware "), 100000)
	der, err := Sign(priv, bytes.NewReader(data))
	g.Expect(err).NotTo(HaveOccurred())
	// The station's signature segment holds at most 128 DER bytes.
	g.Expect(len(der)).To(BeNumerically("<=", 128))
	b64 := EncodeSignature(der)
	back, err := DecodeSignature(b64)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(back).To(Equal(der))
	g.Expect(Verify(&priv.PublicKey, bytes.NewReader(data), back)).To(Succeed())
	_, err = DecodeSignature("not base64!")
	g.Expect(err).To(MatchError(ContainSubstring("decode base64 signature")))
}

func TestPEMRoundTrip(t *testing.T) {
	priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		format PEMFormat
		header string
	}{
		{name: "PKCS#8", format: PKCS8, header: "-----BEGIN PRIVATE KEY-----"},
		{name: "SEC1", format: SEC1, header: "-----BEGIN EC PRIVATE KEY-----"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			p, err := MarshalPrivateKeyPEM(priv, tt.format)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(p)).To(HavePrefix(tt.header))
			back, err := ParsePrivateKeyPEM(p)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(back.Equal(priv)).To(BeTrue())
			pub, err := ParsePublicKey(p)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pub.Equal(&priv.PublicKey)).To(BeTrue())
		})
	}
	g := NewWithT(t)
	pubPEM, err := MarshalPublicKeyPEM(&priv.PublicKey)
	g.Expect(err).NotTo(HaveOccurred())
	pub, err := ParsePublicKey(pubPEM)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pub.Equal(&priv.PublicKey)).To(BeTrue())
	sk, err := MarshalSigKey(&priv.PublicKey)
	g.Expect(err).NotTo(HaveOccurred())
	pub, err = ParsePublicKey(sk)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pub.Equal(&priv.PublicKey)).To(BeTrue())
}

func TestParseErrors(t *testing.T) {
	offCurve := bytes.Repeat([]byte{1}, 64)
	tests := []struct {
		name  string
		parse func() error
		want  string
	}{
		{name: "sig key too short", parse: func() error { _, err := ParseSigKey(make([]byte, 63)); return err }, want: "exactly 64 bytes"},
		{name: "sig key too long (65-byte uncompressed point)", parse: func() error { _, err := ParseSigKey(make([]byte, 65)); return err }, want: "got 65"},
		{name: "sig key not on curve", parse: func() error { _, err := ParseSigKey(offCurve); return err }, want: "not a point on P-256"},
		{name: "private key: no PEM", parse: func() error { _, err := ParsePrivateKeyPEM([]byte("hello")); return err }, want: "no \"PRIVATE KEY\""},
		{name: "private key: only a public key", parse: func() error {
			_, err := ParsePrivateKeyPEM([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
			return err
		}, want: "no \"PRIVATE KEY\""},
		{name: "public key: garbage", parse: func() error { _, err := ParsePublicKey([]byte("garbage")); return err }, want: "neither a 64-byte sig-N.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(tt.parse()).To(MatchError(ContainSubstring(tt.want)))
		})
	}
}

// TestOpenSSLInterop proves both directions with the openssl binary: keys and
// signatures made by openssl verify here, and ours verify in openssl.
func TestOpenSSLInterop(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(openssl, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	data := bytes.Repeat([]byte("#!/bin/sh\necho hi\n"), 5000)
	if err := os.WriteFile(filepath.Join(dir, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("openssl key and signature verify here", func(t *testing.T) {
		g := NewWithT(t)
		out, err := run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem")
		g.Expect(err).NotTo(HaveOccurred(), out)
		out, err = run("dgst", "-sha512", "-sign", "k.pem", "-out", "sig.der", "data")
		g.Expect(err).NotTo(HaveOccurred(), out)
		keyPEM, _ := os.ReadFile(filepath.Join(dir, "k.pem"))
		der, _ := os.ReadFile(filepath.Join(dir, "sig.der"))
		priv, err := ParsePrivateKeyPEM(keyPEM)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(Verify(&priv.PublicKey, bytes.NewReader(data), der)).To(Succeed())
		data[7] ^= 1
		g.Expect(Verify(&priv.PublicKey, bytes.NewReader(data), der)).To(MatchError(ErrBadSignature))
		data[7] ^= 1
	})

	t.Run("openssl ecparam -genkey with EC PARAMETERS block parses", func(t *testing.T) {
		g := NewWithT(t)
		out, err := run("ecparam", "-name", "prime256v1", "-genkey", "-out", "kp.pem")
		g.Expect(err).NotTo(HaveOccurred(), out)
		keyPEM, _ := os.ReadFile(filepath.Join(dir, "kp.pem"))
		g.Expect(string(keyPEM)).To(ContainSubstring("EC PARAMETERS"))
		priv, err := ParsePrivateKeyPEM(keyPEM)
		g.Expect(err).NotTo(HaveOccurred())
		// The public key openssl derives has the same sig-N.key form.
		out, err = run("ec", "-in", "kp.pem", "-pubout", "-outform", "DER", "-out", "pub.der")
		g.Expect(err).NotTo(HaveOccurred(), out)
		spki, _ := os.ReadFile(filepath.Join(dir, "pub.der"))
		sk, err := MarshalSigKey(&priv.PublicKey)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sk).To(Equal(spki[len(spki)-64:]))
	})

	for _, format := range []PEMFormat{PKCS8, SEC1} {
		t.Run(map[PEMFormat]string{PKCS8: "our PKCS#8 key", SEC1: "our SEC1 key"}[format]+" and signature verify in openssl", func(t *testing.T) {
			g := NewWithT(t)
			priv, err := GenerateKey()
			g.Expect(err).NotTo(HaveOccurred())
			keyPEM, err := MarshalPrivateKeyPEM(priv, format)
			g.Expect(err).NotTo(HaveOccurred())
			pubPEM, err := MarshalPublicKeyPEM(&priv.PublicKey)
			g.Expect(err).NotTo(HaveOccurred())
			der, err := Sign(priv, bytes.NewReader(data))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(os.WriteFile(filepath.Join(dir, "our.pem"), keyPEM, 0o600)).To(Succeed())
			g.Expect(os.WriteFile(filepath.Join(dir, "pub.pem"), pubPEM, 0o600)).To(Succeed())
			g.Expect(os.WriteFile(filepath.Join(dir, "our.der"), der, 0o600)).To(Succeed())
			out, err := run("dgst", "-sha512", "-verify", "pub.pem", "-signature", "our.der", "data")
			g.Expect(err).NotTo(HaveOccurred(), out)
			g.Expect(out).To(ContainSubstring("Verified OK"))
			// openssl reads our private key PEM too, and its signature verifies here.
			out, err = run("dgst", "-sha512", "-sign", "our.pem", "-out", "sig2.der", "data")
			g.Expect(err).NotTo(HaveOccurred(), out)
			der2, _ := os.ReadFile(filepath.Join(dir, "sig2.der"))
			g.Expect(Verify(&priv.PublicKey, bytes.NewReader(data), der2)).To(Succeed())
			// A flipped byte fails in openssl as well.
			bad := bytes.Clone(data)
			bad[0] ^= 1
			g.Expect(os.WriteFile(filepath.Join(dir, "bad"), bad, 0o600)).To(Succeed())
			out, err = run("dgst", "-sha512", "-verify", "pub.pem", "-signature", "our.der", "bad")
			g.Expect(err).To(HaveOccurred())
			g.Expect(strings.ToLower(out)).To(ContainSubstring("verification failure"))
		})
	}
}
