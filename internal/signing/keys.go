// Package signing holds the firmware-signing keys and signatures that LoRa
// Basics Station verifies before it runs an update received over CUPS.
//
// The station's scheme (lorabasics/basicstation src/cups.c, release 2.0.6):
// ECDSA on P-256 over the SHA-512 digest of the update data, the signature
// DER-encoded. The station's public keys are files sig-0.key, sig-1.key, ...
// each exactly 64 bytes, the raw X‖Y of the point (the last 64 bytes of the
// key's DER SubjectPublicKeyInfo). CUPS servers identify a key by the zlib
// CRC32 of that 64-byte file ([KeyCRC]).
//
// Keys and signatures interoperate with openssl:
//
//	openssl ecparam -name prime256v1 -genkey -noout -out k.pem   # ParsePrivateKeyPEM reads it
//	openssl dgst -sha512 -sign k.pem -out sig.der update.bin     # Verify accepts sig.der
//
// Typical use:
//
//	priv, _ := signing.GenerateKey()
//	sigKey, _ := signing.MarshalSigKey(&priv.PublicKey) // write as sig-0.key on the station
//	crc := signing.KeyCRC(sigKey)                        // the twin's fwKeyChecksum
//	der, _ := signing.Sign(priv, firmware)               // base64 of it is fwSignature
package signing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
)

// SigKeySize is the size of a station sig-N.key file: the raw X‖Y coordinates
// of a P-256 public key, 32 bytes each. The station skips key files of any
// other size (cups_verifySig in basicstation's src/cups.c).
const SigKeySize = 64

// GenerateKey returns a new P-256 key pair for signing firmware.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate P-256 key: %w", err)
	}
	return priv, nil
}

// MarshalSigKey returns the 64-byte sig-N.key form (raw X‖Y) of a P-256
// public key.
func MarshalSigKey(pub *ecdsa.PublicKey) ([]byte, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, errors.New("marshal sig key: not a P-256 public key")
	}
	b, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, fmt.Errorf("marshal sig key: %w", err)
	}
	return b[1:], nil
}

// ParseSigKey parses a station sig-N.key file: exactly 64 bytes, X‖Y of a
// point on P-256.
func ParseSigKey(b []byte) (*ecdsa.PublicKey, error) {
	if len(b) != SigKeySize {
		return nil, fmt.Errorf("parse sig key: a sig-N.key file is exactly %d bytes (raw X||Y of a P-256 key), got %d", SigKeySize, len(b))
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, b...))
	if err != nil {
		return nil, fmt.Errorf("parse sig key: not a point on P-256: %w", err)
	}
	return pub, nil
}

// KeyCRC returns the CRC32 (zlib, IEEE) of a sig-N.key file's bytes: how the
// station lists its keys in the CUPS request and how a CUPS server names the
// key that made a signature.
func KeyCRC(sigKey []byte) uint32 {
	return crc32.ChecksumIEEE(sigKey)
}

// PublicKeyCRC returns KeyCRC of the sig-N.key form of pub.
func PublicKeyCRC(pub *ecdsa.PublicKey) (uint32, error) {
	b, err := MarshalSigKey(pub)
	if err != nil {
		return 0, err
	}
	return KeyCRC(b), nil
}

// PEMFormat selects the encoding MarshalPrivateKeyPEM writes.
type PEMFormat int

const (
	// PKCS8 writes a "PRIVATE KEY" block (openssl genpkey, Go's default).
	PKCS8 PEMFormat = iota
	// SEC1 writes an "EC PRIVATE KEY" block (openssl ecparam -genkey).
	SEC1
)

// MarshalPrivateKeyPEM encodes a P-256 private key as PEM in the given format.
func MarshalPrivateKeyPEM(priv *ecdsa.PrivateKey, format PEMFormat) ([]byte, error) {
	if priv == nil || priv.Curve != elliptic.P256() {
		return nil, errors.New("marshal private key: not a P-256 private key")
	}
	var (
		block pem.Block
		err   error
	)
	switch format {
	case PKCS8:
		block.Type = "PRIVATE KEY"
		block.Bytes, err = x509.MarshalPKCS8PrivateKey(priv)
	case SEC1:
		block.Type = "EC PRIVATE KEY"
		block.Bytes, err = x509.MarshalECPrivateKey(priv)
	default:
		return nil, fmt.Errorf("marshal private key: unknown PEM format %d", format)
	}
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&block), nil
}

// ParsePrivateKeyPEM reads a P-256 private key from PEM: PKCS#8 ("PRIVATE
// KEY"), SEC1 ("EC PRIVATE KEY"), and openssl ecparam -genkey output, which
// puts an "EC PARAMETERS" block before the key. Other blocks are skipped.
func ParsePrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New(`parse private key: no "PRIVATE KEY" or "EC PRIVATE KEY" PEM block found`)
		}
		switch block.Type {
		case "EC PRIVATE KEY":
			priv, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse private key: EC PRIVATE KEY block: %w", err)
			}
			return checkPrivate(priv)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse private key: PRIVATE KEY block: %w", err)
			}
			priv, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("parse private key: PRIVATE KEY block holds a %T, want an ECDSA P-256 key", k)
			}
			return checkPrivate(priv)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("parse private key: encrypted private keys are not supported; decrypt with openssl pkcs8 first")
		}
	}
}

func checkPrivate(priv *ecdsa.PrivateKey) (*ecdsa.PrivateKey, error) {
	if priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("parse private key: curve %s, want P-256 (prime256v1): Basics Station verifies P-256 only", priv.Curve.Params().Name)
	}
	return priv, nil
}

// MarshalPublicKeyPEM encodes a P-256 public key as a "PUBLIC KEY" (SPKI)
// PEM block, the form openssl dgst -verify reads.
func MarshalPublicKeyPEM(pub *ecdsa.PublicKey) ([]byte, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, errors.New("marshal public key: not a P-256 public key")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads a P-256 public key in any form a user may hand over:
// a 64-byte sig-N.key file, a "PUBLIC KEY" (SPKI) PEM block, or a private key
// PEM (PKCS#8, SEC1, openssl ecparam output), whose public half is returned.
func ParsePublicKey(data []byte) (*ecdsa.PublicKey, error) {
	if len(data) == SigKeySize && !bytes.Contains(data, []byte("-----BEGIN")) {
		return ParseSigKey(data)
	}
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(data) == SigKeySize {
				return ParseSigKey(data)
			}
			return nil, fmt.Errorf("parse public key: neither a %d-byte sig-N.key file nor a PEM public or private key (%d bytes)", SigKeySize, len(data))
		}
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse public key: PUBLIC KEY block: %w", err)
			}
			pub, ok := k.(*ecdsa.PublicKey)
			if !ok {
				return nil, fmt.Errorf("parse public key: PUBLIC KEY block holds a %T, want an ECDSA P-256 key", k)
			}
			if pub.Curve != elliptic.P256() {
				return nil, fmt.Errorf("parse public key: curve %s, want P-256 (prime256v1)", pub.Curve.Params().Name)
			}
			return pub, nil
		case "EC PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			priv, err := ParsePrivateKeyPEM(pem.EncodeToMemory(block))
			if err != nil {
				return nil, fmt.Errorf("parse public key: %w", err)
			}
			return &priv.PublicKey, nil
		}
	}
}
