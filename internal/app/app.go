// Package app wires stationfleet's parts into a controller-runtime manager:
// the IoT Hub twin registry, the firmware store and checker, the CUPS server
// and the FirmwareRollout reconciler. cmd/manager parses flags into Options
// and calls Setup; tests and the embedded default call Setup the same way, so
// they run exactly what production runs.
package app

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/stationfleet/stationfleet/controllers"
	"github.com/stationfleet/stationfleet/internal/analysis"
	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/firmware/stores"
	"github.com/stationfleet/stationfleet/internal/iothub"
)

// Options are every setting of the manager beyond kubebuilder's own flags.
type Options struct {
	IoTHub   IoTHubOptions
	Firmware stores.Options
	CUPS     cups.Options
	Rollout  controllers.Options
	// DisableCUPS runs the controller without a CUPS server (a CUPS-less
	// replica, or a separate CUPS deployment).
	DisableCUPS bool
	// WatchNamespaces are the namespaces whose rollouts this manager
	// reconciles; empty means every namespace. Reports of stations owned
	// by a rollout elsewhere are relayed through the API (ReportRelay).
	WatchNamespaces []string
	// Now, when set, is the clock of the controller and the CUPS server
	// (tests of time-dependent behaviour, such as a bake time); nil is
	// time.Now.
	Now func() time.Time
}

// DefaultOptions returns the manager's defaults.
func DefaultOptions() Options {
	return Options{
		IoTHub:   IoTHubOptions{WriteRate: iothub.DefaultWriteRate, ReadRate: iothub.DefaultReadRate, QueryRate: iothub.DefaultQueryRate * 60, PageSize: 1000},
		Firmware: stores.DefaultOptions(),
		Rollout:  controllers.DefaultOptions(),
	}
}

// BindFlags registers every option on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	o.IoTHub.BindFlags(fs)
	o.Firmware.BindFlags(fs)
	o.CUPS.BindFlags(fs)
	o.Rollout.BindFlags(fs)
	fs.BoolVar(&o.DisableCUPS, "disable-cups", o.DisableCUPS, "Run without the CUPS server.")
	fs.Func("watch-namespaces", "Comma-separated namespaces whose rollouts this manager reconciles (default: all).", func(v string) error {
		o.WatchNamespaces = nil
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				o.WatchNamespaces = append(o.WatchNamespaces, ns)
			}
		}
		return nil
	})
}

// CacheNamespaces returns the manager cache's DefaultNamespaces for
// WatchNamespaces (nil: every namespace).
func (o Options) CacheNamespaces() map[string]cache.Config {
	if len(o.WatchNamespaces) == 0 {
		return nil
	}
	m := make(map[string]cache.Config, len(o.WatchNamespaces))
	for _, ns := range o.WatchNamespaces {
		m[ns] = cache.Config{}
	}
	return m
}

// IoTHubOptions say how to reach IoT Hub (or the emulator).
type IoTHubOptions struct {
	// ConnectionStringFile holds the service connection string
	// (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...). The
	// IOTHUB_CONNECTION_STRING environment variable is used when it is empty.
	// Never a flag value: flags show in process listings.
	ConnectionStringFile string
	// CAFile is a PEM bundle to trust for the hub's TLS certificate (the
	// emulator's CA); empty uses the system roots.
	CAFile string
	// Endpoint, for an emulator only, is a host:port to connect to instead
	// of the connection string's HostName on port 443 (TLS and SAS still
	// use HostName).
	Endpoint string
	// WriteRate and ReadRate are twin writes and reads per second.
	WriteRate, ReadRate float64
	// QueryRate is query pages per minute.
	QueryRate float64
	// PageSize is the number of twins per query page.
	PageSize int
	// NoRateLimit turns the client's own rate limits off (the emulator).
	NoRateLimit bool
	// MaxConnections bounds the connections to IoT Hub (0: the client's
	// default).
	MaxConnections int
}

// BindFlags registers the options on fs.
func (o *IoTHubOptions) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.ConnectionStringFile, "iothub-connection-string-file", o.ConnectionStringFile, "File holding the IoT Hub service connection string (default: $IOTHUB_CONNECTION_STRING).")
	fs.StringVar(&o.CAFile, "iothub-ca-file", o.CAFile, "PEM CA bundle to trust for IoT Hub's certificate (the emulator's CA).")
	fs.StringVar(&o.Endpoint, "iothub-endpoint", o.Endpoint, "For an emulator only: host:port to connect to instead of the connection string's HostName on port 443.")
	fs.Float64Var(&o.WriteRate, "iothub-write-rate", o.WriteRate, "Twin writes per second (IoT Hub S1 allows 50 per unit).")
	fs.Float64Var(&o.ReadRate, "iothub-read-rate", o.ReadRate, "Twin reads per second (IoT Hub S1 allows 100 per unit).")
	fs.Float64Var(&o.QueryRate, "iothub-query-rate", o.QueryRate, "Query pages per minute (IoT Hub S1 allows 20 per unit).")
	fs.IntVar(&o.PageSize, "iothub-page-size", o.PageSize, "Twins per query page (at most 1000).")
	fs.IntVar(&o.MaxConnections, "iothub-max-connections", o.MaxConnections, fmt.Sprintf("Connections to IoT Hub at most; requests beyond them wait for one (each new connection is a TLS handshake). 0: %d.", iothub.DefaultMaxConnections))
	fs.BoolVar(&o.NoRateLimit, "iothub-no-rate-limit", o.NoRateLimit, "Turn the client's rate limits off (for the emulator only).")
}

