package controllers_test

import (
	"slices"
	"sort"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestStreamedBatchStaleETag: a 100% batch writes each station with the
// ETag its query page gave, reading no twin first; a station whose twin
// changed between the query and the write (here another active rollout
// claimed it) is decided on its fresh twin: skipped, and the other
// rollout's claim kept. Nothing else is lost.
func TestStreamedBatchStaleETag(t *testing.T) {
	g := NewWithT(t)
	const n = 40
	w := newWorldWith(t, n, nil, worldOptions{manualPolls: true})
	// The other rollout: active (paused), selecting one station only.
	taken := w.id(7)
	other := w.rollout("other", batch("100%"))
	other.Spec.Selector.DeviceIDs = []string{taken}
	other.Spec.Paused = true
	w.create(other)
	other = w.waitPhase("other", fwv1.PhasePaused, 30*time.Second)
	// Just before the rollout's write reaches the twin, the other rollout
	// claims it (its ETag changes).
	w.hub.InjectConcurrentWrite(taken, twin.OwnershipPatch(&twin.Ownership{Rollout: w.ns + "/other", UID: string(other.UID), Batch: 1,
		WrittenAt: time.Now().UTC().Truncate(time.Second)}).Tags, nil)
	gets := w.hub.Requests(hubsim.OpGetTwin)

	w.create(w.rollout("r", batch("100%")))
	r := waitInProgress(g, w, "r", n-1, 30*time.Second)
	g.Expect(r.Status.Skipped).To(BeNumerically("==", 1), statusString(r))
	g.Expect(r.Status.Pending).To(BeZero(), statusString(r))

	writes := w.hub.RolloutWrites(string(r.UID))
	g.Expect(writes).To(HaveLen(n-1), "every station but the one taken is written")
	g.Expect(writes).NotTo(HaveKey(taken), "the station the other rollout claimed is not written")
	expectWrittenOnce(g, writes)
	tw := w.twinOf(taken)
	g.Expect(tw.Ownership).NotTo(BeNil())
	g.Expect(tw.Ownership.UID).To(Equal(string(other.UID)), "the other rollout's claim is kept")
	g.Expect(tw.CUPS.Package).To(Equal("2.0.6"))
	// Only the stale one was read before its write: the others were
	// written with their page's ETag.
	g.Expect(w.hub.Requests(hubsim.OpGetTwin)-gets).To(BeNumerically("<=", 3), "twins read before writing")
}

// TestStreamedBatchAfterPartial: a 25% batch (written from the cached
// selection) writes exactly the first quarter in spread order; the 100%
// batch after it (streamed from the query pages) writes exactly the rest,
// each station once. The stations poll and apply meanwhile, so twins
// change under the pages (CUPS records their reports).
func TestStreamedBatchAfterPartial(t *testing.T) {
	g := NewWithT(t)
	const n = 40
	w := newWorld(t, n, nil)
	w.create(w.rollout("r", batch("25%"), pause(0), batch("100%")))
	r := w.waitPhase("r", fwv1.PhasePaused, 30*time.Second)

	ids := make([]string, n)
	for i := range ids {
		ids[i] = w.id(i)
	}
	uid := string(r.UID)
	sort.Slice(ids, func(i, j int) bool { return rules.SpreadOrder(uid, ids[i]) < rules.SpreadOrder(uid, ids[j]) })
	written := w.hub.RolloutWrites(uid)
	got := make([]string, 0, len(written))
	for id := range written {
		got = append(got, id)
	}
	slices.Sort(got)
	first := slices.Clone(ids[:n/4])
	slices.Sort(first)
	g.Expect(got).To(Equal(first), "the first batch is the first quarter in spread order")

	w.patch("r", func(r *fwv1.FirmwareRollout) {
		r.Annotations = map[string]string{fwv1.ResumeAnnotation: time.Now().Format(time.RFC3339Nano)}
	})
	r = w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", n), statusString(r))
	written = w.hub.RolloutWrites(uid)
	g.Expect(written).To(HaveLen(n))
	for id, k := range written {
		g.Expect(k).To(Equal(1), "station %s written %d times", id, k)
		g.Expect(w.twinOf(id).Ownership.Batch).To(Equal(map[bool]int{true: 1, false: 3}[slices.Contains(first, id)]), "batch of %s", id)
	}
}

// TestStreamedBatchShowsProgress: while one pass writes a long batch, its
// progress reaches status from the side (not only when the pass ends), and
// never goes back.
func TestStreamedBatchShowsProgress(t *testing.T) {
	g := NewWithT(t)
	const n = 120
	// One pass may write for 30 s: only the side patches show progress.
	w := newWorldWith(t, n, nil, worldOptions{manualPolls: true, statusResync: 30 * time.Second})
	w.hub.InjectFault(hubsim.Fault{Op: hubsim.OpPatchTwin, Latency: 300 * time.Millisecond})
	w.create(w.rollout("r", batch("100%")))

	var (
		seen    []int32 // InProgress as status showed it
		midway  bool    // status showed some progress while writes were still to come
		deadlne = time.Now().Add(60 * time.Second)
	)
	for time.Now().Before(deadlne) {
		r := w.get("r")
		st := r.Status
		if len(seen) == 0 || seen[len(seen)-1] != st.InProgress {
			seen = append(seen, st.InProgress)
		}
		if st.InProgress > 0 && st.InProgress < n && len(w.hub.RolloutWrites(string(r.UID))) < n {
			midway = true
		}
		if st.InProgress == n && st.Pending == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.Expect(seen[len(seen)-1]).To(BeNumerically("==", n), "InProgress seen: %v", seen)
	g.Expect(midway).To(BeTrue(), "status showed no progress before the batch's writes ended; InProgress seen: %v", seen)
	g.Expect(slices.IsSorted(seen)).To(BeTrue(), "progress went back: %v", seen)
	expectWrittenOnce(g, w.hub.RolloutWrites(string(w.get("r").UID)))
}

// TestStreamedBatchEndsWhenTheQueryIsSlow: a streamed pass stops taking
// stations StatusResync (or nine times its set-up) after its first write,
// so a pass after the first may page through many twins before it writes
// again. When that reading alone outlasts StatusResync (a big fleet, a
// slow hub: here pages of 10 twins at 300 ms each, 2.4 s for the 80,
// against a resync of 1 s), the batch must still end, each station written
// once.
func TestStreamedBatchEndsWhenTheQueryIsSlow(t *testing.T) {
	g := NewWithT(t)
	const n = 80
	w := newWorldWith(t, n, nil, worldOptions{manualPolls: true, statusResync: time.Second, pageSize: 10})
	w.hub.InjectFault(hubsim.Fault{Op: hubsim.OpQuery, Latency: 300 * time.Millisecond})
	w.hub.InjectFault(hubsim.Fault{Op: hubsim.OpPatchTwin, Latency: 100 * time.Millisecond})
	w.create(w.rollout("r", batch("100%")))
	r := waitInProgress(g, w, "r", n, 90*time.Second)
	g.Expect(r.Status.Pending).To(BeZero(), statusString(r))
	expectWrittenOnce(g, w.hub.RolloutWrites(string(r.UID)))
}

// TestStreamedBatchStopsAtPause: a streamed pass may take stations for
// long (here StatusResync is 30 s, longer than the whole batch), but a
// person who pauses the rollout sees the writes stop within about a second
// or two, not at the pass's end; the stations queued but not yet written
// stay unwritten, and unpausing writes them, each once.
func TestStreamedBatchStopsAtPause(t *testing.T) {
	g := NewWithT(t)
	const n = 200
	w := newWorldWith(t, n, nil, worldOptions{manualPolls: true, statusResync: 30 * time.Second})
	// 16 writers at 1 s a write: the batch takes about 13 s.
	w.hub.InjectFault(hubsim.Fault{Op: hubsim.OpPatchTwin, Latency: time.Second})
	w.create(w.rollout("r", batch("100%")))
	uid := string(w.get("r").UID)
	g.Eventually(func() int { return len(w.hub.RolloutWrites(uid)) }, 30*time.Second, 20*time.Millisecond).Should(BeNumerically(">=", 16))
	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Paused = true })
	w.waitPhase("r", fwv1.PhasePaused, 10*time.Second)
	time.Sleep(2500 * time.Millisecond) // the writes in flight at the pause land
	atPause := len(w.hub.RolloutWrites(uid))
	time.Sleep(3 * time.Second)
	g.Expect(len(w.hub.RolloutWrites(uid))).To(Equal(atPause), "writes went on after the pause")
	g.Expect(atPause).To(BeNumerically("<", n/2), "the pass wrote on after the pause")

	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Paused = false })
	waitInProgress(g, w, "r", n, 60*time.Second)
	expectWrittenOnce(g, w.hub.RolloutWrites(uid))
}

