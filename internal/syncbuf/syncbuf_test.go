package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// TestBufferKeepsTheLastBytes: with a limit, the newest output survives
// and the oldest is dropped; concurrent writers lose nothing below it.
func TestBufferKeepsTheLastBytes(t *testing.T) {
	b := &Buffer{Limit: 8}
	_, _ = b.Write([]byte("0123456789"))
	_, _ = b.Write([]byte("ab"))
	if got := b.String(); got != "456789ab" {
		t.Fatalf("kept %q, want the last 8 bytes %q", got, "456789ab")
	}

	var all Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = all.Write([]byte("x"))
				_ = all.String()
			}
		}()
	}
	wg.Wait()
	if got := all.String(); got != strings.Repeat("x", 800) {
		t.Fatalf("kept %d bytes, want 800", len(got))
	}
}
