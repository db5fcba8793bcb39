package cups

import (
	"errors"
	"net"
	"time"

	"github.com/go-logr/logr"
)

// How the server bounds what it writes (Options.WriteTimeout):
//
//   - A response with firmware or credentials gets a write deadline of its
//     own, WriteTimeout from its start (respond): a station that reads a
//     large update too slowly is cut off, as before.
//   - Every other answer (the no-change answer, refusals, errors) is a few
//     hundred bytes that the socket's buffer takes at once, so it sets no
//     deadline. What could still block it forever, a peer that sends
//     requests but never reads the answers until both buffers are full, is
//     bounded by the kernel: each accepted connection carries
//     TCP_USER_TIMEOUT = WriteTimeout, and a connection whose peer
//     acknowledges nothing for that long is closed.
//
// net/http's own WriteTimeout would instead arm (and then clear) a timer on
// every request's connection: measured with cmd/stationfleet-bench row 1p
// at about 2.5 µs of the server's CPU per no-change answer, 8% of it. Where
// the kernel cannot bound writes (not Linux), the server falls back to
// http.Server.WriteTimeout.

var errNotTCP = errors.New("not a TCP connection")

// writeBoundListener sets TCP_USER_TIMEOUT on each connection it accepts.
type writeBoundListener struct {
	net.Listener
	timeout time.Duration
	log     logr.Logger
}

func (l writeBoundListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if err := boundWrites(c, l.timeout); err != nil {
		// Not expected on a TCP listener; the connection is served, its
		// firmware responses still carry their own deadline.
		l.log.Error(err, "cannot bound writes on a CUPS connection (TCP_USER_TIMEOUT)", "remote", c.RemoteAddr().String())
	}
	return c, nil
}
