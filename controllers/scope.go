package controllers

import (
	"context"
	"time"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// rolloutScope is what one pass over a rollout works on: the object and the
// copy its status patch is computed from, the clock of the pass, and, once
// loadStations ran, the station view and the other rollouts.
type rolloutScope struct {
	obj  *fwv1.FirmwareRollout
	base *fwv1.FirmwareRollout // the object as read: the status patch's base
	now  time.Time
	// began is when the pass began, on the wall clock (now is the
	// reconciler's clock, which tests set): what the pass itself costs is
	// measured from it.
	began time.Time

	// view is every station the rollout concerns, classified (loadStations).
	view *stationView
	// selTwins are the twins of the selection when this pass read it and
	// it had at most keepTwins stations, nil otherwise (selected): what a
	// batch streamed in this pass writes from, once.
	selTwins []*twin.Twin
	// active holds the UIDs of the rollouts that still hold their stations
	// (rules.ActiveRollouts) and byUID every rollout (loadStations).
	active map[string]bool
	byUID  map[string]*fwv1.FirmwareRollout
	// windows are the parsed strategy.windows (checkWindows).
	windows []rules.Window

	// markErr is why markFailed could not record some failures (their
	// stations are counted InProgress until it can).
	markErr error

	// retried is how many failed stations the retry phase sent the update
	// again in this pass (liftHalt says so).
	retried int

	// phase is the phase the pass has reached, shown if a transient error
	// ends it (a Waiting, Stalling or Finished outcome names its own).
	phase fwv1.RolloutPhase
}

func newScope(obj *fwv1.FirmwareRollout, now time.Time) *rolloutScope {
	return &rolloutScope{obj: obj, base: obj.DeepCopy(), now: now, began: time.Now()}
}

// uid is the rollout's UID as the twins' ownership records hold it.
func (s *rolloutScope) uid() string { return string(s.obj.UID) }

// key is the rollout's "namespace/name".
func (s *rolloutScope) key() string { return s.obj.Namespace + "/" + s.obj.Name }

// params are the rules' evaluation parameters of the rollout in this pass.
func (s *rolloutScope) params() rules.Params { return rules.ParamsFor(s.obj, s.now) }

// reached is the phase to show when a transient error ends the pass.
func (s *rolloutScope) reached() fwv1.RolloutPhase {
	switch {
	case s.phase != "":
		return s.phase
	case s.obj.Status.Phase != "":
		return s.obj.Status.Phase
	default:
		return fwv1.PhasePending
	}
}

// phase is one step of a pass. It returns nil to let the next phase run, a
// *Waiting, *Stalling or *Finished to end the pass with that outcome,
// errObjectGone when the rollout is gone, or an error to retry.
type phase func(ctx context.Context, s *rolloutScope) error

// runPhases runs the phases in order until one returns an error.
func runPhases(ctx context.Context, s *rolloutScope, phases []phase) error {
	for _, p := range phases {
		if err := p(ctx, s); err != nil {
			return err
		}
	}
	return nil
}
