package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
)

// Batch windows (strategy.windows): a batch step starts, that is writes
// the first twin of its batch, only while a window is open. Outside, the
// rollout waits in phase Paused with reason OutsideWindow and
// status.nextWindow, and comes back at the opening. A batch already
// started goes on whatever the time; pauses and halts are unaffected.

// checkWindows parses strategy.windows once per pass. A schedule or a zone
// that does not parse stalls the rollout (InvalidStrategy) before any twin
// of a new batch is written, with the parser's message; stations already
// written keep being counted.
func (r *FirmwareRolloutReconciler) checkWindows(ctx context.Context, s *rolloutScope) error {
	if int(s.obj.Status.CurrentStep) > len(s.obj.Spec.Strategy.Steps) {
		return nil // every step done: no batch left to start
	}
	ws, err := rules.ParseWindows(s.obj.Spec.Strategy.Windows)
	if err == nil {
		s.windows = ws
		return nil
	}
	return r.invalidStrategy(ctx, s, err.Error()+"; no batch starts until spec.strategy.windows is fixed")
}

// invalidStrategy stalls the rollout with msg (reason InvalidStrategy),
// announcing it once in a Warning Event: Pending before its first step,
// Progressing after, still counting the stations in flight.
func (r *FirmwareRolloutReconciler) invalidStrategy(ctx context.Context, s *rolloutScope, msg string) error {
	st := &s.obj.Status
	if reason, prev := readyCondition(s.obj); reason != fwv1.ReasonInvalidStrategy || prev != msg {
		r.event(ctx, s.obj, corev1.EventTypeWarning, fwv1.ReasonInvalidStrategy, msg)
	}
	phase := fwv1.PhaseProgressing
	if st.CurrentStep == 0 {
		phase = fwv1.PhasePending
	}
	stall := &Stalling{Phase: phase, Reason: fwv1.ReasonInvalidStrategy, Err: errors.New(msg)}
	if st.InProgress > 0 {
		stall.RequeueAfter = r.requeueWhileInFlight(s) // keep counting them
	}
	return stall
}

// waitForWindow lets batch step i start when a window is open at the pass's
// time, and otherwise ends the pass waiting for the next opening.
func (r *FirmwareRolloutReconciler) waitForWindow(ctx context.Context, s *rolloutScope, i int) error {
	ws := rules.WindowsAt(s.windows, s.now)
	if ws.Open {
		return nil
	}
	st := &s.obj.Status
	msg := fmt.Sprintf("step %d of %d: %s", i, len(s.obj.Spec.Strategy.Steps), rules.WindowWaitMessage(ws, s.now))
	// Announced when a wait starts, or when the opening it waits for
	// moved (the windows changed); status.nextWindow outlives a transient
	// error, so a retried pass does not announce it again.
	if prev := s.base.Status.NextWindow; prev == nil || !prev.Time.Equal(ws.Next) {
		r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonOutsideWindow, msg)
	}
	if len(st.Batches) == 0 {
		st.StartTime = nil // startTime is when the first twin is written (startBatch)
	}
	requeue := r.requeueWhileInFlight(s)
	if !ws.Next.IsZero() {
		next := metav1.NewTime(ws.Next)
		st.NextWindow = &next
		// At the opening (a second late, so the window is surely open),
		// or sooner to keep counting stations and see spec changes.
		requeue = min(requeue, ws.Next.Sub(s.now)+time.Second)
	}
	return &Waiting{Phase: fwv1.PhasePaused, Reason: fwv1.ReasonOutsideWindow, Message: msg, RequeueAfter: requeue}
}

// startBatch records the rollout's startTime when its first batch starts
// after a window wait cleared it.
func startBatch(s *rolloutScope) {
	if s.obj.Status.StartTime == nil {
		t := metav1.NewTime(s.now)
		s.obj.Status.StartTime = &t
	}
}

// keepNextWindow drops status.nextWindow unless the pass ended waiting for
// a window; a transient error keeps it (the wait goes on).
func keepNextWindow(st *fwv1.FirmwareRolloutStatus, sum summary) {
	if sum.err == nil && sum.reason != fwv1.ReasonOutsideWindow {
		st.NextWindow = nil
	}
}