// connectionString reads the connection string from the file or environment.
func (o IoTHubOptions) connectionString() (string, error) {
	if o.ConnectionStringFile != "" {
		b, err := os.ReadFile(o.ConnectionStringFile)
		if err != nil {
			return "", fmt.Errorf("read IoT Hub connection string: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if cs := os.Getenv("IOTHUB_CONNECTION_STRING"); cs != "" {
		return cs, nil
	}
	return "", errors.New("no IoT Hub connection string: set --iothub-connection-string-file or IOTHUB_CONNECTION_STRING")
}

// NewRegistry returns the IoT Hub client the options describe.
func (o IoTHubOptions) NewRegistry() (*iothub.Client, error) {
	cs, err := o.connectionString()
	if err != nil {
		return nil, err
	}
	var opts []iothub.Option
	if o.CAFile != "" {
		opts = append(opts, iothub.WithCAFile(o.CAFile))
	}
	if o.Endpoint != "" {
		opts = append(opts, iothub.WithEndpoint(o.Endpoint))
	}
	if o.PageSize > 0 {
		opts = append(opts, iothub.WithPageSize(o.PageSize))
	}
	if o.MaxConnections > 0 {
		opts = append(opts, iothub.WithMaxConnections(o.MaxConnections))
	}
	if o.NoRateLimit {
		opts = append(opts, iothub.WithoutRateLimits())
	} else {
		if o.WriteRate > 0 {
			opts = append(opts, iothub.WithWriteRate(o.WriteRate))
		}
		if o.ReadRate > 0 {
			opts = append(opts, iothub.WithReadRate(o.ReadRate))
		}
		if o.QueryRate > 0 {
			opts = append(opts, iothub.WithQueryRate(o.QueryRate/60))
		}
	}
	c, err := iothub.New(cs, opts...)
	if err != nil {
		return nil, fmt.Errorf("IoT Hub client: %w", err) // the adapter never puts the key in its errors
	}
	return c, nil
}

// Parts are what Setup built, for callers that want to look inside.
type Parts struct {
	Registry   *iothub.Client
	Store      *firmware.Router
	CUPS       *cups.Server
	Reconciler *controllers.FirmwareRolloutReconciler
}

// Setup builds the adapters and registers the reconciler and the CUPS server
// with mgr.
func Setup(mgr ctrl.Manager, o Options) (*Parts, error) {
	reg, err := o.IoTHub.NewRegistry()
	if err != nil {
		return nil, err
	}
	store, err := stores.New(o.Firmware)
	if err != nil {
		return nil, fmt.Errorf("firmware store: %w", err)
	}
	p := &Parts{Registry: reg, Store: store}
	wake := controllers.NewWaker(1024, o.WatchNamespaces...)
	p.Reconciler = &controllers.FirmwareRolloutReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(), // the publicKeyRef ConfigMap, uncached
		Registry:  reg,
		Firmware:  newFirmwareChecker(store, o.Firmware.MaxSize),
		Analyzer:  analysis.New(), // analysis steps: Prometheus and CEL
		Recorder:  mgr.GetEventRecorder("stationfleet"),
		Wake:      wake,
		Options:   o.Rollout,
		Now:       o.Now,
	}
	if !o.DisableCUPS {
		// A station's report wakes this process's controller when it runs
		// the rollout, and is relayed through the API server otherwise.
		relay := controllers.NewReportRelay(mgr.GetClient(), mgr.GetAPIReader(), o.Rollout.ReportRelayInterval)
		if err := mgr.Add(relay); err != nil {
			return nil, fmt.Errorf("add the report relay: %w", err)
		}
		route := &controllers.ReportRouter{Waker: wake, Relay: relay, Elected: mgr.Elected()}
		cupsOpts := []cups.Option{cups.WithNotifier(cups.NotifierFunc(route.NotifyStation))}
		if o.Now != nil {
			cupsOpts = append(cupsOpts, cups.WithClock(o.Now))
		}
		srv, err := cups.NewServer(o.CUPS, reg, store, cupsOpts...)
		if err != nil {
			return nil, fmt.Errorf("CUPS server: %w", err)
		}
		if err := mgr.Add(srv); err != nil {
			return nil, fmt.Errorf("add CUPS server: %w", err)
		}
		p.CUPS = srv
		p.Reconciler.Cache = srv.Cache()
	}
	if err := p.Reconciler.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up the rollout controller: %w", err)
	}
	return p, nil
}
