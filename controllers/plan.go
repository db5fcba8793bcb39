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
	failed    string    // the Failed reason the owner recorded in the ownership record

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
		s.failed = intern(o.Failed)
	}
	if ob := t.Observation; ob != nil {
		s.pkg = intern(ob.Package)
		// Served counts and refusals belong to the rollout that owned the
		// station when CUPS recorded them: another rollout's (an aborted
		// one's KeyMismatch, say) say nothing about this one.
		if ob.ServedRollout == rolloutUID {
			s.servedPackage, s.updatesServed = intern(ob.ServedPackage), ob.UpdatesServed
		}
		if ob.RefusedRollout == rolloutUID {
			s.refusal, s.refusedPackage = intern(ob.Refusal), intern(ob.RefusedPackage)
		}
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
	// Batch is the step number whose batch wrote the station, 0 when the
	// rollout never wrote it.
	Batch int
	// UpdatesServed is how many times CUPS sent the station this rollout's
	// update.
	UpdatesServed int
	// FromHistory is true when the rollout no longer owns the station and
	// the outcome is the one it counted, kept in the twin's history (a
	// later rollout took the station over, or this one was aborted).
	FromHistory bool
}

// EvaluateStation classifies a station that the rollout obj selects or owns,
// with the controller's own rule, so that tools (the CLI's stations command)
// report exactly what the controller counts:
//
//   - owned by obj: see evaluate;
//   - no longer owned by obj but in the twin's history of obj: what obj
//     counted when it let the station go (FromHistory);
//   - owned by another rollout whose UID is in active: Skipped;
//   - otherwise: Pending (not yet written).
func EvaluateStation(t *twin.Twin, obj *fwv1.FirmwareRollout, active map[string]bool, now time.Time) StationOutcome {
	uid := string(obj.UID)
	if t.Ownership == nil || t.Ownership.UID != uid {
		if h := twin.Find(t.History, uid); h != nil {
			return historyOutcome(t, h)
		}
	}
	s := newStation(t, uid)
	p := paramsFor(obj, now)
	o := classify(s, uid, active, p)
	so := StationOutcome{State: o.state, Reason: o.reason, Message: o.message, Deadline: o.deadline}
	if s.ownerUID == uid {
		so.Batch = s.batch
	}
	if s.servedPackage == p.pkg {
		so.UpdatesServed = s.updatesServed
	}
	return so
}

// classify decides a station's outcome for the rollout uid.
func classify(s station, uid string, active map[string]bool, p evalParams) outcome {
	switch {
	case s.ownerUID == uid:
		return evaluate(s, p)
	case s.ownerUID != "" && active[s.ownerUID]:
		return outcome{state: fwv1.OutcomeSkipped, reason: string(fwv1.SkipOwnedElsewhere),
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
// restart reaches the same answer:
//
//   - the ownership record says Failed: Failed with that reason, final (the
//     controller recorded it when it first counted the failure);
//   - the station reports the rollout's package: Updated;
//   - CUPS withheld the update from it, for this rollout, because of
//     KeyMismatch, ModelMismatch or NotApplied (asked again after
//     maxUpdateAttempts sends): Failed with that reason;
//   - progressDeadline passed since its twin was written: Failed TimedOut;
//   - else InProgress.
func evaluate(s station, p evalParams) outcome {
	if s.failed != "" {
		return failed(s.failed, s, p)
	}
	switch {
	case s.pkg == p.pkg:
		return outcome{state: fwv1.OutcomeUpdated}
	case s.refusal != "" && s.refusedPackage == p.pkg:
		return failed(s.refusal, s, p)
	case s.servedPackage == p.pkg && s.updatesServed > p.maxUpdateAttempts:
		// Recorded by a CUPS server that did not know the limit (an
		// ownership record written before it carried maxUpdateAttempts).
		return failed(string(fwv1.FailureNotApplied), s, p)
	}
	deadline := s.writtenAt.Add(p.progressDeadline)
	if !s.writtenAt.IsZero() && !p.now.Before(deadline) {
		return failed(string(fwv1.FailureTimedOut), s, p)
	}
	return outcome{state: fwv1.OutcomeInProgress, deadline: deadline}
}

// failed is the Failed outcome for reason, with a message for a person.
func failed(reason string, s station, p evalParams) outcome {
	o := outcome{state: fwv1.OutcomeFailed, reason: reason}
	switch fwv1.FailureReason(reason) {
	case fwv1.FailureKeyMismatch:
		o.message = "the station has no sig-N.key whose CRC is the rollout's keyChecksum; it was not sent the firmware"
	case fwv1.FailureModelMismatch:
		o.message = "the station reports another model than firmware.model; it was not sent the firmware"
	case fwv1.FailureNotApplied:
		n := p.maxUpdateAttempts
		if s.servedPackage == p.pkg && s.updatesServed > 0 {
			n = s.updatesServed
		}
		o.message = fmt.Sprintf("served the update %d times, the station still reports package %q", n, s.pkg)
	case fwv1.FailureTimedOut:
		o.message = fmt.Sprintf("no report of package %q within %s of the twin being written", p.pkg, p.progressDeadline)
		if s.pkg != "" {
			o.message += fmt.Sprintf("; last reported %q", s.pkg)
		}
	default:
		o.message = "counted Failed (" + reason + ")"
	}
	return o
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
