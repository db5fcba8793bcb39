package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	corev1 "k8s.io/api/core/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/controlplane"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// cluster is the API server every row shares, and what a manager process
// needs to reach it.
type cluster struct {
	kube       *controlplane.Env
	kubeconfig string
	work       string
	managerBin string
	logDir     string
	rows       int
}

// startCluster starts envtest (kube-apiserver and etcd from
// KUBEBUILDER_ASSETS) and writes a kubeconfig for the manager processes.
func startCluster(work, managerBin, logDir string) (*cluster, error) {
	k, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		return nil, err
	}
	path := filepath.Join(work, "kubeconfig")
	if err := k.WriteKubeconfig("stationfleet-bench", path); err != nil {
		_ = k.Stop()
		return nil, err
	}
	return &cluster{kube: k, kubeconfig: path, work: work, managerBin: managerBin, logDir: logDir}, nil
}

func (c *cluster) stop() error { return c.kube.Stop() }

// world is one row's fleet: an IoT Hub emulator (in this process) holding n
// stations, signed firmware 2.0.6 (what they run) and 2.0.7 (what rollouts
// send), and a namespace.
type world struct {
	c       *cluster
	name    string
	dir     string
	ns      string
	hub     *hubsim.Server
	stopHub context.CancelFunc
	hubDone chan error
	signer  *embedded.Signer
	old, fw embedded.Firmware
	specs   []embedded.StationSpec
	csFile  string
	// seedTime and seedHeap are what seeding the twins took: the time and
	// the emulator's heap growth (live heap after a collection, the
	// stations' specs excluded).
	seedTime time.Duration
	seedHeap uint64
}

// newWorld seeds n stations into a fresh emulator. With observed, each twin
// already holds the observation the CUPS server recorded at the station's
// last poll 10 minutes ago (a fleet that was online before an outage).
func (c *cluster) newWorld(ctx context.Context, name string, n int, observed bool) (*world, error) {
	c.rows++
	w := &world{c: c, name: name, dir: filepath.Join(c.work, name)}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return nil, err
	}
	hub, err := hubsim.New(hubsim.Options{CertDir: filepath.Join(w.dir, "hub")})
	if err != nil {
		return nil, fmt.Errorf("hubsim: %w", err)
	}
	w.hub = hub
	hctx, cancel := context.WithCancel(context.Background())
	w.stopHub, w.hubDone = cancel, make(chan error, 1)
	go func() { w.hubDone <- hub.Serve(hctx) }()

	if w.signer, err = embedded.LoadOrCreateSigner(filepath.Join(w.dir, "keys", "sig-0.pem")); err != nil {
		w.close()
		return nil, err
	}
	fwDir := filepath.Join(w.dir, "fw")
	if w.old, err = w.signer.Publish(fwDir, "2.0.6", 0); err != nil {
		w.close()
		return nil, err
	}
	if w.fw, err = w.signer.Publish(fwDir, "2.0.7", 0); err != nil {
		w.close()
		return nil, err
	}
	w.specs = embedded.FleetSpec(n, 0, "2.0.6", w.signer)
	h0, t0 := liveHeap(), time.Now()
	if err := w.seed(observed); err != nil {
		w.close()
		return nil, err
	}
	w.seedTime = time.Since(t0)
	if h1 := liveHeap(); h1 > h0 {
		w.seedHeap = h1 - h0
	}
	w.csFile = filepath.Join(w.dir, "iothub-connection-string")
	if err := os.WriteFile(w.csFile, []byte(hub.ConnectionString()), 0o600); err != nil {
		w.close()
		return nil, err
	}
	w.ns = fmt.Sprintf("bench-%d-%s", c.rows, name)
	if err := c.kube.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.ns}}); err != nil {
		w.close()
		return nil, fmt.Errorf("create namespace: %w", err)
	}
	return w, nil
}

