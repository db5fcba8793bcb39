// Command stationfleet-bench measures every performance target of DESIGN.md
// section 9 beside its baseline, in one run, and prints a table (to stdout
// and to -out). `make bench` builds and runs it.
//
// It is a program rather than a test so that `go test ./...` never runs
// it: it needs minutes, the whole machine, and a manager process of its own
// whose memory it can measure. Rows 1 and 3 run the Go benchmarks of
// internal/cups (from a test binary built by `make bench`; the firmware benchmark runs 3 interleaved rounds); rows 2, 4, 5
// and 6 start envtest (kube-apiserver and etcd), an IoT Hub emulator in this
// process, and the manager binary as a separate process, and drive
// simulated stations against its CUPS server.
//
// Every process it starts is stopped when it returns, on error and on
// SIGINT/SIGTERM; manager and benchmark processes also die with it
// (Pdeathsig).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "loadgen":
			os.Exit(runLoadgen(os.Args[2:]))
		case "bare":
			os.Exit(runBare(os.Args[2:]))
		case "stalls":
			os.Exit(runStallProbe(os.Args[2:]))
		}
	}
	var (
		managerBin = flag.String("manager", "bin/manager", "The manager binary (go build ./cmd/manager).")
		cupsTest   = flag.String("cups-test", "bin/cups.test", "The internal/cups test binary (go test -c ./internal/cups).")
		out        = flag.String("out", "bin/bench-results.txt", "File the results table is written to.")
		rows       = flag.String("rows", "1,1p,2,3,4,5,6", "Rows of DESIGN.md section 9 to run (1: the CUPS Go benchmark in one process; 1p: the manager, the load generator and the bare handler each in its own process).")
		herdN      = flag.Int("herd-stations", 100_000, "Stations in the thundering herd (row 2).")
		herdSpan   = flag.Duration("herd-span", 54*time.Second, "Window over which the herd's polls are started (row 2).")
		herdWork   = flag.Int("herd-workers", 1024, "Concurrent station sessions at most (row 2).")
		s3Units    = flag.Int("hub-s3-units", 5, "Size of the IoT Hub whose rates the herd's manager is configured with, in S3 units (row 2).")
		rolloutN   = flag.Int("rollout-stations", 10_000, "Stations of the rollout compared with a raw write loop (row 4).")
		bigN       = flag.Int("big-rollout-stations", 100_000, "Stations of the planned and tracked rollout (row 5).")
		reportN    = flag.Int("report-stations", 500, "Stations of the report-delay batch (row 6).")
		scaleSizes = flag.String("scale-sizes", "10000,100000", "Rollout sizes of the scale curve (row scale, not run by default; add 1000000 for the 1M point).")
		scaleLimit = flag.String("scale-memory-limit", "off", "The manager's --memory-limit in the scale row: off measures its memory as it grows; 920Mi is what --memory-limit=auto gives in a container limited to 1 GiB.")
	)
	flag.Parse()
	ctrl.SetLogger(logr.Discard())
	os.Exit(run(*managerBin, *cupsTest, *out, *rows, herdOptions{stations: *herdN, span: *herdSpan, s3Units: *s3Units, workers: *herdWork},
		*rolloutN, *bigN, *reportN, *scaleSizes, *scaleLimit))
}

func run(managerBin, cupsTest, outPath, rowList string, herd herdOptions, rolloutN, bigN, reportN int, scaleSizes, scaleLimit string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	want := map[string]bool{}
	for _, r := range strings.Split(rowList, ",") {
		want[strings.TrimSpace(r)] = true
	}
	root, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, p := range []*string{&managerBin, &cupsTest, &outPath} {
		if *p, err = filepath.Abs(*p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	logDir := filepath.Join(filepath.Dir(outPath), "bench-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	work, err := os.MkdirTemp("", "stationfleet-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	benchLog, err := os.Create(filepath.Join(logDir, "go-bench.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer benchLog.Close()

	rep := &report{}
	step := func(name string) func() {
		fmt.Fprintf(os.Stderr, "bench: %s ...\n", name)
		t := time.Now()
		rep.begin()
		m0 := sampleMachine()
		return func() {
			load := machineLoad(m0, sampleMachine())
			rep.end(load)
			fmt.Fprintf(os.Stderr, "bench: %s done in %s (%s)\n", name, time.Since(t).Round(100*time.Millisecond), load)
		}
	}
	cupsDir := filepath.Join(root, "internal", "cups")
	if want["1"] && ctx.Err() == nil {
		done := step("row 1: CUPS no-change (go benchmark)")
		rowNoChange(ctx, rep, cupsTest, cupsDir, benchLog)
		done()
	}
	if want["3"] && ctx.Err() == nil {
		done := step("row 3: 64 MiB firmware (go benchmark)")
		rowFirmware(ctx, rep, cupsTest, cupsDir, benchLog)
		done()
	}
	var sizes []int
	for _, f := range strings.Split(scaleSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1000 {
			fmt.Fprintf(os.Stderr, "-scale-sizes: %q is not a size of at least 1000\n", f)
			return 2
		}
		sizes = append(sizes, n)
	}
	if (want["1p"] || want["2"] || want["4"] || want["5"] || want["6"] || want["scale"]) && ctx.Err() == nil {
		done := step("envtest")
		c, err := startCluster(work, managerBin, logDir)
		done()
		if err != nil {
			rep.fail("1p, 2, 4, 5, 6", err)
		} else {
			defer func() { _ = c.stop() }()
			type rowRun struct {
				key, name string
				fn        func()
			}
			for _, r := range []rowRun{
				{"1p", "row 1p: CUPS no-change, separate processes", func() { rowCUPSProcess(ctx, c, rep) }},
				{"6", "row 6: report delay", func() { rowReportDelay(ctx, c, rep, reportN) }},
				{"4", "row 4: rollout vs raw writes", func() { rowRollout(ctx, c, rep, rolloutN) }},
				{"2", "row 2: thundering herd", func() { rowHerd(ctx, c, rep, herd) }},
				{"5", "row 5: 100k rollout tracked", func() { rowBigRollout(ctx, c, rep, bigN) }},
				{"scale", "scale curve", func() { rowScale(ctx, c, rep, sizes, scaleLimit) }},
			} {
				if want[r.key] && ctx.Err() == nil {
					done := step(r.name)
					r.fn()
					runtime.GC() // each row's emulator is dropped before the next
					done()
				}
			}
		}
	}
	if ctx.Err() != nil {
		rep.note("interrupted: %v", ctx.Err())
	}
	rep.note("Machine: %d CPUs (GOMAXPROCS %d), %s; whole run %s. Logs and profiles: %s.", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(),
		time.Since(started).Round(time.Second), logDir)

	f, err := os.Create(outPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		rep.write(os.Stdout)
		return 1
	}
	defer f.Close()
	fmt.Fprintf(f, "stationfleet make bench, %s\n\n", started.UTC().Format(time.RFC3339))
	rep.write(io.MultiWriter(os.Stdout, f))
	fmt.Printf("\nresults written to %s\n", outPath)
	for _, fig := range rep.figures {
		if !fig.measured {
			return 1
		}
	}
	return 0
}
