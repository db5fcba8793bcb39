package signing

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
)

// ErrBadSignature is returned (wrapped) when a signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// Digest returns the SHA-512 digest of everything r yields, streamed: memory
// use does not depend on the size of the data.
func Digest(r io.Reader) ([]byte, int64, error) {
	h := sha512.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return nil, n, fmt.Errorf("hash data: %w", err)
	}
	return h.Sum(nil), n, nil
}

// Sign returns the DER-encoded ECDSA signature of the SHA-512 digest of the
// data read from r, as `openssl dgst -sha512 -sign` makes it. ECDSA
// signatures are randomized: two signatures of the same data differ.
func Sign(priv *ecdsa.PrivateKey, r io.Reader) ([]byte, error) {
	digest, _, err := Digest(r)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return SignDigest(priv, digest)
}

// SignDigest signs a SHA-512 digest computed elsewhere and returns the DER
// signature.
func SignDigest(priv *ecdsa.PrivateKey, digest []byte) ([]byte, error) {
	if priv == nil {
		return nil, errors.New("sign: no private key")
	}
	if len(digest) != sha512.Size {
		return nil, fmt.Errorf("sign: digest is %d bytes, want a %d-byte SHA-512 digest", len(digest), sha512.Size)
	}
	der, err := ecdsa.SignASN1(rand.Reader, priv, digest)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return der, nil
}

// Verify checks a DER signature of the data read from r (SHA-512, ECDSA
// P-256), as the station and `openssl dgst -sha512 -verify` do. It returns
// nil when the signature verifies and an error wrapping ErrBadSignature when
// it does not.
func Verify(pub *ecdsa.PublicKey, r io.Reader, der []byte) error {
	digest, n, err := Digest(r)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := VerifyDigest(pub, digest, der); err != nil {
		return fmt.Errorf("verify %d bytes of data: %w", n, err)
	}
	return nil
}

// VerifyDigest checks a DER signature of a SHA-512 digest computed elsewhere.
func VerifyDigest(pub *ecdsa.PublicKey, digest, der []byte) error {
	if pub == nil {
		return errors.New("no public key")
	}
	if len(der) == 0 {
		return fmt.Errorf("empty signature: %w", ErrBadSignature)
	}
	if !ecdsa.VerifyASN1(pub, digest, der) {
		crc, _ := PublicKeyCRC(pub)
		return fmt.Errorf("%d-byte DER signature against key CRC %d: %w (wrong key, altered data, or not a DER ECDSA signature)", len(der), crc, ErrBadSignature)
	}
	return nil
}

// EncodeSignature returns the standard base64 of a DER signature, the form of
// the twin's fwSignature property.
func EncodeSignature(der []byte) string {
	return base64.StdEncoding.EncodeToString(der)
}

// DecodeSignature decodes a base64 (standard alphabet, padded) signature such
// as the twin's fwSignature back to DER.
func DecodeSignature(s string) ([]byte, error) {
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decode base64 signature: %w", err)
	}
	return der, nil
}

// Verifier checks a signature over data written to it, so it can sit in an
// io.Copy or io.MultiWriter while firmware streams past. Its memory use does
// not depend on the size of the data.
//
//	v := signing.NewVerifier(pub, der)
//	_, err := io.Copy(io.MultiWriter(dst, v), src)
//	if err == nil { err = v.Verify() }
type Verifier struct {
	pub *ecdsa.PublicKey
	der []byte
	h   hash.Hash
	n   int64
}

// NewVerifier returns a Verifier for signature der under pub.
func NewVerifier(pub *ecdsa.PublicKey, der []byte) *Verifier {
	return &Verifier{pub: pub, der: der, h: sha512.New()}
}

// Write hashes p; it never fails.
func (v *Verifier) Write(p []byte) (int, error) {
	v.n += int64(len(p))
	return v.h.Write(p)
}

// Size returns the number of bytes written so far.
func (v *Verifier) Size() int64 { return v.n }

// Verify reports whether the signature verifies over everything written.
func (v *Verifier) Verify() error {
	if err := VerifyDigest(v.pub, v.h.Sum(nil), v.der); err != nil {
		return fmt.Errorf("verify %d bytes of data: %w", v.n, err)
	}
	return nil
}
