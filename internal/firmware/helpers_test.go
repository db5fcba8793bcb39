package firmware_test

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
)

const mib = 1 << 20

// pseudoRandom returns a reader of n deterministic pseudo-random bytes (so a
// flipped or shifted byte changes the hash), without holding them in memory.
func pseudoRandom(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}), n)
}

// pseudoRandomBytes is pseudoRandom in memory.
func pseudoRandomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = io.ReadFull(pseudoRandom(seed, int64(n)), b)
	return b
}

// hashOf returns the SHA-256 of a pseudoRandom stream.
func hashOf(seed uint64, n int64) [32]byte {
	h := sha256.New()
	_, _ = io.Copy(h, pseudoRandom(seed, n))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// azureOptions returns options for Azurite's well-known account.
func azureOptions(a *azurite.Azurite) firmware.AzureOptions {
	o := firmware.DefaultAzureOptions()
	o.Account = azurite.Account
	o.Endpoint = a.Endpoint
	o.AccountKey = azurite.AccountKey
	o.Auth = firmware.AuthSharedKey
	// Fail fast in tests: a wrong answer should not take 3 backoffs.
	o.MaxRetries = 1
	o.RetryDelay = 10 * 1e6
	return o
}

func newAzureStore(t testing.TB, a *azurite.Azurite, mod ...func(*firmware.AzureOptions)) *firmware.AzureStore {
	t.Helper()
	o := azureOptions(a)
	for _, m := range mod {
		m(&o)
	}
	s, err := firmware.NewAzureStore(o)
	if err != nil {
		t.Fatalf("azure store: %v", err)
	}
	return s
}

// cutProxy forwards TCP connections to target and can cut all of them at
// once, as a network failure would.
type cutProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func startCutProxy(t testing.TB, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &cutProxy{l: l, target: target}
	t.Cleanup(func() { _ = l.Close(); p.Cut() })
	go p.serve()
	return p
}

func (p *cutProxy) Addr() string { return p.l.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
		go func() { _, _ = io.Copy(c, u); _ = c.Close() }()
	}
}

// Cut closes every connection made so far.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func writeBytes(name string, b []byte) error {
	return os.WriteFile(name, b, 0o600)
}