// seed registers the stations with hubsim's Seed (no HTTP), each twin
// desiring the signed 2.0.6 firmware.
func (w *world) seed(observed bool) error {
	old := map[string]any{"package": w.old.Package, "fwUrl": w.old.URL, "fwSignature": w.old.Signature, "fwKeyChecksum": w.old.KeyChecksum}
	desired := map[string]any{twin.DesiredCUPS: old}
	var obsTags map[string]any
	if observed {
		noCred := stationsim.CredSet{}.CRC()
		// What cups.Observe records for the request a station in this
		// state sends (stationsim's defaults: station string, model).
		obs := twin.Observation{
			LastSeen: time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second),
			Station:  "2.0.6(linux/std) 2026-11-27 18:19:31", Model: "linux", Package: "2.0.6",
			Keys:        []uint32{w.signer.CRC},
			CupsCredCRC: &noCred, // the simulated stations hold no CUPS credentials (plain HTTP)
		}
		// The patch nulls the keys the observation leaves out (to delete
		// them from a twin); a seeded document has none.
		obsTags = withoutNulls(twin.ObservationPatch(obs).Tags)
	}
	for i, sp := range w.specs {
		tags := map[string]any{"region": sp.Tags["region"], "ring": sp.Tags["ring"]}
		for k, v := range obsTags {
			tags[k] = v
		}
		if err := w.hub.Seed(embedded.DeviceID(sp.EUI), tags, desired); err != nil {
			return fmt.Errorf("seed station %d: %w", i, err)
		}
	}
	return nil
}

// withoutNulls returns m without its null values, at every depth.
func withoutNulls(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case nil:
		case map[string]any:
			out[k] = withoutNulls(v)
		default:
			out[k] = v
		}
	}
	return out
}

// close stops the emulator and forgets the world's rollouts (their
// finalizers are removed: the manager that owned them is gone).
func (w *world) close() {
	if w.ns != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var list fwv1.FirmwareRolloutList
		if err := w.c.kube.Client.List(ctx, &list, client.InNamespace(w.ns)); err == nil {
			for i := range list.Items {
				r := &list.Items[i]
				_ = w.c.kube.Client.Patch(ctx, r, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))
				_ = w.c.kube.Client.Delete(ctx, r)
			}
		}
		cancel()
	}
	if w.stopHub != nil {
		w.stopHub()
		<-w.hubDone
		w.stopHub = nil
	}
}

// rollout returns a rollout of 2.0.7 to every station with the given steps.
func (w *world) rollout(name string, steps ...fwv1.RolloutStep) *fwv1.FirmwareRollout {
	return &fwv1.FirmwareRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
		Spec: fwv1.FirmwareRolloutSpec{
			Firmware: fwv1.FirmwareSpec{Package: w.fw.Package, URL: w.fw.URL, Signature: w.fw.Signature, KeyChecksum: int64(w.fw.KeyChecksum)},
			Selector: fwv1.StationSelector{Tags: map[string]string{"ring": "prod"}},
			Strategy: fwv1.RolloutStrategy{Steps: steps, ProgressDeadline: &metav1.Duration{Duration: time.Hour}, MaxUpdateAttempts: ptr.To[int32](3)},
		},
	}
}

func batchStep(v string) fwv1.RolloutStep {
	b := intstr.Parse(v)
	return fwv1.RolloutStep{Batch: &b}
}

func indefinitePause() fwv1.RolloutStep { return fwv1.RolloutStep{Pause: &fwv1.PauseStep{}} }

// get reads a rollout from the API server.
func (w *world) get(ctx context.Context, name string) (*fwv1.FirmwareRollout, error) {
	r := &fwv1.FirmwareRollout{}
	err := w.c.kube.Client.Get(ctx, client.ObjectKey{Namespace: w.ns, Name: name}, r)
	return r, err
}

