package controllers

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unique"

	"k8s.io/apimachinery/pkg/util/intstr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// station is the compact per-station record the controller plans with: a few
// dozen bytes, so that a 100,000-station rollout fits easily in memory. It is
// rebuilt from the twins on every sync; nothing here is the source of truth.
type station struct {
	id    string
	order uint64 // deterministic spread order for this rollout

	ownerUID  string    // ownership record's rollout UID, "" when unowned
	ownerName string    // ownership record's "namespace/name"
	batch     int       // step number that wrote it (when owned)
	writtenAt time.Time // when it was written (when owned)

	// From the CUPS server's observation.
	pkg            string
	servedPackage  string
	updatesServed  int
	refusal        string
	refusedPackage string
}

func newStation(t *twin.Twin, rolloutUID string) station {
	s := station{id: t.DeviceID, order: spreadOrder(rolloutUID, t.DeviceID)}
	// The same few values (rollout UIDs and names, packages, reasons)
	// repeat across a fleet: intern them, so that 100,000 stations hold one
	// copy of each instead of 100,000.
	if o := t.Ownership; o != nil {
		s.ownerUID, s.ownerName, s.batch, s.writtenAt = intern(o.UID), intern(o.Rollout), o.Batch, o.WrittenAt
	}
	if ob := t.Observation; ob != nil {
		s.pkg = intern(ob.Package)
		s.servedPackage, s.updatesServed = intern(ob.ServedPackage), ob.UpdatesServed
		s.refusal, s.refusedPackage = intern(ob.Refusal), intern(ob.RefusedPackage)
	}
	return s
}

func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// spreadOrder orders stations deterministically for one rollout: stable
// across restarts, but spread across the fleet rather than alphabetical, so
// that a canary batch is not always the same few stations of one site.
func spreadOrder(rolloutUID, deviceID string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(rolloutUID))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(deviceID))
	return h.Sum64()
}

// sortStations sorts by spread order, then id (hash collisions stay stable).
func sortStations(ss []station) {
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].order != ss[j].order {
			return ss[i].order < ss[j].order
		}
		return ss[i].id < ss[j].id
	})
}

// outcome is a station's state within a rollout, with the reason and message
// for failures and skips.
type outcome struct {
	state   fwv1.StationOutcome
	reason  string
	message string
	// deadline is when an in-progress station times out.
	deadline time.Time
}

// StationOutcome is one station's state within a rollout, as the controller
// derives it from the station's twin.
type StationOutcome struct {
	// State is Pending, InProgress, Updated, Failed or Skipped.
	State fwv1.StationOutcome
	// Reason is the failure or skip reason, empty otherwise.
	Reason string
	// Message explains a failure or skip, for a person.
	Message string
	// Deadline is when an in-progress station times out.
	Deadline time.Time
}

// EvaluateStation classifies a station that the rollout obj selects or owns,
// with the controller's own rule, so that tools (the CLI's stations command)
// report exactly what the controller counts:
//
//   - owned by obj: Updated when it reports the rollout's package; Failed
//     KeyMismatch / ModelMismatch when CUPS withheld this package for that
//     reason; Failed NotApplied when served more than maxUpdateAttempts times
//     and still on another package; Failed TimedOut once progressDeadline
//     passed since its twin was written; else InProgress;
//   - owned by another rollout whose UID is in active: Skipped;
//   - otherwise: Pending (not yet written).
func EvaluateStation(t *twin.Twin, obj *fwv1.FirmwareRollout, active map[string]bool, now time.Time) StationOutcome {
	uid := string(obj.UID)
	o := classify(newStation(t, uid), uid, active, paramsFor(obj, now))
	return StationOutcome{State: o.state, Reason: o.reason, Message: o.message, Deadline: o.deadline}
}

// classify decides a station's outcome for the rollout uid.
func classify(s station, uid string, active map[string]bool, p evalParams) outcome {
	switch {
	case s.ownerUID == uid:
		return evaluate(s, p)
	case s.ownerUID != "" && active[s.ownerUID]:
		return outcome{state: fwv1.OutcomeSkipped, reason: fwv1.SkipOwnedElsewhere,
			message: "owned by the active rollout " + s.ownerName}
	default:
		return outcome{state: fwv1.OutcomePending}
	}
}

