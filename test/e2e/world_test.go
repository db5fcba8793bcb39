package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/firmware/azblob"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// pollInterval is how often the simulated stations poll CUPS: real stations
// poll daily, these a few times a second so a rollout takes seconds.
const pollInterval = 150 * time.Millisecond

// firmwareContainer is the Azurite container the firmware is uploaded to.
const firmwareContainer = "firmware"

// Package versions: the stations start on oldPackage, rollouts bring newPackage.
const (
	oldPackage = "2.0.6"
	newPackage = "2.0.7"
)

// world is one test's stationfleet, assembled as an operator would: the
// shared API server, an IoT Hub emulator of its own, Azurite holding a
// signed firmware, the manager binary as a separate process configured only
// by flags and files, and simulated stations polling its CUPS server.
//
// The manager watches every namespace (it has no flag to watch fewer), so
// each world has its own hub and tags its stations e2e=<unique value>:
// another test's rollout can never select them. Rollouts are deleted, while
// the manager still runs, in the test's cleanup.
type world struct {
	t *testing.T
	// ns is the test's namespace.
	ns string
	// tag is the value of the e2e twin tag of this world's stations.
	tag string
	hub *hubsim.Server
	// reg reads twins through the real IoT Hub client.
	reg    *iothub.Client
	blob   *azurite.Azurite
	signer *embedded.Signer
	// old is the firmware every twin desires at start, new the one rollouts
	// bring; both live in Azurite (azblob:// URLs).
	old, new embedded.Firmware
	specs    []embedded.StationSpec
	stations []*stationsim.Station
	mgr      *manager
	// args are the manager's flags (newManager adds its own) without
	// worldOptions.managerArgs, for a test that starts another manager on
	// the same hub and firmware.
	args []string
}

// worldOptions shape a world.
type worldOptions struct {
	// stations is the fleet size.
	stations int
	// tweak, when set, changes a station's spec before it is registered.
	tweak func(i int, sp *embedded.StationSpec)
	// managerArgs are extra manager flags.
	managerArgs []string
	// checkIn, when set, replaces pollInterval as the stations' regular
	// check-in (CUPS_OKSYNC_INTV); schedule is the rest of their poll
	// schedule (see stationsim.FleetOptions).
	checkIn  time.Duration
	schedule stationsim.Schedule
	// onResult, when set, is called after every poll of every station.
	onResult func(*stationsim.Station, stationsim.Result)
}

// newWorld builds and starts a world: n stations on 2.0.6 whose twins
// desire the complete signed 2.0.6 firmware, and a signed 2.0.7 in Azurite.
func newWorld(t *testing.T, o worldOptions) *world {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	dir := t.TempDir()
	w := &world{t: t, ns: testEnv.Namespace(t), tag: uniqueTag(t)}

	w.hub = hubsim.Start(t, hubsim.Options{})
	w.blob = azurite.Start(t)
	g.Expect(w.blob.CreateContainer(ctx, firmwareContainer)).To(Succeed())

	var err error
	w.signer, err = embedded.LoadOrCreateSigner(filepath.Join(dir, "keys", "sig-0.pem"))
	g.Expect(err).NotTo(HaveOccurred())
	w.old = w.publish(filepath.Join(dir, "fw"), oldPackage)
	w.new = w.publish(filepath.Join(dir, "fw"), newPackage)

	w.specs = embedded.FleetSpec(o.stations, 0, oldPackage, w.signer)
	for i := range w.specs {
		w.specs[i].Tags["e2e"] = w.tag
		w.specs[i].Current = &w.old
		if o.tweak != nil {
			o.tweak(i, &w.specs[i])
		}
	}
	g.Expect(embedded.Register(w.hub, w.specs)).To(Succeed())
	w.reg, err = iothub.New(w.hub.ConnectionString(), iothub.WithCAFile(w.hub.CAFile()), iothub.WithEndpoint(w.hub.Addr()), iothub.WithoutRateLimits())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = w.reg.Close() })

	// The manager gets its secrets from files, as from mounted Secrets.
	secrets := filepath.Join(dir, "secrets")
	g.Expect(os.MkdirAll(secrets, 0o700)).To(Succeed())
	csFile := filepath.Join(secrets, "iothub-connection-string")
	g.Expect(os.WriteFile(csFile, []byte(w.hub.ConnectionString()+"\n"), 0o600)).To(Succeed())
	keyFile := filepath.Join(secrets, "azblob-account-key")
	g.Expect(os.WriteFile(keyFile, []byte(azurite.AccountKey+"\n"), 0o600)).To(Succeed())
	args := append([]string{
		"--iothub-connection-string-file=" + csFile,
		"--iothub-ca-file=" + w.hub.CAFile(),
		"--iothub-endpoint=" + w.hub.Addr(),
		"--iothub-no-rate-limit",
		"--iothub-page-size=25", // several query pages per rollout
		"--azblob-account=" + azurite.Account,
		"--azblob-endpoint=" + w.blob.Endpoint,
		"--azblob-auth=shared-key",
		"--azblob-account-key-file=" + keyFile,
		"--cups-insecure",
		"--cups-twin-cache-ttl=100ms",
		"--rollout-status-resync=1s",
		"--rollout-target-resync=1s",
	}, o.managerArgs...)
	w.args = args[: len(args)-len(o.managerArgs) : len(args)-len(o.managerArgs)]
	w.mgr = newManager(t, args...)
	w.mgr.start()

	w.stations = embedded.Stations(w.specs, w.mgr.cupsURL())
	checkIn := pollInterval
	if o.checkIn > 0 {
		checkIn = o.checkIn
	}
	fleet := stationsim.NewFleet(w.stations, stationsim.FleetOptions{Interval: checkIn, Schedule: o.schedule, Workers: 64, OnResult: o.onResult})
	fleetCtx, stopFleet := context.WithCancel(ctx)
	fleetDone := make(chan struct{})
	go func() { _ = fleet.Run(fleetCtx); close(fleetDone) }()
	t.Cleanup(func() { stopFleet(); <-fleetDone })

	// Cleanups run last-registered first: report, then delete the rollouts
	// while the manager still runs to finalize them, then stop the rest.
	t.Cleanup(w.deleteRollouts)
	t.Cleanup(w.reportOnFailure)
	return w
}

