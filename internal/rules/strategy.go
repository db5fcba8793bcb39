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

// ActiveRollouts returns the UIDs of the rollouts that still hold their
// stations: every rollout that is neither Completed nor Aborted nor being
// deleted. A station owned by one of them is Skipped by every other
// rollout. (A rollout being deleted maps to false: known, not holding.)
func ActiveRollouts(items []fwv1.FirmwareRollout) map[string]bool {
	active := make(map[string]bool, len(items))
	for i := range items {
		it := &items[i]
		switch it.Status.Phase {
		case fwv1.PhaseCompleted, fwv1.PhaseAborted:
		default:
			active[string(it.UID)] = it.DeletionTimestamp.IsZero()
		}
	}
	return active
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
