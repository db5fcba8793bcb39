package controllers_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/app"
	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
	"github.com/stationfleet/stationfleet/internal/testutil/proc"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// testEnv is the real API server the behaviour tests share. It starts with
// the first test that needs it (newWorld calls startEnv), so that the phase
// tests (TestUnit*, fakes only) run in milliseconds without one.
var (
	lazyEnv kubetest.Lazy
	testEnv *kubetest.Env
)

func TestMain(m *testing.M) {
	os.Exit(kubetest.LazyMain(m, &lazyEnv))
}

// startEnv starts the shared API server once, or fails t.
func startEnv(t *testing.T) {
	t.Helper()
	testEnv = lazyEnv.Get(t)
}

// pollInterval is how often simulated stations poll CUPS in these tests.
const pollInterval = 150 * time.Millisecond

// world is one test's stationfleet: the real API server (shared), an IoT Hub
// emulator reached through the real client, a local firmware directory with
// signed firmware, the manager wiring of internal/app (controller and CUPS
// server), and simulated stations polling it.
type world struct {
	t        *testing.T
	ns       string
	hub      *hubsim.Server
	reg      *iothub.Client
	signer   *embedded.Signer
	dir      string
	old, fw  embedded.Firmware
	specs    []embedded.StationSpec
	stations []*stationsim.Station
	cupsAddr string
	csFile   string
	// cfg, when set, is how the manager reaches the API server (default:
	// testEnv.Config, an administrator).
	cfg *rest.Config
	// now, when set, is the clock of the manager (controller and CUPS).
	now func() time.Time
	// statusResync, when set, is the manager's status resync.
	statusResync time.Duration
	pageSize     int

	stopManager  context.CancelFunc
	managerDone  chan error
	stopStations context.CancelFunc
}

// newWorld registers n stations, all on package 2.0.6 whose twins desire the
// signed 2.0.6 firmware, and publishes a signed 2.0.7. tweak may change a
// station's spec before it is registered.
func newWorld(t *testing.T, n int, tweak func(i int, sp *embedded.StationSpec)) *world {
	t.Helper()
	return newWorldWith(t, n, tweak, worldOptions{})
}

// newWorldClock is newWorld with the manager's clock (the reconciler's and
// the CUPS server's) replaced by now; the stations keep the real one.
func newWorldClock(t *testing.T, n int, tweak func(i int, sp *embedded.StationSpec), now func() time.Time) *world {
	t.Helper()
	return newWorldWith(t, n, tweak, worldOptions{now: now})
}

// worldOptions change how newWorldWith builds a world.
type worldOptions struct {
	// now is the manager's clock (nil: time.Now).
	now func() time.Time
	// statusResync is the manager's --rollout-status-resync (default 1s):
	// also how long a pass writes a streamed batch.
	statusResync time.Duration
	// pageSize is the manager's --iothub-page-size (default 1000).
	pageSize int
	// manualPolls leaves the stations to the test, which calls their Poll,
	// instead of a fleet polling every pollInterval.
	manualPolls bool
}