// TestStreamedBatchShowsUpdatesDuringALongPass: a streamed pass may write
// for long (here StatusResync is 30 s, longer than the whole batch), but
// the stations it wrote first that install the firmware and report it show
// Updated in status while it still writes the rest: the pass lays the CUPS
// server's reports over its view as it goes.
func TestStreamedBatchShowsUpdatesDuringALongPass(t *testing.T) {
	g := NewWithT(t)
	const n = 200
	w := newWorldWith(t, n, nil, worldOptions{statusResync: 30 * time.Second})
	// 16 writers at 1 s a write: the batch takes about 13 s.
	w.hub.InjectFault(hubsim.Fault{Op: hubsim.OpPatchTwin, Latency: time.Second})
	w.create(w.rollout("r", batch("100%")))
	uid := string(w.get("r").UID)
	var r *fwv1.FirmwareRollout
	g.Eventually(func() int32 {
		r = w.get("r")
		if len(w.hub.RolloutWrites(uid)) >= n {
			return -1 // too late: the writes ended
		}
		return r.Status.Updated
	}, 30*time.Second, 50*time.Millisecond).Should(BeNumerically(">", 0), func() string { return statusString(r) })
}

// TestStreamedBatchHaltsDuringALongPass: stations fail while a long
// streamed pass still writes (the rollout's keyChecksum matches none of
// their keys: each is refused at its first poll after its write); once they
// pass maxFailures the pass stops at once and the rollout halts, instead
// of writing the whole fleet first.
func TestStreamedBatchHaltsDuringALongPass(t *testing.T) {
	g := NewWithT(t)
	const n = 300
	w := newWorldWith(t, n, nil, worldOptions{statusResync: 30 * time.Second})
	// 16 writers at 1 s a write: the batch takes about 19 s. CUPS records
	// each refusal in the twin with the same latency.
	w.hub.InjectFault(hubsim.Fault{Op: hubsim.OpPatchTwin, Latency: time.Second})
	r := w.rollout("r", batch("100%"))
	r.Spec.Firmware.KeyChecksum++
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(0))
	w.create(r)
	r = w.waitPhase("r", fwv1.PhaseHalted, 60*time.Second)
	time.Sleep(2500 * time.Millisecond) // the writes in flight at the halt land
	written := len(w.hub.RolloutWrites(string(r.UID)))
	t.Logf("%d of %d stations written when the rollout halted", written, n)
	g.Expect(written).To(BeNumerically("<", 2*n/3), "stations written before the halt; %s", statusString(w.get("r")))
	g.Expect(w.get("r").Status.Failed).To(BeNumerically(">", 0))
}

