package soak

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
	"github.com/stationfleet/stationfleet/internal/testutil/proc"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// soakConfig sizes a soak run.
type soakConfig struct {
	stations int
	// faults is how long the fault schedule runs.
	faults time.Duration
	// settle bounds the wait, after the faults, for every rollout to finish.
	settle time.Duration
	// poll is each station's polling interval.
	poll time.Duration
	// long adds a new overlapping rollout every chaos cycle.
	long bool
}

// configFromEnv reads SOAK_DURATION (the fault phase; unset: the short CI
// run) and SOAK_STATIONS.
func configFromEnv(t *testing.T) soakConfig {
	c := soakConfig{stations: 1000, faults: 50 * time.Second, settle: 2 * time.Minute, poll: 3 * time.Second}
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION: %v", err)
		}
		c.faults, c.long, c.poll, c.settle = d, true, 2*time.Second, 4*time.Minute
	}
	if v := os.Getenv("SOAK_STATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			t.Fatalf("SOAK_STATIONS: want a number >= 100, got %q", v)
		}
		c.stations = n
	}
	return c
}

// world is the soak's stationfleet: the real API server, an IoT Hub emulator
// (in this process, so that faults can be injected and writes counted),
// Azurite holding the firmware, two manager processes with leader election
// each serving CUPS over TLS, and simulated stations split between them.
type world struct {
	t      *testing.T
	cfg    soakConfig
	ns     string
	dir    string
	hub    *hubsim.Server
	reg    *iothub.Client
	blob   *proc.Process
	blobEP string
	signer *embedded.Signer
	fw     map[string]embedded.Firmware // package -> firmware on Azurite
	wrong  *embedded.Signer             // the key a few stations hold instead of the right one
	caDER  []byte

	managers [2]*proc.Process
	cupsAddr [2]string

	stations []*stationsim.Station
	expCred  map[uint64][]byte // EUI -> the cups.key the station must end with
	rotates  map[uint64]bool
	fleet    *stationsim.Fleet

	credViolations atomic.Int64 // a station received a credential that is not its own
	credServed     atomic.Int64
	impostorOK     atomic.Int64 // an impostor got a 200
	impostorPolls  atomic.Int64
	impostorCreds  atomic.Int64

	mu      sync.Mutex
	stLog   *stationLog
	samples sampler

	burnMu   sync.Mutex
	burner   *os.Process // the contention fault's burner, while it runs
	burnHeld bool

	rollouts map[string]*fwv1.FirmwareRollout // name -> as created (UID)
	deleted  map[string]string                // name -> UID of rollouts deleted during the soak
	events   []string
	kills    map[string]int
}

const (
	container   = "firmware"
	basePackage = "2.0.6"
)

