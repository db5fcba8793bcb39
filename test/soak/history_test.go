package soak

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// installed is one update a station installed, from its own session
// results.
type installed struct {
	at  time.Time
	pkg string
}

// stationLog is what the stations did, from their own session results:
// every update they installed (or received and did not install), in order.
type stationLog struct {
	mu       sync.Mutex
	installs map[string][]installed // device id -> installs
	notInst  map[string]int         // device id -> updates received, not installed
}

func newStationLog() *stationLog {
	return &stationLog{installs: map[string][]installed{}, notInst: map[string]int{}}
}

func (l *stationLog) record(s *stationsim.Station, r stationsim.Result) {
	if r.Update == stationsim.UpdateNone {
		return
	}
	id := embedded.DeviceID(s.EUI())
	l.mu.Lock()
	defer l.mu.Unlock()
	switch r.Update {
	case stationsim.UpdateApplied:
		l.installs[id] = append(l.installs[id], installed{at: time.Now(), pkg: r.PackageAfter})
	default:
		l.notInst[id]++
	}
}

// installedBetween reports whether the station installed pkg in [from, to)
// (to zero: no end).
func (l *stationLog) installedBetween(id, pkg string, from, to time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, in := range l.installs[id] {
		if in.pkg == pkg && !in.at.Before(from) && (to.IsZero() || in.at.Before(to)) {
			return true
		}
	}
	return false
}

// statusSample is what the sampler remembers of one rollout's status.
type statusSample struct {
	peakFailed int32
	peakMsg    string
	phases     []string
	drops      []string // the failure count went down
}

// sampler polls the rollouts' statuses while the soak runs, to catch what
// the final status no longer shows: the peak failure count, and any drop.
type sampler struct {
	mu   sync.Mutex
	by   map[string]*statusSample
	last map[string]int32
}

func (w *world) sample(ctx context.Context, sp *sampler) {
	sp.by, sp.last = map[string]*statusSample{}, map[string]int32{}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for last := false; ; {
		var list fwv1.FirmwareRolloutList
		if err := testEnv.Client.List(context.Background(), &list, client.InNamespace(w.ns)); err == nil {
			sp.mu.Lock()
			for i := range list.Items {
				sp.note(&list.Items[i], w)
			}
			sp.mu.Unlock()
		}
		if last {
			return
		}
		select {
		case <-ctx.Done():
			last = true // one more: what happened since the last tick
		case <-tick.C:
		}
	}
}

func (sp *sampler) note(r *fwv1.FirmwareRollout, w *world) {
	s := sp.by[r.Name]
	if s == nil {
		s = &statusSample{}
		sp.by[r.Name] = s
	}
	st := r.Status
	if n := len(s.phases); n == 0 || s.phases[n-1] != string(st.Phase) {
		s.phases = append(s.phases, string(st.Phase))
		w.logf("rollout %s: %s (%s)", r.Name, statusLine(r), readyMessage(r))
	}
	if st.Failed > s.peakFailed {
		s.peakFailed, s.peakMsg = st.Failed, readyMessage(r)
	}
	if prev, ok := sp.last[r.Name]; ok && st.Failed < prev {
		d := fmt.Sprintf("%s failed %d -> %d", time.Now().Format("15:04:05"), prev, st.Failed)
		s.drops = append(s.drops, d)
		w.logf("rollout %s: failure count went down: %s", r.Name, d)
	}
	sp.last[r.Name] = st.Failed
}

func readyMessage(r *fwv1.FirmwareRollout) string {
	for _, c := range r.Status.Conditions {
		if c.Type == fwv1.ConditionReady {
			return c.Message
		}
	}
	return ""
}

// outcomes is every station's outcome in every rollout, as the CLI's
// stations view shows it (rules.EvaluateStation over the final twins: the
// twin's ownership record and its history of earlier rollouts).
func outcomes(twins map[string]*twin.Twin, list []fwv1.FirmwareRollout) map[string]map[string]rules.StationOutcome {
	active := rules.ActiveRollouts(list)
	out := map[string]map[string]rules.StationOutcome{}
	now := time.Now()
	for i := range list {
		r := &list[i]
		m := map[string]rules.StationOutcome{}
		for id, t := range twins {
			m[id] = rules.EvaluateStation(t, r, active, now)
		}
		out[r.Name] = m
	}
	return out
}