// publish signs a firmware for version with the project's signing code and
// uploads it to Azurite, returning the values a rollout names.
func (w *world) publish(dir, version string) embedded.Firmware {
	w.t.Helper()
	g := NewWithT(w.t)
	fw, err := w.signer.Publish(dir, version, 0)
	g.Expect(err).NotTo(HaveOccurred())
	opts := azblob.DefaultOptions()
	opts.Account, opts.Endpoint, opts.AccountKey, opts.Auth = azurite.Account, w.blob.Endpoint, azurite.AccountKey, azblob.AuthSharedKey
	store, err := azblob.New(opts)
	g.Expect(err).NotTo(HaveOccurred())
	f, err := os.Open(fw.Path)
	g.Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	fw.URL = fmt.Sprintf("azblob://%s/basicstation/%s/update.bin", firmwareContainer, version)
	_, err = store.Upload(context.Background(), fw.URL, f, firmware.UploadOptions{})
	g.Expect(err).NotTo(HaveOccurred(), "upload %s", fw.URL)
	fw.Path = ""
	return fw
}

// uniqueTag returns a tag value naming the test, unique across runs.
func uniqueTag(t *testing.T) string {
	s := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(s) > 80 {
		s = s[:80]
	}
	return s + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// rollout returns a rollout of 2.0.7 to every station of the world, in
// steps (one batch of 100% when none), with a one-minute progress deadline
// and two update attempts per station.
func (w *world) rollout(name string, steps ...fwv1.RolloutStep) *fwv1.FirmwareRollout {
	if len(steps) == 0 {
		steps = []fwv1.RolloutStep{batch("100%")}
	}
	return &fwv1.FirmwareRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
		Spec: fwv1.FirmwareRolloutSpec{
			Firmware: fwv1.FirmwareSpec{Package: w.new.Package, URL: w.new.URL, Signature: w.new.Signature, KeyChecksum: int64(w.new.KeyChecksum)},
			Selector: fwv1.StationSelector{Tags: map[string]string{"e2e": w.tag}},
			Strategy: fwv1.RolloutStrategy{Steps: steps, ProgressDeadline: &metav1.Duration{Duration: time.Minute}, MaxUpdateAttempts: ptr.To[int32](2)},
		},
	}
}

// create creates r through the API server.
func (w *world) create(r *fwv1.FirmwareRollout) {
	w.t.Helper()
	NewWithT(w.t).Expect(testEnv.Client.Create(context.Background(), r)).To(Succeed())
}

// get reads the rollout name.
func (w *world) get(name string) *fwv1.FirmwareRollout {
	w.t.Helper()
	r := &fwv1.FirmwareRollout{}
	if err := testEnv.Client.Get(context.Background(), client.ObjectKey{Namespace: w.ns, Name: name}, r); err != nil {
		w.t.Fatalf("get rollout %s/%s: %v", w.ns, name, err)
	}
	return r
}

// patch changes the rollout name with a merge patch, as kubectl patch does.
func (w *world) patch(name string, mutate func(r *fwv1.FirmwareRollout)) {
	w.t.Helper()
	r := w.get(name)
	base := r.DeepCopy()
	mutate(r)
	NewWithT(w.t).Expect(testEnv.Client.Patch(context.Background(), r, client.MergeFrom(base))).To(Succeed())
}

// waitPhase waits until the rollout reaches phase and returns it.
func (w *world) waitPhase(name string, phase fwv1.RolloutPhase, timeout time.Duration) *fwv1.FirmwareRollout {
	w.t.Helper()
	var r *fwv1.FirmwareRollout
	NewWithT(w.t).Eventually(func() fwv1.RolloutPhase {
		r = w.get(name)
		return r.Status.Phase
	}, timeout, 100*time.Millisecond).Should(Equal(phase), func() string {
		return fmt.Sprintf("rollout %s/%s never reached %s; status: %s", w.ns, name, phase, statusString(r))
	})
	return r
}