func TestSoak(t *testing.T) {
	cfg := configFromEnv(t)
	w := newWorld(t, cfg)
	w.logf("soak: %d stations, faults for %s, polling every %s", cfg.stations, cfg.faults, cfg.poll)
	t.Cleanup(func() {
		if t.Failed() {
			w.dumpOnFailure()
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopFleet := w.runStations(ctx)
	defer stopFleet()

	// A bad firmware (signed with a key the stations do not hold) halts
	// after its first batch and waits for a person all along: every later
	// rollout leaves the stations it wrote and takes the others.
	w.haltedRollout()
	// Several concurrent rollouts with overlapping selectors: half the
	// fleet, the whole fleet, and an explicit list across both halves that
	// is deleted half way through.
	w.createRollout("eu-west", "2.0.7", fwv1.StationSelector{Tags: map[string]string{"region": "eu-west"}}, batch("5%"), batch("50%"), batch("100%"))
	w.createRollout("fleet", "2.0.8", fwv1.StationSelector{Tags: map[string]string{"ring": "prod"}}, batch("10"), pause(3*time.Second), batch("30%"), batch("100%"))
	var ids []string
	for i := 0; i < cfg.stations; i += cfg.stations / 60 {
		ids = append(ids, embedded.DeviceID(embedded.BaseEUI+uint64(i)))
	}
	w.createRollout("listed", "2.0.9", fwv1.StationSelector{DeviceIDs: ids}, batch("100%"))

	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { defer close(sampled); w.sample(sampleCtx, &w.samples) }()
	inj := newInjector(w.hub, cfg.stations)
	faultsDone := make(chan struct{})
	go func() { defer close(faultsDone); inj.run(ctx, cfg.faults) }()
	contended := make(chan struct{})
	go func() { defer close(contended); w.contentionSchedule(ctx, time.Now()) }()
	w.chaos(ctx)
	<-faultsDone
	<-contended
	w.hub.ClearFaults()
	w.logf("faults over; waiting up to %s for the rollouts to finish", cfg.settle)

	w.ensureUp()
	w.waitSettled(cfg.settle)
	stopFleet()
	stopSampling()
	<-sampled
	w.report(inj)
}

func newWorld(t *testing.T, cfg soakConfig) *world {
	t.Helper()
	g := NewWithT(t)
	w := &world{t: t, cfg: cfg, ns: testEnv.Namespace(t), dir: t.TempDir(), fw: map[string]embedded.Firmware{},
		expCred: map[uint64][]byte{}, rotates: map[uint64]bool{}, rollouts: map[string]*fwv1.FirmwareRollout{},
		deleted: map[string]string{}, kills: map[string]int{}, stLog: newStationLog()}
	w.hub = hubsim.Start(t, hubsim.Options{})
	var err error
	w.reg, err = iothub.New(w.hub.ConnectionString(), iothub.WithCAFile(w.hub.CAFile()), iothub.WithEndpoint(w.hub.Addr()), iothub.WithoutRateLimits(), iothub.WithPageSize(1000))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = w.reg.Close() })

	w.blob, w.blobEP = startAzurite(t)
	w.signer, err = embedded.LoadOrCreateSigner(filepath.Join(w.dir, "keys", "sig-0.pem"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, v := range []string{basePackage, "2.0.7", "2.0.8", "2.0.9"} {
		w.publish(v)
	}
	certFile, keyFile, caDER := serverPKI(t, w.dir)
	w.caDER = caDER
	w.registerFleet()
	w.startManagers(certFile, keyFile)
	return w
}

// publish signs an update for version, uploads it to Azurite and records its
// azblob:// URL.
func (w *world) publish(version string) { w.publishWith(w.signer, version) }

// publishWith is publish with the update signed by signer.
func (w *world) publishWith(signer *embedded.Signer, version string) {
	w.t.Helper()
	g := NewWithT(w.t)
	local, err := signer.Publish(filepath.Join(w.dir, "staging"), version, 0)
	g.Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(local.Path)
	g.Expect(err).NotTo(HaveOccurred())
	cred, err := azblob.NewSharedKeyCredential(azurite.Account, azurite.AccountKey)
	g.Expect(err).NotTo(HaveOccurred())
	c, err := azblob.NewClientWithSharedKeyCredential(w.blobEP+"/", cred, nil)
	g.Expect(err).NotTo(HaveOccurred())
	ctx := context.Background()
	_, _ = c.CreateContainer(ctx, container, nil) // exists after the first
	name := "basicstation/" + version + "/update.bin"
	_, err = c.UploadBuffer(ctx, container, name, data, nil)
	g.Expect(err).NotTo(HaveOccurred())
	local.URL = "azblob://" + container + "/" + name
	w.fw[version] = local
}

// registerFleet seeds the twins and builds the simulated stations. Every
// station authenticates with its own bearer token over TLS; every fifth has
// a credential rotation pending (a new token, served as a credential blob
// from the firmware directory); a few refuse to apply updates or hold the
// wrong signing key, so that some outcomes are failures with reasons.
func (w *world) registerFleet() {
	w.t.Helper()
	g := NewWithT(w.t)
	wrong, err := embedded.LoadOrCreateSigner(filepath.Join(w.dir, "keys", "wrong.pem"))
	g.Expect(err).NotTo(HaveOccurred())
	w.wrong = wrong
	credDir := filepath.Join(w.dir, "fw", "creds")
	g.Expect(os.MkdirAll(credDir, 0o755)).To(Succeed())
	w.cupsAddr = [2]string{proc.FreeAddr(w.t), proc.FreeAddr(w.t)}
	base := w.fw[basePackage]
	for i := range w.cfg.stations {
		eui := embedded.BaseEUI + uint64(i)
		id := embedded.DeviceID(eui)
		region := "eu-west"
		if i%2 == 1 {
			region = "us-east"
		}
		tok0, tok1 := tokenLine(), tokenLine()
		cur := stationsim.CredSet{Trust: w.caDER, Key: tok0}
		want := cur
		hashes := []any{tokenHash(tok0)}
		cupsDesired := map[string]any{
			"package": base.Package, "fwUrl": base.URL, "fwSignature": base.Signature, "fwKeyChecksum": base.KeyChecksum,
		}
		if i%5 == 0 {
			want = stationsim.CredSet{Trust: w.caDER, Key: tok1}
			blob := append(append(append([]byte{}, w.caDER...), 0, 0, 0, 0), tok1...)
			path := filepath.Join(credDir, id+".bin")
			g.Expect(os.WriteFile(path, blob, 0o644)).To(Succeed())
			cupsDesired["cupsCredCrc"] = want.CRC()
			cupsDesired["cupsCredentialUrl"] = "file://" + filepath.ToSlash(path)
			hashes = append(hashes, tokenHash(tok1))
			w.rotates[eui] = true
		} else {
			cupsDesired["cupsCredCrc"] = cur.CRC()
		}
		w.expCred[eui] = want.Key
		tags := map[string]any{"region": region, "ring": "prod", "stationfleet": map[string]any{"tokens": hashes}}
		g.Expect(w.hub.Seed(id, tags, map[string]any{twin.DesiredCUPS: cupsDesired})).To(Succeed())

		keys := [][]byte{w.signer.SigKey}
		var behavior stationsim.Behavior
		switch {
		case i%97 == 5:
			behavior.NeverApply = true
		case i%89 == 7:
			keys = [][]byte{wrong.SigKey}
		}
		st := stationsim.State{EUI: eui, CUPSURI: "https://" + w.cupsAddr[replicaOf(i)], CUPSCred: cur,
			Package: base.Package, SigKeys: keys}
		w.stations = append(w.stations, stationsim.New(st, stationsim.WithBehavior(behavior), stationsim.WithTimeout(10*time.Second)))
	}
}

// replicaOf is the manager whose CUPS port station i polls: the two
// replicas each serve half of both regions.
func replicaOf(i int) int { return (i / 2) % 2 }

func tokenLine() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return []byte("Authorization: Bearer " + hex.EncodeToString(b) + "\r\n")
}

// tokenHash is the twin's tags.stationfleet.tokens entry for a token line.
func tokenHash(line []byte) string {
	tok := strings.TrimSpace(strings.TrimPrefix(string(line), "Authorization: Bearer "))
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// startManagers runs two manager replicas with leader election, each with
// its own CUPS port.
func (w *world) startManagers(certFile, keyFile string) {
	w.t.Helper()
	csFile := filepath.Join(w.dir, "iothub-connection-string")
	NewWithT(w.t).Expect(os.WriteFile(csFile, []byte(w.hub.ConnectionString()), 0o600)).To(Succeed())
	keyFileBlob := filepath.Join(w.dir, "azurite-key")
	NewWithT(w.t).Expect(os.WriteFile(keyFileBlob, []byte(azurite.AccountKey), 0o600)).To(Succeed())
	for i := range w.managers {
		probe := proc.FreeAddr(w.t)
		cups := w.cupsAddr[i]
		args := []string{
			"--kubeconfig=" + kubeconfigPath,
			"--leader-elect", "--leader-election-namespace=" + w.ns,
			"--metrics-bind-address=0", "--health-probe-bind-address=" + probe,
			"--iothub-connection-string-file=" + csFile, "--iothub-ca-file=" + w.hub.CAFile(), "--iothub-endpoint=" + w.hub.Addr(), "--iothub-no-rate-limit",
			"--firmware-dir=" + filepath.Join(w.dir, "fw"),
			"--azblob-account=" + azurite.Account, "--azblob-endpoint=" + w.blobEP, "--azblob-auth=shared-key",
			"--azblob-account-key-file=" + keyFileBlob, "--azblob-retry-delay=100ms", "--azblob-max-retry-delay=500ms",
			"--cups-bind-address=" + cups, "--cups-tls-cert-file=" + certFile, "--cups-tls-key-file=" + keyFile,
			"--cups-twin-cache-ttl=1s",
			"--rollout-status-resync=2s", "--rollout-target-resync=2s", "--rollout-preflight-retry=2s",
		}
		name := "manager-" + string(rune('a'+i))
		w.managers[i] = proc.New(w.t, name, managerBin, args, func() bool {
			return proc.HTTPOK("http://"+probe+"/readyz") && proc.TCPOpen(cups)
		})
		w.managers[i].Start()
	}
}

// startAzurite runs azurite-blob on a fixed port and data directory, so it
// can be killed and started again as the same storage account.
func startAzurite(t testing.TB) (*proc.Process, string) {
	t.Helper()
	bin, err := azurite.Binary()
	if err != nil {
		t.Fatalf("azurite: %v (install it with `make azurite`)", err)
	}
	addr := proc.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	endpoint := "http://" + addr + "/" + azurite.Account
	p := proc.New(t, "azurite", bin, []string{
		"--blobHost", "127.0.0.1", "--blobPort", port, "--location", t.TempDir(),
		"--skipApiVersionCheck", "--loose", "--silent",
	}, func() bool { return proc.HTTPAnswers(endpoint + "?comp=list") })
	p.Start()
	return p, endpoint
}

// runStations polls CUPS with the fleet and with a few impostors (a station
// with a valid token claiming another station's EUI) until the returned
// func is called.
func (w *world) runStations(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	w.fleet = stationsim.NewFleet(w.stations, stationsim.FleetOptions{Interval: w.cfg.poll, Workers: 64,
		OnResult: func(s *stationsim.Station, r stationsim.Result) {
			w.stLog.record(s, r)
			if !r.CUPSCredChanged {
				return
			}
			w.credServed.Add(1)
			if got := s.State().CUPSCred.Key; string(got) != string(w.expCred[s.EUI()]) {
				w.credViolations.Add(1)
				w.logf("VIOLATION: station %016X received a credential that is not its own", s.EUI())
			}
		}})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.fleet.Run(ctx) }()

	// Impostors: station k's valid token, station k+1's EUI (one that
	// rotates, so it has a credential to steal).
	for k := range 8 {
		victim := 5*(2*k+1) + 5 // a multiple of 5: a station with a credential pending
		thief := victim - 1
		st := w.stations[victim].State()
		st.CUPSCred = stationsim.CredSet{Trust: w.caDER, Key: w.stations[thief].State().CUPSCred.Key}
		// Not the victim's own backup set: the impostor has only the stolen token.
		st.Backup, st.BackupDone = stationsim.CUPSSet{}, false
		imp := stationsim.New(st, stationsim.WithTimeout(10*time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r := imp.Poll(ctx)
				if ctx.Err() != nil {
					return
				}
				w.impostorPolls.Add(1)
				if r.StatusCode == 200 {
					w.impostorOK.Add(1)
				}
				if r.CUPSCredChanged {
					w.impostorCreds.Add(1)
				}
				select {
				case <-ctx.Done():
				case <-time.After(w.cfg.poll):
				}
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }
}

// createRollout creates a rollout of the firmware pkg (published on first
// use).
func (w *world) createRollout(name, pkg string, sel fwv1.StationSelector, steps ...fwv1.RolloutStep) {
	w.t.Helper()
	w.createRolloutLimit(name, pkg, sel, intstr.FromString("10%"), steps...)
}

// createRolloutLimit is createRollout with maxFailures.
func (w *world) createRolloutLimit(name, pkg string, sel fwv1.StationSelector, maxFailures intstr.IntOrString, steps ...fwv1.RolloutStep) {
	w.t.Helper()
	if _, ok := w.fw[pkg]; !ok {
		w.publish(pkg)
	}
	fw := w.fw[pkg]
	r := &fwv1.FirmwareRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
		Spec: fwv1.FirmwareRolloutSpec{
			Firmware: fwv1.FirmwareSpec{Package: fw.Package, URL: fw.URL, Signature: fw.Signature, KeyChecksum: int64(fw.KeyChecksum)},
			Selector: sel,
			Strategy: fwv1.RolloutStrategy{Steps: steps, MaxFailures: ptr.To(maxFailures),
				ProgressDeadline: &metav1.Duration{Duration: 2 * time.Minute}, MaxUpdateAttempts: ptr.To[int32](2)},
		},
	}
	NewWithT(w.t).Expect(testEnv.Client.Create(context.Background(), r)).To(Succeed())
	w.mu.Lock()
	w.rollouts[name] = r
	w.mu.Unlock()
	w.logf("created rollout %s (%s)", name, pkg)
}

func batch(v string) fwv1.RolloutStep {
	b := intstr.Parse(v)
	return fwv1.RolloutStep{Batch: &b}
}

func pause(d time.Duration) fwv1.RolloutStep {
	return fwv1.RolloutStep{Pause: &fwv1.PauseStep{Duration: &metav1.Duration{Duration: d}}}
}

// chaos runs the process-level faults on a timeline: kill the follower, an
// Azurite outage, delete a rollout, kill the leader, kill the follower
// again. The long soak repeats the cycle and adds a rollout each time.
func (w *world) chaos(ctx context.Context) {
	const cycle = 50 * time.Second
	start := time.Now()
	at := func(d time.Duration) bool {
		wait := time.Until(start.Add(d))
		if wait > 0 {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(wait):
			}
		}
		return time.Since(start) < w.cfg.faults+time.Second
	}
	for n := 0; ; n++ {
		c := time.Duration(n) * cycle
		if n > 0 {
			if !at(c) {
				return
			}
			w.createRollout(fmt.Sprintf("wave-%d", n), fmt.Sprintf("3.0.%d", n), fwv1.StationSelector{Tags: map[string]string{"ring": "prod"}},
				batch("20%"), batch("100%"))
		}
		if !at(c + 5*time.Second) {
			return
		}
		w.killFollower(time.Second)
		if !at(c + 12*time.Second) {
			return
		}
		w.azuriteOutage(4 * time.Second)
		if n == 0 {
			if !at(c + 20*time.Second) {
				return
			}
			w.deleteRollout("listed")
		}
		if !at(c + 22*time.Second) {
			return
		}
		w.killLeader()
		if !at(c + 40*time.Second) {
			return
		}
		w.killFollower(time.Second)
		if !w.cfg.long {
			return
		}
	}
}

func (w *world) leader() int {
	for i, m := range w.managers {
		if m.Alive() && bytes.Contains(m.CurrentLog(), []byte("Successfully acquired lease")) {
			return i
		}
	}
	return -1
}

func (w *world) killFollower(down time.Duration) {
	l := w.leader()
	f := 0
	if l == 0 {
		f = 1
	}
	w.logf("SIGKILL %s (follower; leader is %d), restart in %s", w.managers[f].Name, l, down)
	w.managers[f].Kill()
	w.count("manager SIGKILL (follower)")
	time.Sleep(down)
	w.managers[f].Start()
}

func (w *world) killLeader() {
	l := w.leader()
	if l < 0 {
		w.logf("no leader to kill yet; killing manager-a")
		l = 0
	}
	w.logf("SIGKILL %s (leader), restart at once", w.managers[l].Name)
	w.managers[l].Kill()
	w.count("manager SIGKILL (leader)")
	w.managers[l].Start()
}

func (w *world) azuriteOutage(down time.Duration) {
	w.logf("SIGKILL Azurite (outage of %s)", down)
	w.blob.Kill()
	w.count("Azurite outage (SIGKILL + restart)")
	time.Sleep(down)
	release := w.holdContention()
	defer release()
	w.blob.Start()
}

func (w *world) deleteRollout(name string) {
	w.mu.Lock()
	r := w.rollouts[name]
	w.deleted[name] = string(r.UID)
	delete(w.rollouts, name)
	w.mu.Unlock()
	w.logf("deleting rollout %s", name)
	NewWithT(w.t).Expect(testEnv.Client.Delete(context.Background(), r.DeepCopy())).To(Succeed())
	w.count("rollout deleted mid-soak")
}

func (w *world) count(what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.kills[what]++
}

// ensureUp restarts whatever the chaos left down.
func (w *world) ensureUp() {
	if !w.blob.Alive() {
		w.blob.Start()
	}
	for _, m := range w.managers {
		if !m.Alive() {
			w.logf("%s had exited; log tail:\n%s", m.Name, m.LogTail(30))
			m.Start()
		}
	}
}

// waitSettled waits until the deleted rollouts are gone and every rollout
// is Completed, Halted or Aborted with no station in flight.
func (w *world) waitSettled(timeout time.Duration) {
	w.t.Helper()
	g := NewWithT(w.t)
	g.Eventually(func() error {
		ctx := context.Background()
		for name := range w.deleted {
			var r fwv1.FirmwareRollout
			if err := testEnv.Client.Get(ctx, client.ObjectKey{Namespace: w.ns, Name: name}, &r); err == nil {
				return fmt.Errorf("deleted rollout %s still exists (finalizer %v)", name, r.Finalizers)
			}
		}
		for name := range w.rollouts {
			r := w.get(name)
			switch r.Status.Phase {
			case fwv1.PhaseCompleted, fwv1.PhaseAborted:
			case fwv1.PhaseHalted:
				if r.Status.InProgress > 0 {
					return fmt.Errorf("rollout %s halted with %d in progress", name, r.Status.InProgress)
				}
			default:
				return fmt.Errorf("rollout %s: %s", name, statusLine(r))
			}
		}
		return nil
	}, timeout, time.Second).Should(Succeed(), func() string { return w.statuses() })
}

func (w *world) get(name string) *fwv1.FirmwareRollout {
	var r fwv1.FirmwareRollout
	if err := testEnv.Client.Get(context.Background(), client.ObjectKey{Namespace: w.ns, Name: name}, &r); err != nil {
		w.t.Fatalf("get rollout %s: %v", name, err)
	}
	return &r
}

func statusLine(r *fwv1.FirmwareRollout) string {
	s := r.Status
	return fmt.Sprintf("%s step=%d targets=%d pending=%d inProgress=%d updated=%d failed=%d skipped=%d",
		s.Phase, s.CurrentStep, s.Targets, s.Pending, s.InProgress, s.Updated, s.Failed, s.Skipped)
}

func (w *world) statuses() string {
	var b strings.Builder
	var list fwv1.FirmwareRolloutList
	_ = testEnv.Client.List(context.Background(), &list, client.InNamespace(w.ns))
	for i := range list.Items {
		r := &list.Items[i]
		msg := ""
		for _, c := range r.Status.Conditions {
			if c.Type == fwv1.ConditionReady {
				msg = c.Message
			}
		}
		fmt.Fprintf(&b, "  %s: %s (%s)\n", r.Name, statusLine(r), msg)
	}
	return b.String()
}

func (w *world) logf(format string, args ...any) {
	line := fmt.Sprintf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	w.mu.Lock()
	w.events = append(w.events, line)
	w.mu.Unlock()
	w.t.Log(line)
}

func (w *world) dumpOnFailure() {
	w.t.Logf("rollout statuses:\n%s", w.statuses())
	for _, m := range w.managers {
		if m != nil {
			w.t.Logf("%s log tail:\n%s", m.Name, m.LogTail(60))
		}
	}
	if w.blob != nil {
		w.t.Logf("azurite log tail:\n%s", w.blob.LogTail(20))
	}
}

// twins reads every station's twin through the real client.
func (w *world) twins() map[string]*twin.Twin {
	w.t.Helper()
	out := map[string]*twin.Twin{}
	err := w.reg.Query(context.Background(), twin.Selector{Tags: map[string]string{"ring": "prod"}}, func(page []*twin.Twin) error {
		for _, t := range page {
			out[t.DeviceID] = t
		}
		return nil
	})
	if err != nil {
		w.t.Fatalf("query twins: %v", err)
	}
	return out
}

// check is one invariant's row in the report.
type check struct {
	name   string
	ok     bool
	detail string
}

// report checks the invariants and prints them, with the faults injected,
// as a table.
func (w *world) report(inj *injector) {
	w.t.Helper()
	twins := w.twins()
	var list fwv1.FirmwareRolloutList
	if err := testEnv.Client.List(context.Background(), &list, client.InNamespace(w.ns)); err != nil {
		w.t.Fatal(err)
	}
	byUID := map[string]*fwv1.FirmwareRollout{}
	for i := range list.Items {
		byUID[string(list.Items[i].UID)] = &list.Items[i]
	}
	pkgOf := map[string]string{}
	for _, st := range w.stations {
		pkgOf[embedded.DeviceID(st.EUI())] = st.Package()
	}
	var checks []check
	add := func(name string, ok bool, format string, args ...any) {
		checks = append(checks, check{name, ok, fmt.Sprintf(format, args...)})
	}

	// 1. Every targeted station ends Updated, Failed with a reason, or
	// Skipped.
	{
		var bad []string
		for i := range list.Items {
			r := &list.Items[i]
			s := r.Status
			// A halted rollout's pending stations are those no rollout
			// owns: the halted-rollout invariant counts them.
			if (s.Pending != 0 && s.Phase != fwv1.PhaseHalted) || s.InProgress != 0 {
				bad = append(bad, fmt.Sprintf("%s pending=%d inProgress=%d", r.Name, s.Pending, s.InProgress))
			}
			want := min(int(s.Failed), fwv1.MaxFailuresListed)
			if len(s.Failures) != want {
				bad = append(bad, fmt.Sprintf("%s lists %d failures of %d", r.Name, len(s.Failures), s.Failed))
			}
			for _, f := range s.Failures {
				if f.Reason == "" {
					bad = append(bad, fmt.Sprintf("%s: station %s failed without a reason", r.Name, f.DeviceID))
				}
			}
		}
		add("every targeted station ends Updated, Failed (a reason), Skipped (halted: or unowned)", len(bad) == 0, "%d rollouts; %s", len(list.Items), orNone(bad))
	}
	// 2. No station written twice by the same rollout.
	{
		var bad []string
		writes, stations := 0, 0
		uids := map[string]string{}
		for _, r := range w.rollouts {
			uids[string(r.UID)] = r.Name
		}
		for name, uid := range w.deleted {
			uids[uid] = name + " (deleted)"
		}
		for uid, name := range uids {
			for id, n := range w.hub.RolloutWrites(uid) {
				writes += n
				stations++
				if n != 1 {
					bad = append(bad, fmt.Sprintf("%s wrote %s %d times", name, id, n))
				}
			}
		}
		add("no station written twice by the same rollout", len(bad) == 0, "%d rollout writes to %d (rollout, station) pairs; %s", writes, stations, orNone(bad))
	}
	// 3. Every station that reported the rollout's package is counted Updated.
	{
		var bad []string
		total := 0
		for i := range list.Items {
			r := &list.Items[i]
			failed := map[string]bool{}
			for _, f := range r.Status.Failures {
				failed[f.DeviceID] = true
			}
			n := 0
			for id, t := range twins {
				if t.Ownership == nil || t.Ownership.UID != string(r.UID) || t.Observation == nil || t.Observation.Package != r.Spec.Firmware.Package {
					continue
				}
				n++
				if failed[id] {
					bad = append(bad, fmt.Sprintf("%s lists %s as failed though it reported %s", r.Name, id, r.Spec.Firmware.Package))
				}
			}
			total += n
			if n > int(r.Status.Updated) {
				bad = append(bad, fmt.Sprintf("%s: %d owned stations reported %s, status counts %d updated", r.Name, n, r.Spec.Firmware.Package, r.Status.Updated))
			}
		}
		add("every station that reported the new package is counted Updated", len(bad) == 0, "%d stations owned by a rollout report its package; %s", total, orNone(bad))
	}
	// 4. No twin owned by a rollout that no longer exists.
	{
		var bad []string
		owned := 0
		for id, t := range twins {
			if t.Ownership == nil {
				continue
			}
			owned++
			if byUID[t.Ownership.UID] == nil {
				bad = append(bad, fmt.Sprintf("%s owned by %s (uid %s)", id, t.Ownership.Rollout, t.Ownership.UID))
			}
		}
		add("no twin owned by a rollout that no longer exists", len(bad) == 0, "%d owned twins, %d rollouts deleted; %s", owned, len(w.deleted), orNone(bad))
	}
	// 5. Statuses add up.
	{
		var bad []string
		for i := range list.Items {
			s := list.Items[i].Status
			if sum := s.Pending + s.InProgress + s.Updated + s.Failed + s.Skipped; sum != s.Targets {
				bad = append(bad, fmt.Sprintf("%s: targets %d != %d", list.Items[i].Name, s.Targets, sum))
			}
		}
		add("rollout statuses add up (targets = pending+inProgress+updated+failed+skipped)", len(bad) == 0, "%s", orNone(bad))
	}
	// The status against what happened to each station.
	outs := outcomes(twins, list.Items)
	w.historyChecks(list.Items, twins, outs, add)
	// 6. No malformed CUPS response.
	stats := w.fleet.Stats()
	add("no CUPS response was malformed", stats.Malformed == 0, "%d polls, %d failed (connection refused/reset, 5xx during outages), %d malformed, %d updates applied",
		stats.Polls, stats.Failures, stats.Malformed, stats.UpdatesApplied)
	// 7. Credentials only to their own station.
	{
		var bad []string
		for _, st := range w.stations {
			if got := st.State().CUPSCred.Key; string(got) != string(w.expCred[st.EUI()]) {
				bad = append(bad, fmt.Sprintf("%016X holds a credential that is not its own", st.EUI()))
			}
		}
		ok := len(bad) == 0 && w.credViolations.Load() == 0 && w.impostorCreds.Load() == 0 && w.impostorOK.Load() == 0
		add("no credential served to a caller that was not its station", ok,
			"%d credential blobs served, %d rotations pending at start, %d not to the right station; impostors: %d polls, %d answered 200, %d got a credential; %s",
			w.credServed.Load(), len(w.rotates), w.credViolations.Load(), w.impostorPolls.Load(), w.impostorOK.Load(), w.impostorCreds.Load(), orNone(bad))
	}

	// The report.
	var b strings.Builder
	fmt.Fprintf(&b, "\n== soak report: %d stations, %s of faults\n", w.cfg.stations, w.cfg.faults)
	fmt.Fprintf(&b, "%-4s | %-84s | %s\n", "", "invariant", "detail")
	failed := false
	for _, c := range checks {
		mark := "OK"
		if !c.ok {
			mark, failed = "FAIL", true
		}
		fmt.Fprintf(&b, "%-4s | %-84s | %s\n", mark, c.name, c.detail)
	}
	fmt.Fprintf(&b, "\n== faults injected\n")
	for _, l := range inj.summary() {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	var kinds []string
	for k := range w.kills {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %-50s %d\n", k, w.kills[k])
	}
	fmt.Fprintf(&b, "  %-50s %d\n", "IoT Hub twin writes (2xx)", w.hub.Writes())
	fmt.Fprintf(&b, "  %-50s %d\n", "IoT Hub twin writes refused or failed", w.hub.Requests(hubsim.OpPatchTwin)+w.hub.Requests(hubsim.OpReplaceTwin)-w.hub.Writes())
	fmt.Fprintf(&b, "\n== rollouts\n%s", w.statuses())
	fmt.Fprintf(&b, "\n== failures by reason, per rollout\n%s", w.failureReport(list.Items, outs))
	for name, uid := range w.deleted {
		fmt.Fprintf(&b, "  %s: deleted (uid %s)\n", name, uid)
	}
	dist := map[string]int{}
	for _, p := range pkgOf {
		dist[p]++
	}
	var pk []string
	for p, n := range dist {
		pk = append(pk, fmt.Sprintf("%s=%d", p, n))
	}
	sort.Strings(pk)
	fmt.Fprintf(&b, "  stations by package: %s\n", strings.Join(pk, " "))
	w.t.Log(b.String())
	if failed {
		w.t.Error("soak invariants violated (see the report above)")
	}
}

func orNone(bad []string) string {
	if len(bad) == 0 {
		return "no violation"
	}
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("... and %d more", len(bad)-10))
	}
	return "VIOLATIONS: " + strings.Join(bad, "; ")
}