// TestStreamedBatchReadsTheSelectionOnce: a rollout whose first pass reads
// its selection and streams its 100% batch writes from the twins that read
// gave (with their ETags), instead of querying the selection again: here
// 10 pages of 10 twins are queried once, not twice.
func TestStreamedBatchReadsTheSelectionOnce(t *testing.T) {
	g := NewWithT(t)
	const n = 100
	w := newWorldWith(t, n, nil, worldOptions{manualPolls: true, statusResync: 30 * time.Second, pageSize: 10})
	q0 := w.hub.Requests(hubsim.OpQuery)
	w.create(w.rollout("r", batch("100%")))
	r := waitInProgress(g, w, "r", n, 30*time.Second)
	// The owned stations (one page: none yet), then the selection's 10
	// pages; a second read of the selection would be 10 more.
	g.Expect(w.hub.Requests(hubsim.OpQuery)-q0).To(BeNumerically("<=", 12), "query pages read")
	expectWrittenOnce(g, w.hub.RolloutWrites(string(r.UID)))
	g.Expect(w.hub.Requests(hubsim.OpGetTwin)).To(BeZero(), "twins read before writing")
}

// waitInProgress waits until the rollout name shows want stations in
// progress, and returns it.
func waitInProgress(g Gomega, w *world, name string, want int, timeout time.Duration) *fwv1.FirmwareRollout {
	var r *fwv1.FirmwareRollout
	g.Eventually(func() int32 {
		r = w.get(name)
		return r.Status.InProgress
	}, timeout, 50*time.Millisecond).Should(BeNumerically("==", want), func() string { return statusString(r) })
	return r
}

// expectWrittenOnce expects every station of writes (id -> twin writes by
// a rollout) written exactly once.
func expectWrittenOnce(g Gomega, writes map[string]int) {
	for id, k := range writes {
		g.Expect(k).To(Equal(1), "station %s written %d times", id, k)
	}
}
