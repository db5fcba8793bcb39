package azblob_test

import (
	"io"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/stationfleet/stationfleet/internal/firmware/internal/fwtest"
)

const mib = fwtest.MiB

var (
	pseudoRandom  = fwtest.PseudoRandom
	hashOf        = fwtest.HashOf
	newAzureStore = fwtest.NewAzureStore
)

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