// newWorldWith is newWorld with options.
func newWorldWith(t *testing.T, n int, tweak func(i int, sp *embedded.StationSpec), o worldOptions) *world {
	t.Helper()
	g := NewWithT(t)
	startEnv(t)
	w := &world{t: t, ns: testEnv.Namespace(t), dir: t.TempDir(), now: o.now, statusResync: o.statusResync, pageSize: o.pageSize}
	w.hub = hubsim.Start(t, hubsim.Options{})
	var err error
	w.signer, err = embedded.LoadOrCreateSigner(filepath.Join(w.dir, "keys", "sig-0.pem"))
	g.Expect(err).NotTo(HaveOccurred())
	w.old, err = w.signer.Publish(filepath.Join(w.dir, "fw"), "2.0.6", 0)
	g.Expect(err).NotTo(HaveOccurred())
	w.fw, err = w.signer.Publish(filepath.Join(w.dir, "fw"), "2.0.7", 0)
	g.Expect(err).NotTo(HaveOccurred())

	w.specs = embedded.FleetSpec(n, 0, "2.0.6", w.signer)
	for i := range w.specs {
		w.specs[i].Current = &w.old
		if tweak != nil {
			tweak(i, &w.specs[i])
		}
	}
	g.Expect(embedded.Register(w.hub, w.specs)).To(Succeed())

	w.csFile = filepath.Join(w.dir, "iothub-connection-string")
	g.Expect(os.WriteFile(w.csFile, []byte(w.hub.ConnectionString()), 0o600)).To(Succeed())
	w.reg, err = iothub.New(w.hub.ConnectionString(), iothub.WithCAFile(w.hub.CAFile()), iothub.WithEndpoint(w.hub.Addr()), iothub.WithoutRateLimits(), iothub.WithPageSize(1000))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = w.reg.Close() })

	w.cupsAddr = proc.FreeAddr(t)
	w.startManager()
	if o.manualPolls {
		w.stations = embedded.Stations(w.specs, "http://"+w.cupsAddr)
	} else {
		w.startStations()
	}
	return w
}

// startManager runs the manager exactly as cmd/manager wires it, watching
// only this test's namespace.
func (w *world) startManager() {
	g := NewWithT(w.t)
	cfg := testEnv.Config
	if w.cfg != nil {
		cfg = w.cfg
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testEnv.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{w.ns: {}}},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	g.Expect(err).NotTo(HaveOccurred())
	opts := app.DefaultOptions()
	opts.IoTHub.ConnectionStringFile = w.csFile
	opts.IoTHub.CAFile = w.hub.CAFile()
	opts.IoTHub.Endpoint = w.hub.Addr()
	opts.IoTHub.NoRateLimit = true
	opts.Firmware.Dir = filepath.Join(w.dir, "fw")
	opts.CUPS = cups.Options{Addr: w.cupsAddr, Insecure: true, CacheTTL: 100 * time.Millisecond}
	opts.Rollout.StatusResync = time.Second
	if w.statusResync > 0 {
		opts.Rollout.StatusResync = w.statusResync
	}
	opts.Rollout.TargetResync = time.Second
	if w.pageSize > 0 {
		opts.IoTHub.PageSize = w.pageSize
	}
	opts.Now = w.now
	_, err = app.Setup(mgr, opts)
	g.Expect(err).NotTo(HaveOccurred())

	ctx, cancel := context.WithCancel(context.Background())
	w.stopManager = cancel
	w.managerDone = make(chan error, 1)
	go func() { w.managerDone <- mgr.Start(ctx) }()
	w.t.Cleanup(w.killManager)
	// CUPS answers once the manager runs.
	g.Eventually(func() error {
		c, err := net.Dial("tcp", w.cupsAddr)
		if err == nil {
			c.Close()
		}
		return err
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())
}

// killManager stops the manager and waits for it to return.
func (w *world) killManager() {
	if w.stopManager == nil {
		return
	}
	w.stopManager()
	w.stopManager = nil
	select {
	case <-w.managerDone:
	case <-time.After(30 * time.Second):
		w.t.Error("manager did not stop within 30s")
	}
}

func (w *world) startStations() {
	w.stations = embedded.Stations(w.specs, "http://"+w.cupsAddr)
	fleet := stationsim.NewFleet(w.stations, stationsim.FleetOptions{Interval: pollInterval, Workers: 64})
	ctx, cancel := context.WithCancel(context.Background())
	w.stopStations = cancel
	done := make(chan struct{})
	go func() { _ = fleet.Run(ctx); close(done) }()
	w.t.Cleanup(func() { cancel(); <-done })
}

// rollout returns a rollout of 2.0.7 to every station of the world.
func (w *world) rollout(name string, steps ...fwv1.RolloutStep) *fwv1.FirmwareRollout {
	if len(steps) == 0 {
		steps = []fwv1.RolloutStep{batch("100%")}
	}
	return &fwv1.FirmwareRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
		Spec: fwv1.FirmwareRolloutSpec{
			Firmware: fwv1.FirmwareSpec{Package: w.fw.Package, URL: w.fw.URL, Signature: w.fw.Signature, KeyChecksum: int64(w.fw.KeyChecksum)},
			Selector: fwv1.StationSelector{Tags: map[string]string{"ring": "prod"}},
			Strategy: fwv1.RolloutStrategy{Steps: steps, ProgressDeadline: &metav1.Duration{Duration: time.Minute}, MaxUpdateAttempts: ptr.To[int32](2)},
		},
	}
}

