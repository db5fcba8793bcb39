package soak

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
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
	for {
		var list fwv1.FirmwareRolloutList
		if err := testEnv.Client.List(ctx, &list, client.InNamespace(w.ns)); err == nil {
			sp.mu.Lock()
			for i := range list.Items {
				sp.note(&list.Items[i], w)
			}
			sp.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
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