// The API's defaults (kubebuilder defaults of progressDeadline and
// maxUpdateAttempts), for a rollout stored without them.
const (
	defaultProgressDeadline  = 26 * time.Hour
	defaultMaxUpdateAttempts = 3
)

// paramsFor returns the evaluation parameters of a rollout at now.
func paramsFor(obj *fwv1.FirmwareRollout, now time.Time) evalParams {
	p := evalParams{pkg: obj.Spec.Firmware.Package, maxUpdateAttempts: defaultMaxUpdateAttempts, progressDeadline: defaultProgressDeadline, now: now}
	if a := obj.Spec.Strategy.MaxUpdateAttempts; a != nil {
		p.maxUpdateAttempts = int(*a)
	}
	if d := obj.Spec.Strategy.ProgressDeadline; d != nil {
		p.progressDeadline = d.Duration
	}
	return p
}

// evalParams is what outcome evaluation needs from the rollout.
type evalParams struct {
	pkg               string
	maxUpdateAttempts int
	progressDeadline  time.Duration
	now               time.Time
}

// evaluate decides the outcome of a station this rollout has written. It is
// a pure function of the station's twin records, so every replica and every
// restart reaches the same answer.
func evaluate(s station, p evalParams) outcome {
	switch {
	case s.pkg == p.pkg:
		return outcome{state: fwv1.OutcomeUpdated}
	case s.refusal == twin.RefusalKeyMismatch && s.refusedPackage == p.pkg:
		return outcome{state: fwv1.OutcomeFailed, reason: fwv1.FailureKeyMismatch,
			message: "the station has no sig-N.key whose CRC is the rollout's keyChecksum; it was not sent the firmware"}
	case s.refusal == twin.RefusalModelMismatch && s.refusedPackage == p.pkg:
		return outcome{state: fwv1.OutcomeFailed, reason: fwv1.FailureModelMismatch,
			message: "the station reports another model than firmware.model; it was not sent the firmware"}
	case s.servedPackage == p.pkg && s.updatesServed > p.maxUpdateAttempts:
		// The CUPS server counts every update it sends; a station that asks
		// again after maxUpdateAttempts updates, still on its old package,
		// did not apply it.
		return outcome{state: fwv1.OutcomeFailed, reason: fwv1.FailureNotApplied,
			message: fmt.Sprintf("served the update %d times, the station still reports package %q", p.maxUpdateAttempts, s.pkg)}
	}
	deadline := s.writtenAt.Add(p.progressDeadline)
	if !s.writtenAt.IsZero() && !p.now.Before(deadline) {
		msg := fmt.Sprintf("no report of package %q within %s of the twin being written", p.pkg, p.progressDeadline)
		if s.pkg != "" {
			msg += fmt.Sprintf("; last reported %q", s.pkg)
		}
		return outcome{state: fwv1.OutcomeFailed, reason: fwv1.FailureTimedOut, message: msg}
	}
	return outcome{state: fwv1.OutcomeInProgress, deadline: deadline}
}

// batchSize is how many stations the batch step adds, given all targets and
// how many are still unwritten. A percentage is of all targets, rounded up.
func batchSize(batch *intstr.IntOrString, targets, unwritten int) (int, error) {
	n, err := countOrPercent(batch, targets, true)
	if err != nil {
		return 0, err
	}
	if n > unwritten {
		n = unwritten
	}
	return n, nil
}

// failureLimit is how many failures a rollout tolerates; one more halts it.
// A percentage is of all targets, rounded down (so "5%" of 100 tolerates 5).
// Without maxFailures every failure is tolerated.
func failureLimit(maxFailures *intstr.IntOrString, targets int) (int, error) {
	if maxFailures == nil {
		return math.MaxInt, nil
	}
	return countOrPercent(maxFailures, targets, false)
}

func countOrPercent(v *intstr.IntOrString, total int, roundUp bool) (int, error) {
	if v == nil {
		return 0, fmt.Errorf("no value")
	}
	if v.Type == intstr.Int {
		return int(v.IntVal), nil
	}
	s := strings.TrimSpace(v.StrVal)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		pct, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("invalid percentage %q", s)
		}
		f := float64(pct) * float64(total) / 100
		if roundUp {
			return int(math.Ceil(f)), nil
		}
		return int(math.Floor(f)), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("invalid count %q", s)
	}
	return n, nil
}
