// Package demo is stationfleet's embedded default: on one machine, with no
// cloud account and no cluster, it brings up a local control plane (etcd and
// kube-apiserver from hack/tools, the CRDs installed), the IoT Hub emulator
// with a fleet of registered stations, a local firmware directory with
// firmware signed by the project's own signing code, the manager (controller
// and CUPS server, plain HTTP), and simulated stations polling it; applies the
// sample rollout and shows its progress until it ends. cmd/demo is its
// command line; test/e2e drives it too.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/app"
	"github.com/stationfleet/stationfleet/internal/cli"
	"github.com/stationfleet/stationfleet/internal/controlplane"
	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/stationsim"
)

// SampleFile is the rollout the demo applies, relative to the module root.
// The demo fills in its firmware (url, signature, keyChecksum), which depend
// on this run's signing key and state directory.
const SampleFile = "config/samples/firmware_v1alpha1_firmwarerollout_demo.yaml"

// Options configure a demo run.
type Options struct {
	// Stations is how many simulated stations to run.
	Stations int
	// PollInterval is how often each station polls CUPS.
	PollInterval time.Duration
	// FailShare is the share of stations that never apply an update.
	FailShare float64
	// BreakTC is how many stations' update breaks their network-server
	// connection: the network server rejects them, so they come back to
	// CUPS every R (ResyncInterval) and end Failed Unhealthy.
	BreakTC int
	// FallBack is how many stations' firmware falls back to the previous
	// package FallBackAfter after it reported the new one: Failed
	// RolledBack.
	FallBack int
	// BakeTime is the rollout's strategy.bakeTime; 0 is 1.5×PollInterval
	// in whole seconds (the twin keeps it in seconds), at least 1 s. It
	// must stay shorter than two check-ins, so that a healthy station
	// never comes back twice within it.
	BakeTime time.Duration
	// StateDir keeps the state (etcd, the emulator, firmware, keys, station
	// packages) so that a second run continues where the first stopped;
	// empty uses a temporary directory removed at exit.
	StateDir string
	// CUPSAddr is where the CUPS server listens.
	CUPSAddr string
	// ExitWhenDone stops the demo when the rollout ends instead of running
	// until interrupted.
	ExitWhenDone bool
	// Namespace is where the rollout is created.
	Namespace string
	// DashboardAddr is where `stationfleet dashboard` serves the live page
	// of the demo's rollouts; empty for none.
	DashboardAddr string
	// Analysis runs the analysis scenario: a Prometheus scraping the
	// stations' network-server metrics, and AnalysisSampleFile, whose
	// analysis step checks the updated stations' forwarding ratio. The
	// other misbehaviours (FailShare, BreakTC, FallBack) are off.
	Analysis bool
	// Degrade is, with Analysis, the share of their uplinks that stations
	// running the new firmware still forward: 1 is a good firmware, whose
	// analysis passes; below 0.95 the analysis fails and halts the rollout.
	Degrade float64
	// Out receives the progress display; Log the manager's log (discarded
	// when nil).
	Out io.Writer
	Log logr.Logger
}

// DefaultOptions returns the options `make demo` uses.
func DefaultOptions() Options {
	return Options{Stations: 50, PollInterval: 2 * time.Second, FailShare: 0.06, BreakTC: 1, FallBack: 1,
		CUPSAddr: "127.0.0.1:5002", Namespace: "default", DashboardAddr: "127.0.0.1:3100", Degrade: 1}
}

// bakeTime is the rollout's bake time.
func (o Options) bakeTime() time.Duration {
	if o.BakeTime > 0 {
		return o.BakeTime
	}
	return max((o.PollInterval * 3 / 2).Truncate(time.Second), time.Second)
}

// Schedule is the stations' poll schedule: a real station's, scaled so
// that R (CUPS_RESYNC_INTV, 60 s) is a twentieth of the poll interval
// (100 ms at 2 s: a station that cannot reach its network server comes
// back every 750 ms), checking in every PollInterval (CUPS_OKSYNC_INTV).
func (o Options) Schedule() stationsim.Schedule {
	sc := stationsim.DefaultSchedule().Scale(float64(o.PollInterval/20) / float64(time.Minute))
	sc.OKSync = o.PollInterval
	return sc
}

