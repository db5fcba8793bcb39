package rules

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// ActiveRollouts maps the UID of every rollout in items to whether it
// still holds its stations: true for every rollout that is neither
// Completed nor Aborted nor being deleted, false for those (known, not
// holding). A station owned by a holding rollout is Skipped by every other
// rollout; so is one owned by a rollout that is not in the map at all
// (Holds): the twin's ownership record is the lock, and a rollout this
// process does not see (another namespace's, or one its cache has not
// caught up with) has not let it go.
func ActiveRollouts(items []fwv1.FirmwareRollout) map[string]bool {
	active := make(map[string]bool, len(items))
	for i := range items {
		it := &items[i]
		switch it.Status.Phase {
		case fwv1.PhaseCompleted, fwv1.PhaseAborted:
			active[string(it.UID)] = false
		default:
			active[string(it.UID)] = it.DeletionTimestamp.IsZero()
		}
	}
	return active
}

// Holds reports whether the rollout ownerUID, which owns a station, still
// holds it, given ActiveRollouts: it is active, or it is not known at all.
func Holds(active map[string]bool, ownerUID string) bool {
	if ownerUID == "" {
		return false
	}
	held, known := active[ownerUID]
	return held || !known
}

// BatchSize is how many stations the batch step adds, given all targets
// and how many are still unwritten. A percentage is of all targets,
// rounded up.
func BatchSize(batch *intstr.IntOrString, targets, unwritten int) (int, error) {
	n, err := countOrPercent(batch, targets, true)
	if err != nil {
		return 0, err
	}
	return min(n, unwritten), nil
}

// FailureLimit is how many failures a rollout tolerates; one more halts
// it. A percentage is of all targets, rounded down (so "5%" of 100
// tolerates 5). Without maxFailures every failure is tolerated.
func FailureLimit(maxFailures *intstr.IntOrString, targets int) (int, error) {
	if maxFailures == nil {
		return math.MaxInt, nil
	}
	return countOrPercent(maxFailures, targets, false)
}

func countOrPercent(v *intstr.IntOrString, total int, roundUp bool) (int, error) {
	if v == nil {
		return 0, errors.New("no value")
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
