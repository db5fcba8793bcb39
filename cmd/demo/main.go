// Command demo runs stationfleet's embedded default on one machine: a local
// control plane, the IoT Hub emulator with a fleet of stations, signed
// firmware in a local directory, the manager and simulated stations; it
// applies a sample rollout and shows its progress. `make demo` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/stationfleet/stationfleet/internal/demo"
)

func main() {
	o := demo.DefaultOptions()
	o.BindFlags(flag.CommandLine)
	logFile := flag.String("log-file", "", "Write the manager's log to this file (default: <state>/manager.log when --keep-state is set, else discarded).")
	flag.Parse()

	path := *logFile
	if path == "" && o.StateDir != "" {
		if err := os.MkdirAll(o.StateDir, 0o755); err == nil {
			path = o.StateDir + "/manager.log"
		}
	}
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			os.Exit(1)
		}
		defer f.Close()
		o.Log = zap.New(zap.WriteTo(f))
	}
	o.Out = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := demo.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
	if o.ExitWhenDone && (res.Rollout == nil || res.Rollout.Status.Phase != "Completed") {
		os.Exit(2)
	}
}
