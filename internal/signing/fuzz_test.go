package signing

import (
	"crypto/ecdsa"
	"os"
	"testing"
)

type ecdsaPublicKey = ecdsa.PublicKey

// FuzzParseKeys feeds arbitrary bytes to every key parser: they must never
// panic, and whatever parses as a sig-N.key must round-trip byte for byte.
func FuzzParseKeys(f *testing.F) {
	for _, name := range []string{"sig-0.key", "sig-0.pem"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(make([]byte, 64))
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if pub, err := ParseSigKey(b); err == nil {
			again, err := MarshalSigKey(pub)
			if err != nil || string(again) != string(b) {
				t.Fatalf("sig key does not round-trip: %v", err)
			}
		}
		_, _ = ParsePrivateKeyPEM(b)
		_, _ = ParsePublicKey(b)
	})
}
