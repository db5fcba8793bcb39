//go:build linux

package cups

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// kernelBoundsWrites says that boundWrites works here: the kernel closes
// a TCP connection whose sent data stays unacknowledged, or unsent behind
// a zero window, for longer than TCP_USER_TIMEOUT (tcp(7)).
const kernelBoundsWrites = true

// boundWrites sets TCP_USER_TIMEOUT to d on c. A peer that stops reading
// (its window closes) or vanishes gets its connection closed d after the
// last byte it acknowledged, whatever the handler writes.
func boundWrites(c net.Conn, d time.Duration) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return errNotTCP
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	}); err != nil {
		return err
	}
	return serr
}