// id is station i's device id.
func (w *world) id(i int) string { return embedded.DeviceID(w.specs[i].EUI) }

// twinOf reads station i's twin through the real IoT Hub client.
func (w *world) twinOf(i int) *twin.Twin {
	w.t.Helper()
	tw, err := w.reg.Get(context.Background(), w.id(i))
	if err != nil {
		w.t.Fatalf("get twin %s: %v", w.id(i), err)
	}
	return tw
}

// firmwareOf returns f as the four twin fields.
func firmwareOf(f embedded.Firmware) twin.Firmware {
	crc := f.KeyChecksum
	return twin.Firmware{Package: f.Package, URL: f.URL, Signature: f.Signature, KeyChecksum: &crc}
}

// expectWrittenOnce asserts that the rollout wrote each of the want
// stations' twins exactly once and no other twin.
func (w *world) expectWrittenOnce(g Gomega, r *fwv1.FirmwareRollout, want int) {
	w.t.Helper()
	writes := w.hub.RolloutWrites(string(r.UID))
	g.Expect(writes).To(HaveLen(want), "stations written by rollout %s", r.Name)
	for id, n := range writes {
		g.Expect(n).To(Equal(1), "station %s written %d times by rollout %s", id, n, r.Name)
	}
}

// deleteRollouts deletes the world's rollouts and waits until the manager
// has finalized them, so no later test's manager finds them.
func (w *world) deleteRollouts() {
	ctx := context.Background()
	var list fwv1.FirmwareRolloutList
	if err := testEnv.Client.List(ctx, &list, client.InNamespace(w.ns)); err != nil {
		w.t.Errorf("list rollouts: %v", err)
		return
	}
	for i := range list.Items {
		r := &list.Items[i]
		if err := testEnv.Client.Delete(ctx, r); client.IgnoreNotFound(err) != nil {
			w.t.Errorf("delete rollout %s: %v", r.Name, err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, r := range list.Items {
		for {
			err := testEnv.Client.Get(ctx, client.ObjectKeyFromObject(&r), &fwv1.FirmwareRollout{})
			if err != nil {
				break
			}
			if time.Now().After(deadline) || !w.mgr.running() {
				// Not finalized: report it, and remove the finalizers so
				// that it cannot reach another test's manager.
				w.t.Errorf("rollout %s/%s not finalized within 15s of its deletion (manager running: %v)", w.ns, r.Name, w.mgr.running())
				cur := &fwv1.FirmwareRollout{}
				if testEnv.Client.Get(ctx, client.ObjectKeyFromObject(&r), cur) == nil {
					base := cur.DeepCopy()
					cur.Finalizers = nil
					_ = testEnv.Client.Patch(ctx, cur, client.MergeFrom(base))
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// reportOnFailure prints, when the test failed, each rollout's status and
// the tail of the manager's log.
func (w *world) reportOnFailure() {
	if !w.t.Failed() {
		return
	}
	var list fwv1.FirmwareRolloutList
	if err := testEnv.Client.List(context.Background(), &list, client.InNamespace(w.ns)); err != nil {
		w.t.Logf("list rollouts: %v", err)
	}
	for i := range list.Items {
		r := &list.Items[i]
		w.t.Logf("rollout %s/%s (generation %d): %s", r.Namespace, r.Name, r.Generation, statusString(r))
	}
	w.t.Logf("IoT Hub emulator: %d twin writes, %d reads", w.hub.Writes(), w.hub.Reads())
	w.t.Logf("manager log (%d runs), last %d lines:\n%s", w.mgr.p.Runs(), logTailLines, w.mgr.logTail(logTailLines))
}

// batch is a batch step of v stations ("5" or "10%").
func batch(v string) fwv1.RolloutStep {
	b := intstr.Parse(v)
	return fwv1.RolloutStep{Batch: &b}
}

// pauseUntilResumed is a pause step without a duration.
func pauseUntilResumed() fwv1.RolloutStep {
	return fwv1.RolloutStep{Pause: &fwv1.PauseStep{}}
}

// statusString renders a rollout's status for failure messages.
func statusString(r *fwv1.FirmwareRollout) string {
	if r == nil {
		return "<none>"
	}
	s := r.Status
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s step=%d targets=%d pending=%d inProgress=%d updated=%d failed=%d skipped=%d progress=%q observedGeneration=%d",
		s.Phase, s.CurrentStep, s.Targets, s.Pending, s.InProgress, s.Updated, s.Failed, s.Skipped, s.Progress, s.ObservedGeneration)
	for _, c := range s.Conditions {
		fmt.Fprintf(&b, "\n  condition %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
	}
	for _, bt := range s.Batches {
		fmt.Fprintf(&b, "\n  batch step=%d size=%d updated=%d failed=%d", bt.Step, bt.Size, bt.Updated, bt.Failed)
	}
	for _, f := range s.Failures {
		fmt.Fprintf(&b, "\n  failure %s %s: %s", f.DeviceID, f.Reason, f.Message)
	}
	return b.String()
}