// waitFor polls the rollout every 50 ms until cond holds.
func (w *world) waitFor(ctx context.Context, name string, timeout time.Duration, what string, cond func(*fwv1.FirmwareRollout) bool) (*fwv1.FirmwareRollout, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *fwv1.FirmwareRollout
	for {
		r, err := w.get(ctx, name)
		if err == nil {
			last = r
			if cond(r) {
				return r, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("rollout %s: %s not reached within %s (last status: %s)", name, what, timeout, statusLine(last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func statusLine(r *fwv1.FirmwareRollout) string {
	if r == nil {
		return "<none>"
	}
	s := r.Status
	return fmt.Sprintf("phase=%s step=%d targets=%d pending=%d inProgress=%d updated=%d failed=%d skipped=%d",
		s.Phase, s.CurrentStep, s.Targets, s.Pending, s.InProgress, s.Updated, s.Failed, s.Skipped)
}

// objectSize is the size of the rollout as the API server returns it in
// JSON (managed fields included), in bytes.
func objectSize(r *fwv1.FirmwareRollout) int {
	b, _ := json.Marshal(r)
	return len(b)
}

// managerProc is a manager process (./cmd/manager) against the cluster and
// a world's emulator.
type managerProc struct {
	cmd       *exec.Cmd
	cupsAddr  string
	pprofAddr string
	logPath   string
	done      chan error
}

// freeAddr returns a free loopback address.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startManager runs the manager binary with the world's emulator, firmware
// directory and the given extra flags, and waits until CUPS accepts
// connections. The process is killed if this process dies (Pdeathsig).
func (w *world) startManager(ctx context.Context, extra ...string) (*managerProc, error) {
	m := &managerProc{done: make(chan error, 1)}
	var err error
	if m.cupsAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	if m.pprofAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	args := []string{
		"--metrics-bind-address=0",
		"--zap-time-encoding=rfc3339nano",
		"--health-probe-bind-address=0",
		"--pprof-bind-address=" + m.pprofAddr,
		"--iothub-connection-string-file=" + w.csFile,
		"--iothub-ca-file=" + w.hub.CAFile(),
		"--iothub-endpoint=" + w.hub.Addr(),
		"--firmware-dir=" + filepath.Join(w.dir, "fw"),
		"--cups-bind-address=" + m.cupsAddr,
		"--cups-insecure",
		// The bench measures the manager's memory as it grows: no soft
		// limit from a container (cmd/manager's --memory-limit=auto).
		"--memory-limit=off",
	}
	args = append(args, extra...)
	m.logPath = filepath.Join(w.c.logDir, "manager-"+w.name+".log")
	logf, err := os.Create(m.logPath)
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(w.c.managerBin, args...)
	m.cmd.Env = append(os.Environ(), "KUBECONFIG="+w.c.kubeconfig)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start manager: %w", err)
	}
	go func() { m.done <- m.cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.cupsAddr, time.Second)
		if err == nil {
			c.Close()
			return m, nil
		}
		select {
		case err := <-m.done:
			m.done <- err
			return nil, fmt.Errorf("manager exited at start (%v); see %s", err, m.logPath)
		case <-ctx.Done():
			m.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("manager's CUPS server did not listen within 60s; see %s", m.logPath)
		}
	}
}

// waitController waits until the manager's controller runs its workers: the
// CUPS server listens about a second earlier, while the controller's cache
// still syncs, and a timed rollout must not count that start-up.
func (m *managerProc) waitController(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(m.logPath); err == nil && bytes.Contains(b, []byte("Starting workers")) {
			// Measured here: a rollout created within about two seconds of
			// the workers starting was sometimes first reconciled only two
			// seconds later (the informer settling), which is start-up, not
			// the rollout's cost. Let it settle.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(3 * time.Second):
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the manager's controller did not start within 60s; see %s", m.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// peakRSS returns the process's peak resident set size (VmHWM) in bytes.
func (m *managerProc) peakRSS() (int64, error) {
	return procStatus(m.cmd.Process.Pid, "VmHWM:")
}

func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// cpuSeconds returns the user+system CPU time the process has used
// (/proc/<pid>/stat, in clock ticks of 1/100 s).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100
}

// loadAvg returns the 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// stop ends the manager: SIGTERM, then SIGKILL after 15 s.
func (m *managerProc) stop() {
	if m == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		m.done <- err
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		m.done <- <-m.done
	}
}

// exited reports whether the manager process has ended.
func (m *managerProc) exited() error {
	select {
	case err := <-m.done:
		m.done <- err
		if err == nil {
			err = errors.New("exited")
		}
		return err
	default:
		return nil
	}
}

// liveHeap is this process's live heap after a collection.
func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