// FallBackAfter is how long after reporting the new package a station
// that falls back does so: a third of the bake time.
func (o Options) FallBackAfter() time.Duration { return o.bakeTime() / 3 }

// BindFlags registers the options on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.Stations, "stations", o.Stations, "Number of simulated stations.")
	fs.DurationVar(&o.PollInterval, "poll-interval", o.PollInterval, "How often each station polls CUPS.")
	fs.Float64Var(&o.FailShare, "fail-share", o.FailShare, "Share of stations (0..1) that never apply the update and end Failed.")
	fs.IntVar(&o.BreakTC, "break-tc", o.BreakTC, "Number of stations whose update breaks their network-server connection (they end Failed Unhealthy).")
	fs.IntVar(&o.FallBack, "fall-back", o.FallBack, "Number of stations whose firmware falls back to the previous package (they end Failed RolledBack).")
	fs.DurationVar(&o.BakeTime, "bake-time", o.BakeTime, "The rollout's strategy.bakeTime (default 1.5x --poll-interval in whole seconds, at least 1s; at most 1.8x --poll-interval).")
	fs.StringVar(&o.StateDir, "keep-state", o.StateDir, "Directory that keeps the demo's state, so a second run continues where this one stopped.")
	fs.StringVar(&o.CUPSAddr, "cups-addr", o.CUPSAddr, "Address of the CUPS server (loopback).")
	fs.BoolVar(&o.ExitWhenDone, "exit-when-done", o.ExitWhenDone, "Stop when the rollout ends instead of running until interrupted.")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Namespace of the sample rollout.")
	fs.StringVar(&o.DashboardAddr, "dashboard-addr", o.DashboardAddr, "Loopback address of the live dashboard (empty: none).")
	fs.BoolVar(&o.Analysis, "analysis", o.Analysis, "Run the analysis scenario: start Prometheus (Debian's prometheus package) scraping the stations' network-server metrics and apply "+AnalysisSampleFile+" (other misbehaviour off).")
	fs.Float64Var(&o.Degrade, "degrade", o.Degrade, "With --analysis: the share (0..1) of their uplinks that stations running the new firmware still forward; below 0.95 its analysis fails and the rollout halts.")
}

// Result is how a demo run ended.
type Result struct {
	// Rollout is the sample rollout as it ended (nil when interrupted first).
	Rollout *fwv1.FirmwareRollout
	// Kubeconfig is the file that reaches the demo's API server.
	Kubeconfig string
}