func (w *world) create(r *fwv1.FirmwareRollout) {
	w.t.Helper()
	NewWithT(w.t).Expect(testEnv.Client.Create(context.Background(), r)).To(Succeed())
}

func (w *world) get(name string) *fwv1.FirmwareRollout {
	r := &fwv1.FirmwareRollout{}
	if err := testEnv.Client.Get(context.Background(), client.ObjectKey{Namespace: w.ns, Name: name}, r); err != nil {
		w.t.Fatalf("get rollout %s: %v", name, err)
	}
	return r
}

// waitPhase waits until the rollout reaches phase and returns it.
func (w *world) waitPhase(name string, phase fwv1.RolloutPhase, timeout time.Duration) *fwv1.FirmwareRollout {
	w.t.Helper()
	var r *fwv1.FirmwareRollout
	NewWithT(w.t).Eventually(func() fwv1.RolloutPhase {
		r = w.get(name)
		return r.Status.Phase
	}, timeout, 100*time.Millisecond).Should(Equal(phase), func() string { return "rollout status: " + statusString(r) })
	return r
}

func (w *world) patch(name string, mutate func(r *fwv1.FirmwareRollout)) {
	w.t.Helper()
	r := w.get(name)
	base := r.DeepCopy()
	mutate(r)
	NewWithT(w.t).Expect(testEnv.Client.Patch(context.Background(), r, client.MergeFrom(base))).To(Succeed())
}

// twinOf reads a station's twin through the real client.
func (w *world) twinOf(id string) *twin.Twin {
	w.t.Helper()
	tw, err := w.reg.Get(context.Background(), id)
	if err != nil {
		w.t.Fatalf("get twin %s: %v", id, err)
	}
	return tw
}

func (w *world) id(i int) string { return embedded.DeviceID(w.specs[i].EUI) }

func batch(v string) fwv1.RolloutStep {
	b := intstr.Parse(v)
	return fwv1.RolloutStep{Batch: &b}
}

func pause(d time.Duration) fwv1.RolloutStep {
	if d == 0 {
		return fwv1.RolloutStep{Pause: &fwv1.PauseStep{}}
	}
	return fwv1.RolloutStep{Pause: &fwv1.PauseStep{Duration: &metav1.Duration{Duration: d}}}
}

func statusString(r *fwv1.FirmwareRollout) string {
	if r == nil {
		return "<none>"
	}
	s := r.Status
	out := string(s.Phase) + " step=" + strconv.Itoa(int(s.CurrentStep)) +
		" targets=" + strconv.Itoa(int(s.Targets)) + " pending=" + strconv.Itoa(int(s.Pending)) +
		" inProgress=" + strconv.Itoa(int(s.InProgress)) + " updated=" + strconv.Itoa(int(s.Updated)) +
		" failed=" + strconv.Itoa(int(s.Failed)) + " skipped=" + strconv.Itoa(int(s.Skipped))
	for _, c := range s.Conditions {
		out += "\n  " + c.Type + "=" + string(c.Status) + " " + c.Reason + ": " + c.Message
	}
	return out
}

// configMapWithKey is the ConfigMap `kubectl create configmap NAME
// --from-file=sig-0.key` makes of a station key file (64 raw bytes, so in
// binaryData).
func configMapWithKey(ns, name string, key []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, BinaryData: map[string][]byte{"sig-0.key": key}}
}

func clientKey(r *fwv1.FirmwareRollout) client.ObjectKey { return client.ObjectKeyFromObject(r) }
