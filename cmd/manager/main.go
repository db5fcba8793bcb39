// Command manager runs stationfleet: the FirmwareRollout controller, the
// CUPS server the stations poll, metrics and health probes, in one process.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"os"
	"path/filepath"
	"time"
	// The time zone database, in the binary: batch windows name IANA
	// zones (strategy.windows[].timeZone) and the manager's image is
	// distroless/static, which must not be relied on for
	// /usr/share/zoneinfo. About 450 KB.
	_ "time/tzdata"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/admission"
	"github.com/stationfleet/stationfleet/internal/app"
	"github.com/stationfleet/stationfleet/internal/rolloutmetrics"
)

var (
	scheme   = runtime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(fwv1.AddToScheme(scheme))
}

func main() {
	var (
		metricsAddr          string
		probeAddr            string
		pprofAddr            string
		enableLeaderElection bool
		leaderElectionNS     string
		secureMetrics        bool
		leaseDuration        time.Duration
		renewDeadline        time.Duration
		retryPeriod          time.Duration
		enableHTTP2          bool
		metricsCertPath      string
		metricsCertName      string
		metricsCertKey       string
		webhookPort          int
		webhookCertDir       string
		memLimit             string
		gcHeadroomFlag       string
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "The address the metrics endpoint binds to (:8443 for HTTPS, :8080 for HTTP with --metrics-secure=false); 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "The address the health probe endpoint binds to.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "", "The address of the pprof profiling endpoint; empty disables it.")
	flag.BoolVar(&enableLeaderElection, "leader-elect", false, "Enable leader election, so that one replica at a time runs the controller (every replica serves CUPS).")
	flag.DurationVar(&leaseDuration, "leader-election-lease-duration", 15*time.Second, "How long a lost leader's lease lasts before another replica takes over the controller.")
	flag.DurationVar(&renewDeadline, "leader-election-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew its lease before it steps down.")
	flag.DurationVar(&retryPeriod, "leader-election-retry-period", 2*time.Second, "How often replicas try to acquire or renew the lease.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election lease (default: the pod's namespace).")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, to clients whose bearer token the API server authenticates (TokenReview) and authorizes for GET /metrics (SubjectAccessReview). false serves plain HTTP to anyone who reaches the port.")
	flag.StringVar(&metricsCertPath, "metrics-cert-path", "", "Directory holding the metrics server's certificate and key (e.g. a mounted cert-manager Secret); empty: a self-signed certificate.")
	flag.StringVar(&metricsCertName, "metrics-cert-name", "tls.crt", "The metrics server's certificate file in --metrics-cert-path.")
	flag.StringVar(&metricsCertKey, "metrics-cert-key", "tls.key", "The metrics server's key file in --metrics-cert-path.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false, "Enable HTTP/2 for the metrics server (off: CVE-2023-44487 / rapid reset).")
	flag.IntVar(&webhookPort, "webhook-port", 0, "Serve the FirmwareRollout validating webhook (config/webhook: refuses analysis steps whose condition or query does not compile) on this port; 0 serves none.")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding the webhook server's tls.crt and tls.key (e.g. a mounted cert-manager Secret).")
	flag.StringVar(&memLimit, "memory-limit", "auto", "The Go runtime's soft memory limit: auto is 90% of the container's memory limit (cgroup v2) unless GOMEMLIMIT is set, off is none, or a quantity such as 900Mi. A complement to the controller's small views, so that a large rollout's heap does not grow to twice its live size before it is collected.")
	flag.StringVar(&gcHeadroomFlag, "gc-headroom", "64Mi", "How far, at least, the heap may grow past its live size before the garbage collector runs (it raises the GC percent while the live heap is small; a large heap keeps GOGC's doubling); off for GOGC alone, which is also what setting GOGC does. A small heap collected many times a second under a poll storm put the collector into the CUPS answers' tail latency.")
	opts := app.DefaultOptions()
	opts.BindFlags(flag.CommandLine)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if limit, err := applyMemoryLimit(memLimit, cgroupMemoryMax); err != nil {
		setupLog.Error(err, "unable to set the memory limit")
		os.Exit(1)
	} else if limit > 0 {
		setupLog.Info("soft memory limit", "bytes", limit)
	}
	if h, err := startGCHeadroom(context.Background(), gcHeadroomFlag); err != nil {
		setupLog.Error(err, "unable to set the garbage collector's headroom")
		os.Exit(1)
	} else if h > 0 {
		setupLog.Info("garbage collector headroom", "bytes", h)
	}

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: secureMetrics, TLSOpts: tlsOpts}
	if secureMetrics {
		// Only clients the API server authenticates and authorizes for
		// GET /metrics (the metrics-reader ClusterRole) are served; the
		// manager's ClusterRole may create the TokenReviews and
		// SubjectAccessReviews this takes (config/rbac).
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	// Without --metrics-cert-path, controller-runtime serves a self-signed
	// certificate. With it, the certificate is reloaded when its files
	// change (cert-manager renewing a mounted Secret).
	var metricsCertWatcher *certwatcher.CertWatcher
	if metricsCertPath != "" {
		var err error
		metricsCertWatcher, err = certwatcher.New(filepath.Join(metricsCertPath, metricsCertName), filepath.Join(metricsCertPath, metricsCertKey))
		if err != nil {
			setupLog.Error(err, "unable to load the metrics server certificate", "dir", metricsCertPath)
			os.Exit(1)
		}
		metricsOpts.TLSOpts = append(metricsOpts.TLSOpts, func(c *tls.Config) { c.GetCertificate = metricsCertWatcher.GetCertificate })
	}
	mgrOpts := ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                enableLeaderElection,
		LeaderElectionID:              "stationfleet.firmware.stationfleet.io",
		LeaderElectionNamespace:       leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
		PprofBindAddress:              pprofAddr,
	}
	if webhookPort > 0 {
		mgrOpts.WebhookServer = webhook.NewServer(webhook.Options{Port: webhookPort, CertDir: webhookCertDir, TLSOpts: tlsOpts})
	}
	// The cache, the controller and the CUPS server's wake-ups all keep
	// to --watch-namespaces (app.Options).
	mgrOpts.Cache.DefaultNamespaces = opts.CacheNamespaces()
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), mgrOpts)
	if err != nil {
		setupLog.Error(err, "unable to create the manager")
		os.Exit(1)
	}
	parts, err := app.Setup(mgr, opts)
	if err != nil {
		setupLog.Error(err, "unable to set up stationfleet")
		os.Exit(1)
	}
	defer func() { _ = parts.Registry.Close() }()
	// Each rollout's phase, deadline and last progress, read from the cache
	// at scrape time (the dashboard and alerts of config/grafana and
	// config/prometheus).
	if err := ctrlmetrics.Registry.Register(rolloutmetrics.New(mgr.GetCache(), rolloutmetrics.WithLogger(ctrl.Log.WithName("rollout-metrics")))); err != nil {
		setupLog.Error(err, "unable to register the rollout metrics")
		os.Exit(1)
	}
	if webhookPort > 0 {
		if err := admission.Setup(mgr); err != nil {
			setupLog.Error(err, "unable to set up the webhook")
			os.Exit(1)
		}
	}
	if metricsCertWatcher != nil {
		if err := mgr.Add(metricsCertWatcher); err != nil {
			setupLog.Error(err, "unable to watch the metrics server certificate")
			os.Exit(1)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up the ready check")
		os.Exit(1)
	}
	setupLog.Info("starting the manager", "cups", !opts.DisableCUPS, "leaderElection", enableLeaderElection, "watchNamespaces", opts.WatchNamespaces)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "the manager stopped with an error")
		os.Exit(1)
	}
}
