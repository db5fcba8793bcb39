// Command stationfleet is the stationfleet CLI: firmware signing keys and
// signatures, publishing firmware with a ready FirmwareRollout manifest, and
// following and steering rollouts. Installed (or linked) as
// kubectl-stationfleet it is the kubectl plugin "kubectl stationfleet".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	// The time zone database, in the binary: the status view shows batch
	// windows in their IANA zones on any system (Windows has none).
	_ "time/tzdata"

	"github.com/stationfleet/stationfleet/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, cli.Options{Name: os.Args[0]}, os.Args[1:])
	stop()
	os.Exit(code)
}