// reasonLine is "Reason=count ..." of the stations counted Failed.
func reasonLine(m map[string]rules.StationOutcome) string {
	by := map[string]int{}
	for _, o := range m {
		if o.State == fwv1.OutcomeFailed {
			by[o.Reason]++
		}
	}
	if len(by) == 0 {
		return "none"
	}
	var parts []string
	for r, n := range by {
		parts = append(parts, fmt.Sprintf("%s=%d", r, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// selects reports whether the rollout's selector matches the twin (the
// structured selector: every tag equal, or the device id listed).
func selects(r *fwv1.FirmwareRollout, t *twin.Twin) bool {
	sel := r.Spec.Selector
	if len(sel.DeviceIDs) > 0 {
		found := false
		for _, id := range sel.DeviceIDs {
			found = found || id == t.DeviceID
		}
		if !found {
			return false
		}
	}
	for k, v := range sel.Tags {
		if got, _ := t.Tags[k].(string); got != v {
			return false
		}
	}
	return true
}

// failureReport is, per rollout, its failures by reason (as each station's
// outcome says, and as the status's bounded list says), the peak failure
// count seen while the soak ran and any drop of it.
func (w *world) failureReport(list []fwv1.FirmwareRollout, outs map[string]map[string]rules.StationOutcome) string {
	var b strings.Builder
	w.samples.mu.Lock()
	defer w.samples.mu.Unlock()
	for i := range list {
		r := &list[i]
		listed := map[string]int{}
		for _, f := range r.Status.Failures {
			listed[string(f.Reason)]++
		}
		var lp []string
		for k, n := range listed {
			lp = append(lp, fmt.Sprintf("%s=%d", k, n))
		}
		sort.Strings(lp)
		fmt.Fprintf(&b, "  %s: status failed=%d; per station: %s; status list (latest %d): %s\n",
			r.Name, r.Status.Failed, reasonLine(outs[r.Name]), fwv1.MaxFailuresListed, strings.Join(lp, " "))
		if s := w.samples.by[r.Name]; s != nil {
			fmt.Fprintf(&b, "      phases %s; peak failed %d", strings.Join(s.phases, " -> "), s.peakFailed)
			if s.peakMsg != "" {
				fmt.Fprintf(&b, " (%s)", s.peakMsg)
			}
			if len(s.drops) > 0 {
				fmt.Fprintf(&b, "; failure count went down: %s", strings.Join(s.drops, ", "))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// ownership is one rollout's hold on one station, from the emulator's
// ownership log: from its write until the next change of owner (zero: it
// still owns it).
type ownership struct{ from, to time.Time }

// holds maps rollout UID -> device id -> the rollout's holds, in order.
func holds(log []hubsim.OwnershipChange) map[string]map[string][]ownership {
	out := map[string]map[string][]ownership{}
	for _, c := range log {
		if c.From != "" {
			if hs := out[c.From][c.DeviceID]; len(hs) > 0 && hs[len(hs)-1].to.IsZero() {
				hs[len(hs)-1].to = c.At
			}
		}
		if c.To != "" {
			m := out[c.To]
			if m == nil {
				m = map[string][]ownership{}
				out[c.To] = m
			}
			m[c.DeviceID] = append(m[c.DeviceID], ownership{from: c.At})
		}
	}
	return out
}

// historyChecks are the invariants that compare each rollout's status to
// what happened to each station: the emulator's ownership log (which
// rollout wrote it, when, and when it was let go), the stations' own logs
// (what they installed, when) and each station's outcome as the twins say
// it (rules.EvaluateStation: the ownership record and the history of
// earlier rollouts).
func (w *world) historyChecks(list []fwv1.FirmwareRollout, twins map[string]*twin.Twin, outs map[string]map[string]rules.StationOutcome, add func(string, bool, string, ...any)) {
	hs := holds(w.hub.OwnershipLog())
	// A rollout's status is its history: its counts are what happened to
	// the stations it wrote, whoever owns them now.
	{
		var bad []string
		written, evictedAll := 0, 0
		for i := range list {
			r := &list[i]
			mine := hs[string(r.UID)]
			written += len(mine)
			var upd, fail, skipPath, evicted int32
			for id := range mine {
				if evictedFrom(twins[id], r) {
					evicted++
					continue
				}
				switch o := outs[r.Name][id]; o.State {
				case fwv1.OutcomeUpdated:
					upd++
				case fwv1.OutcomeFailed:
					fail++
				case fwv1.OutcomeSkipped:
					skipPath++
				default:
					bad = append(bad, fmt.Sprintf("%s wrote %s, which is %s", r.Name, id, o.State))
				}
			}
			s := r.Status
			evictedAll += int(evicted)
			switch {
			case evicted == 0 && (s.Updated != upd || s.Failed != fail || s.SkippedNotOnUpgradePath != skipPath),
				evicted > 0 && (s.Updated < upd || s.Failed < fail || int(s.Updated+s.Failed+s.SkippedNotOnUpgradePath) != len(mine)):
				bad = append(bad, fmt.Sprintf("%s wrote %d stations: %d updated, %d failed, %d off the upgrade path by their twins (%d past the twins' history); status says %d, %d, %d",
					r.Name, len(mine), upd, fail, skipPath, evicted, s.Updated, s.Failed, s.SkippedNotOnUpgradePath))
			}
			for _, f := range s.Failures {
				if evictedFrom(twins[f.DeviceID], r) {
					continue
				}
				if o := outs[r.Name][f.DeviceID]; o.State != fwv1.OutcomeFailed || o.Reason != string(f.Reason) {
					bad = append(bad, fmt.Sprintf("%s lists %s as %s, its twin says %s %s", r.Name, f.DeviceID, f.Reason, o.State, o.Reason))
				}
			}
			if m := readyMessage(r); s.Phase == fwv1.PhaseHalted && !strings.HasPrefix(m, fmt.Sprintf("%d stations failed", s.Failed)) {
				bad = append(bad, fmt.Sprintf("%s: failed=%d, halt message %q", r.Name, s.Failed, m))
			}
		}
		w.samples.mu.Lock()
		for name, s := range w.samples.by {
			if len(s.drops) > 0 {
				bad = append(bad, fmt.Sprintf("%s: failure count went down: %s", name, strings.Join(s.drops, ", ")))
			}
		}
		w.samples.mu.Unlock()
		add("each rollout's counts are what happened to the stations it wrote (ownership log)", len(bad) == 0,
			"%d (rollout, station) holds, %d older than the twins' last %d rollouts; %s", written, evictedAll, twin.MaxHistory, orNone(bad))
	}
	// What the stations did: a station that installed a rollout's package
	// while the rollout held it is counted Updated by it, and a station a
	// rollout counts Updated installed its package while it held it.
	{
		var bad []string
		installs := 0
		for i := range list {
			r := &list[i]
			pkg := r.Spec.Firmware.Package
			for id, owns := range hs[string(r.UID)] {
				if evictedFrom(twins[id], r) {
					continue
				}
				did := false
				for _, o := range owns {
					did = did || w.stLog.installedBetween(id, pkg, o.from, o.to)
				}
				if did {
					installs++
				}
				switch st := outs[r.Name][id].State; {
				case did && st != fwv1.OutcomeUpdated:
					bad = append(bad, fmt.Sprintf("%s installed %s while %s held it; counted %s %s", id, pkg, r.Name, st, outs[r.Name][id].Reason))
				case !did && st == fwv1.OutcomeUpdated:
					bad = append(bad, fmt.Sprintf("%s counted Updated by %s but never installed %s while it held it", id, r.Name, pkg))
				}
			}
		}
		add("a station that installed a rollout's package (its log) is counted Updated, only then", len(bad) == 0,
			"%d installs while the rollout held the station; %s", installs, orNone(bad))
	}
	// What a halted rollout holds: every station it wrote (no other
	// rollout wrote one of them while it was halted), and not the stations
	// it never wrote, which it counts Skipped once another rollout owns
	// them and Pending while none does.
	{
		var bad []string
		halted := 0
		for i := range list {
			r := &list[i]
			if r.Status.Phase != fwv1.PhaseHalted {
				continue
			}
			halted++
			mine := hs[string(r.UID)]
			for id, owns := range mine {
				if last := owns[len(owns)-1]; !last.to.IsZero() {
					bad = append(bad, fmt.Sprintf("%s let %s go at %s while halted or before", r.Name, id, last.to.Format("15:04:05")))
				}
			}
			var pending, elsewhere int32
			for id, t := range twins {
				if !selects(r, t) || mine[id] != nil {
					continue
				}
				switch {
				case t.Ownership == nil:
					pending++
				case t.Ownership.UID != string(r.UID):
					elsewhere++
				}
			}
			if r.Status.Pending != pending || r.Status.Skipped-r.Status.SkippedNotOnUpgradePath != elsewhere {
				bad = append(bad, fmt.Sprintf("%s: %d targets owned by no rollout, %d by another; status says pending=%d skipped=%d",
					r.Name, pending, elsewhere, r.Status.Pending, r.Status.Skipped))
			}
		}
		add("a halted rollout holds every station it wrote, and only those", len(bad) == 0, "%d halted rollouts; %s", halted, orNone(bad))
	}
}

// haltedRollout creates the rollout "bad" of a firmware signed with a key
// the stations do not hold, to 1% of one region then the rest, with no
// failure allowed, and waits until it is Halted: the soak's halted
// rollout, whose stations the later rollouts want.
func (w *world) haltedRollout() {
	w.t.Helper()
	w.publishWith(w.wrong, "2.0.99")
	w.createRolloutLimit("bad", "2.0.99", fwv1.StationSelector{Tags: map[string]string{"region": "us-east"}},
		intstr.FromInt32(0), batch("1%"), batch("100%"))
	NewWithT(w.t).Eventually(func() fwv1.RolloutPhase { return w.get("bad").Status.Phase }, time.Minute, 200*time.Millisecond).
		Should(Equal(fwv1.PhaseHalted), func() string { return w.statuses() })
	w.logf("rollout bad halted: %s", statusLine(w.get("bad")))
}

// evictedFrom reports whether the twin no longer says what the rollout r
// counted for it: r let it go, and its entry fell off the twin's history
// (the last twin.MaxHistory rollouts). r's status, frozen when it
// completed, is then the only record.
func evictedFrom(t *twin.Twin, r *fwv1.FirmwareRollout) bool {
	uid := string(r.UID)
	if t == nil || (t.Ownership != nil && t.Ownership.UID == uid) {
		return false
	}
	return twin.Find(t.History, uid) == nil && len(t.History) >= twin.MaxHistory
}
