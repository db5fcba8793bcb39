//go:build !linux

package cups

import (
	"net"
	"time"
)

// kernelBoundsWrites is false here: the server bounds every response
// with http.Server.WriteTimeout instead (see writeBoundListener).
const kernelBoundsWrites = false

func boundWrites(net.Conn, time.Duration) error { return errNotTCP }