// Run runs the demo until ctx ends (or, with ExitWhenDone, until the rollout
// ends), then stops everything it started.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	if o.Stations < 1 {
		return nil, errors.New("--stations must be at least 1")
	}
	if o.FailShare < 0 || o.FailShare > 1 {
		return nil, errors.New("--fail-share must be between 0 and 1")
	}
	if o.PollInterval < 20*time.Millisecond {
		return nil, errors.New("--poll-interval must be at least 20ms")
	}
	if o.Analysis {
		o.FailShare, o.BreakTC, o.FallBack = 0, 0, 0
	}
	if o.Degrade < 0 || o.Degrade > 1 {
		return nil, errors.New("--degrade must be between 0 and 1")
	}
	if o.BreakTC < 0 || o.FallBack < 0 {
		return nil, errors.New("--break-tc and --fall-back must be 0 or more")
	}
	if bake := o.bakeTime(); bake > o.PollInterval*9/5 {
		return nil, fmt.Errorf("--bake-time %s must be at most 1.8x --poll-interval (%s; check-ins vary by 10%%): a healthy station that checks in twice within the bake time looks unhealthy (raise --poll-interval: at least 560ms for a bake time of 1s)", bake, o.PollInterval*9/5)
	}
	root, err := controlplane.ModuleRoot()
	if err != nil {
		return nil, fmt.Errorf("run the demo from the stationfleet checkout: %w", err)
	}
	state := o.StateDir
	if state == "" {
		if state, err = os.MkdirTemp("", "stationfleet-demo-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(state)
	} else if state, err = filepath.Abs(state); err != nil {
		return nil, err
	}
	// Fail early and clearly when the CUPS port is taken.
	if ln, err := net.Listen("tcp", o.CUPSAddr); err != nil {
		return nil, fmt.Errorf("the CUPS address %s is in use (another demo running?): choose another with --cups-addr: %w", o.CUPSAddr, err)
	} else {
		ln.Close()
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Out, format+"\n", args...) }

	// 1. The control plane, with the CRDs. etcd keeps its data in the state
	// directory, so --keep-state keeps the rollouts too.
	say("starting the local control plane (etcd, kube-apiserver v1.37.2)...")
	assets := filepath.Join(root, "bin")
	for _, b := range controlplane.Binaries {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("bin/%s is missing: run `make tools` (or `make demo`, which does)", b)
		}
	}
	cp, err := controlplane.Start(controlplane.Options{ModuleRoot: root, AssetsDir: assets, EtcdDataDir: filepath.Join(state, "etcd"), Admission: o.Analysis})
	if err != nil {
		return nil, fmt.Errorf("start the control plane: %w", err)
	}
	defer func() {
		if serr := cp.Stop(); serr != nil && err == nil {
			err = fmt.Errorf("stop the control plane: %w", serr)
		}
	}()
	kubeconfig := filepath.Join(state, "kubeconfig")
	if err := cp.WriteKubeconfig("demo-admin", kubeconfig); err != nil {
		return nil, fmt.Errorf("the demo's kubeconfig: %w", err)
	}
	kc := cp.Client

	// 2. The IoT Hub emulator, with the fleet registered.
	hub, err := hubsim.New(hubsim.Options{StateFile: filepath.Join(state, "iothub.json"), CertDir: filepath.Join(state, "iothub")})
	if err != nil {
		return nil, fmt.Errorf("start the IoT Hub emulator: %w", err)
	}
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	hubDone := make(chan error, 1)
	go func() { hubDone <- hub.Serve(hubCtx) }()
	defer func() { stopHub(); <-hubDone }()
	csFile := filepath.Join(state, "iothub-connection-string")
	if err := os.WriteFile(csFile, []byte(hub.ConnectionString()), 0o600); err != nil {
		return nil, err
	}

	// 3. Firmware, signed with the project's signing code.
	signer, err := embedded.LoadOrCreateSigner(filepath.Join(state, "keys", "sig-0.pem"))
	if err != nil {
		return nil, err
	}
	// The station's key file, for a real station to verify the firmware.
	sigKeyFile := filepath.Join(state, "keys", "sig-0.key")
	if err := os.WriteFile(sigKeyFile, signer.SigKey, 0o644); err != nil {
		return nil, fmt.Errorf("write the station key file: %w", err)
	}
	fwDir := filepath.Join(state, "firmware")
	current, err := signer.Publish(fwDir, "2.0.6", 0)
	if err != nil {
		return nil, err
	}
	next, err := signer.Publish(fwDir, "2.0.7", 0)
	if err != nil {
		return nil, err
	}
	specs := embedded.FleetSpec(o.Stations, 0, current.Package, signer)
	failing := int(float64(o.Stations)*o.FailShare + 0.5)
	for i := range specs {
		specs[i].Current = &current
		// Spread the failing stations over the fleet.
		if failing > 0 && i%(o.Stations/failing) == o.Stations/failing-1 && i/(o.Stations/failing) < failing {
			specs[i].Behavior.NeverApply = true
		}
	}
	broken, fallBack := misbehave(specs, o.BreakTC, o.FallBack, o.FallBackAfter())
	if err := embedded.Register(hub, specs); err != nil {
		return nil, err
	}

	// 4. The manager: controller and CUPS server, wired as cmd/manager does.
	ctrl.SetLogger(o.Log)
	mgr, err := ctrl.NewManager(cp.Config, ctrl.Options{
		Scheme:                 cp.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Run may be called again in one process (a test of --keep-state).
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, err
	}
	opts := app.DefaultOptions()
	opts.IoTHub.ConnectionStringFile = csFile
	opts.IoTHub.CAFile = hub.CAFile()
	opts.IoTHub.Endpoint = hub.Addr()
	opts.IoTHub.NoRateLimit = true
	opts.Firmware.Dir = fwDir
	opts.CUPS = cups.Options{Addr: o.CUPSAddr, Insecure: true, CacheTTL: o.PollInterval / 2}
	opts.Rollout.StatusResync = 2 * time.Second
	opts.Rollout.TargetResync = 5 * time.Second
	parts, err := app.Setup(mgr, opts)
	if err != nil {
		return nil, err
	}
	defer parts.Registry.Close()
	mgrCtx, stopMgr := context.WithCancel(context.WithoutCancel(ctx))
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(mgrCtx) }()
	defer func() { stopMgr(); <-mgrDone }()

	// 5. The stations, with the packages they had when the last run stopped.
	cupsURI := "http://" + o.CUPSAddr
	packages := loadPackages(filepath.Join(state, "stations.json"))
	for i := range specs {
		if p, ok := packages[embedded.DeviceID(specs[i].EUI)]; ok {
			specs[i].Package = p
		}
	}
	stations := embedded.Stations(specs, cupsURI)
	sched := o.Schedule()
	fleet := stationsim.NewFleet(stations, stationsim.FleetOptions{Interval: o.PollInterval, Schedule: sched})
	fleetCtx, stopFleet := context.WithCancel(context.WithoutCancel(ctx))
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- fleet.Run(fleetCtx) }()
	defer func() {
		stopFleet()
		<-fleetDone
		savePackages(filepath.Join(state, "stations.json"), stations)
	}()

	dashboard := ""
	if o.DashboardAddr != "" {
		u, stopDashboard, err := startDashboard(ctx, o.DashboardAddr, kubeconfig, o.Namespace,
			[]string{"--iothub-connection-string-file", csFile, "--iothub-ca-file", hub.CAFile(), "--iothub-endpoint", hub.Addr()})
		if err != nil {
			say("warning: no dashboard: %v (choose another address with --dashboard-addr)", err)
		} else {
			defer stopDashboard()
			dashboard = u
		}
	}

	say("")
	say("stationfleet embedded default is up:")
	if dashboard != "" {
		say("  dashboard:        %s   (live rollouts in the browser)", dashboard)
	}
	say("  kubectl:          export KUBECONFIG=%s   (kubectl is bin/kubectl)", kubeconfig)
	say("  CUPS (plain HTTP): %s/update-info", cupsURI)
	say("  IoT Hub emulator: hub %s listening on %s, connection string in %s, CA %s", hub.HostName(), hub.Addr(), csFile, hub.CAFile())
	say("  firmware:         %s (signing key %s, keyChecksum %d)", fwDir, filepath.Join(state, "keys", "sig-0.pem"), signer.CRC)
	say("  station key file: %s (key CRC %d): a station needs it as sig-0.key to verify the firmware", sigKeyFile, signer.CRC)
	say("  stations:         %d checking in every %s (a real station: every 24h), %d of them never apply updates", o.Stations, o.PollInterval, failing)
	say("")
	say("  enroll a real Basics Station (plain HTTP, no credential; use --cups-addr 0.0.0.0:5002 and the machine's address for a gateway on the network):")
	say("    go run ./cmd/stationfleet station add EUI --cups-uri %s --sig-key %s --tag ring=prod \\", cupsURI, sigKeyFile)
	say("      --iothub-connection-string-file %s --iothub-ca-file %s --iothub-endpoint %s --out station-home", csFile, hub.CAFile(), hub.Addr())
	say("    then copy station-home/* into the station's home directory and start it")
	say("")

	// 6. The sample rollout; with --analysis, Prometheus first.
	sample, promURL := SampleFile, ""
	if o.Analysis {
		url, stopAnalysis, err := startAnalysis(ctx, stations, next.Package, o.Degrade)
		if err != nil {
			return nil, err
		}
		defer stopAnalysis()
		sample, promURL = AnalysisSampleFile, url
		say("Prometheus:         %s scrapes the stations' network-server metrics every second; stations on %s forward %.0f%% of their uplinks", url, next.Package, o.Degrade*100)
	}
	name, err := applySample(ctx, kc, root, sample, o.Namespace, next, o.bakeTime(), promURL)
	if err != nil {
		return nil, err
	}
	say("applied %s (FirmwareRollout %s/%s: package %s to every ring=prod station, bakeTime %s)", sample, o.Namespace, name, next.Package, o.bakeTime())
	say("")
	say("health after the update (the stations follow a real station's poll schedule at 1/%.0f: R = %s):",
		float64(time.Minute)/float64(sched.Resync), sched.Resync)
	say("  a station that reports %s is baking (InProgress, BAKING in `kubectl get fwr -o wide`) for %s, then Updated", next.Package, o.bakeTime())
	for _, id := range broken {
		say("  %s: the update breaks its network-server connection (rejected): it comes back to CUPS every %s -> Failed Unhealthy", id, sched.Resync)
	}
	for _, id := range fallBack {
		say("  %s: its firmware falls back to %s %s after reporting %s -> Failed RolledBack", id, current.Package, o.FallBackAfter(), next.Package)
	}
	say("  watch: KUBECONFIG=%s bin/kubectl get fwr %s -n %s -o wide -w", kubeconfig, name, o.Namespace)
	say("")

	// 7. Follow it with the CLI's own status display.
	res = &Result{Kubeconfig: kubeconfig}
	cliOpts := cli.Options{Streams: genericiooptions.IOStreams{In: os.Stdin, Out: o.Out, ErrOut: o.Out}}
	cli.Execute(ctx, cliOpts, []string{"status", name, "-w", "--interval", "1s", "--kubeconfig", kubeconfig, "-n", o.Namespace})
	if ctx.Err() == nil {
		final := &fwv1.FirmwareRollout{}
		if err := kc.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: name}, final); err == nil {
			res.Rollout = final
			say("")
			say("the rollout ended %s: %d of %d stations updated, %d failed", final.Status.Phase, final.Status.Updated, final.Status.Targets, final.Status.Failed)
			for _, f := range final.Status.Failures {
				say("  %s failed: %s: %s", f.DeviceID, f.Reason, f.Message)
			}
		}
		if !o.ExitWhenDone {
			say("")
			say("still running: apply your own rollouts with KUBECONFIG=%s bin/kubectl apply -f ...; press Ctrl-C to stop.", kubeconfig)
			if dashboard != "" {
				say("the dashboard: %s", dashboard)
			}
			<-ctx.Done()
		}
	}
	say("stopping...")
	return res, nil
}

