// Package syncbuf is a byte buffer that a child process's output and the
// code reading it may use at once: the processes the demo and the tests
// start (Prometheus, Azurite, the manager) write into one while a waiting
// loop or a failure message reads it.
package syncbuf

import "sync"

// Buffer is safe for concurrent Write and String. With Limit > 0 it keeps
// only the last Limit bytes written, so a chatty process cannot grow it
// without bound. The zero value is an empty buffer with no limit.
type Buffer struct {
	// Limit is how many of the last bytes written are kept; 0 keeps all.
	Limit int

	mu sync.Mutex
	b  []byte
}

// Write appends p, dropping the oldest bytes beyond Limit.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	if s.Limit > 0 && len(s.b) > s.Limit {
		s.b = append(s.b[:0], s.b[len(s.b)-s.Limit:]...)
	}
	return len(p), nil
}

// String returns what the buffer holds.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
