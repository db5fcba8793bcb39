// Package fwtest holds what the firmware packages' tests share: deterministic
// blob content and an Azure store on Azurite.
package fwtest

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stationfleet/stationfleet/internal/firmware/azblob"
	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
)

// MiB is a mebibyte.
const MiB = 1 << 20

// PseudoRandom returns a reader of n deterministic pseudo-random bytes (so a
// flipped or shifted byte changes the hash), without holding them in memory.
func PseudoRandom(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}), n)
}

// PseudoRandomBytes is PseudoRandom in memory.
func PseudoRandomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = io.ReadFull(PseudoRandom(seed, int64(n)), b)
	return b
}

// HashOf returns the SHA-256 of a PseudoRandom stream.
func HashOf(seed uint64, n int64) [32]byte {
	h := sha256.New()
	_, _ = io.Copy(h, PseudoRandom(seed, n))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// AzureOptions returns options for Azurite's well-known account.
func AzureOptions(a *azurite.Azurite) azblob.Options {
	o := azblob.DefaultOptions()
	o.Account = azurite.Account
	o.Endpoint = a.Endpoint
	o.AccountKey = azurite.AccountKey
	o.Auth = azblob.AuthSharedKey
	// Fail fast in tests: a wrong answer should not take 3 backoffs.
	o.MaxRetries = 1
	o.RetryDelay = 10 * time.Millisecond
	return o
}

// NewAzureStore returns a store on Azurite, with AzureOptions changed by mod.
func NewAzureStore(t testing.TB, a *azurite.Azurite, mod ...func(*azblob.Options)) *azblob.Store {
	t.Helper()
	o := AzureOptions(a)
	for _, m := range mod {
		m(&o)
	}
	s, err := azblob.New(o)
	if err != nil {
		t.Fatalf("azure store: %v", err)
	}
	return s
}