// misbehave picks the stations whose update breaks their network-server
// connection and those whose firmware falls back, from a third and two
// thirds into the fleet on (never the first station, the canary, nor one
// that never applies), and returns their device ids.
func misbehave(specs []embedded.StationSpec, breakTC, fallBack int, after time.Duration) (broken, fellBack []string) {
	n := len(specs)
	free := func(i int) bool {
		b := specs[i].Behavior
		return i > 0 && !b.NeverApply && b.TCAfterUpdate == "" && b.FallBackAfter == 0
	}
	pick := func(start, count int, set func(*stationsim.Behavior)) []string {
		var ids []string
		for k := 0; k < n && len(ids) < count; k++ {
			if i := (start + k) % n; free(i) {
				set(&specs[i].Behavior)
				ids = append(ids, embedded.DeviceID(specs[i].EUI))
			}
		}
		return ids
	}
	broken = pick(n/3, breakTC, func(b *stationsim.Behavior) { b.TCAfterUpdate = stationsim.TCRejected })
	fellBack = pick(2*n/3, fallBack, func(b *stationsim.Behavior) { b.FallBackAfter = after })
	return broken, fellBack
}

// applySample creates the sample rollout with this run's firmware and bake
// time, unless a rollout of that name exists already (a --keep-state run).
func applySample(ctx context.Context, c client.Client, root, file, ns string, fw embedded.Firmware, bake time.Duration, promURL string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return "", err
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &u.Object); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	u.SetNamespace(ns)
	for k, v := range map[string]any{"package": fw.Package, "url": fw.URL, "signature": fw.Signature, "keyChecksum": int64(fw.KeyChecksum)} {
		if err := unstructured.SetNestedField(u.Object, v, "spec", "firmware", k); err != nil {
			return "", err
		}
	}
	if err := unstructured.SetNestedField(u.Object, bake.String(), "spec", "strategy", "bakeTime"); err != nil {
		return "", err
	}
	if promURL != "" {
		if err := setPrometheus(u, promURL); err != nil {
			return "", err
		}
	}
	if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("apply %s: %w", file, err)
	}
	return u.GetName(), nil
}

func loadPackages(path string) map[string]string {
	out := map[string]string{}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

func savePackages(path string, stations []*stationsim.Station) {
	out := map[string]string{}
	for _, s := range stations {
		out[embedded.DeviceID(s.EUI())] = strings.TrimSpace(s.Package())
	}
	b, _ := json.MarshalIndent(out, "", " ")
	_ = os.WriteFile(path, b, 0o600)
}
