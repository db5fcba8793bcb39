// Package controllers holds the FirmwareRollout reconciler and the small
// interfaces it consumes (twins, firmware checks, the CUPS twin cache). The
// adapters that satisfy them live in internal/iothub, internal/firmware and
// internal/cups; internal/app wires them together.
//
// A reconcile is an ordered list of phases over a rolloutScope
// (phases.go); each ends the pass early with a Waiting, Stalling or
// Finished outcome (result.go), or an error to retry. One deferred patch
// turns the outcome into status and conditions (status.go). Station
// outcomes follow the shared rules of internal/rules.
//
//	controller.go  the reconciler, its setup and the deferred status patch
//	phases.go      the phase list and the phases of a live rollout
//	steps.go       each step kind: batch, timed pause, indefinite pause
//	status.go      status as a pure function of the station view
//	stations.go    the station view and its caches
//	batch.go       batch writes
//	stream.go      a batch taking every station left, written as the selection's pages arrive
//	preflight.go   the firmware check before the first write
//	release.go     abort and delete
//	failurepolicy.go  the halt, recomputed each pass, and failurePolicy Abort
//	retry.go       the retry annotation: failed stations are sent the update again
//	failmark.go    recording a failure in the ownership record
//	upgradepath.go stations off firmware.upgradeFrom: not written, or put back
//	waker.go, reports.go, relay.go, route.go   station reports
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/analysis"
	"github.com/stationfleet/stationfleet/internal/rules"
)

// FirmwareRolloutReconciler reconciles FirmwareRollout objects: it writes the
// rollout's firmware into the targeted stations' twins batch by batch and
// reports their outcomes in status.
type FirmwareRolloutReconciler struct {
	client.Client
	// APIReader reads what must not be cached: the ConfigMap a rollout's
	// publicKeyRef names, read once per rollout. SetupWithManager sets it
	// to the manager's API reader when nil; a cached read would start an
	// informer over every ConfigMap (list and watch on all of them, and
	// their contents in memory) for one key.
	APIReader client.Reader
	// Registry reads and writes twins (required).
	Registry TwinRegistry
	// Firmware checks the firmware before the first write (required).
	Firmware FirmwareChecker
	// Analyzer takes the measurements of analysis steps; an
	// analysis.Client when nil.
	Analyzer Analyzer
	// Cache, when set, is invalidated for each station written.
	Cache TwinCache
	// Recorder emits Events (optional).
	Recorder events.EventRecorder
	// Wake, when set, wakes the reconciler for a rollout a station reported on.
	Wake *Waker
	// Options are the tunables; zero values take DefaultOptions.
	Options Options
	// Now returns the current time (tests replace it).
	Now func() time.Time

	defaults sync.Once
	targets  sync.Map // rollout UID -> *targetSnapshot
	owned    sync.Map // rollout UID -> *ownedView
}

// +kubebuilder:rbac:groups=firmware.stationfleet.io,resources=firmwarerollouts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=firmware.stationfleet.io,resources=firmwarerollouts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=firmware.stationfleet.io,resources=firmwarerollouts/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get
// (configmaps: the publicKeyRef ConfigMap, read uncached in the rollout's
// namespace. No Secrets: the manager's own are mounted files, and the
// Secret an analysis step's prometheus.secretRef names is read only where
// the user grants `get` on that one Secret by name; see the README,
// "Analysis steps".)
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler with mgr.
func (r *FirmwareRolloutReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Registry == nil || r.Firmware == nil {
		return errors.New("firmware rollout reconciler needs a twin registry and a firmware checker")
	}
	r.applyDefaults()
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&fwv1.FirmwareRollout{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, annotationsChanged{}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Options.MaxConcurrentReconciles}).
		Named("firmwarerollout")
	if r.Wake != nil {
		b = b.WatchesRawSource(source.Channel(r.Wake.ch, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}

// applyDefaults fills the zero options and the clock, once.
func (r *FirmwareRolloutReconciler) applyDefaults() {
	r.defaults.Do(func() {
		r.Options = r.Options.withDefaults()
		if r.Now == nil {
			r.Now = time.Now
		}
		if r.Analyzer == nil {
			r.Analyzer = analysis.New()
		}
	})
}

// Reconcile moves one rollout towards its goal: it runs the phases in
// order until one ends the pass, then patches status once.
func (r *FirmwareRolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	r.applyDefaults()
	obj := &fwv1.FirmwareRollout{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s := newScope(obj, r.Now())
	return r.patchStatus(ctx, s, runPhases(ctx, s, r.phases()))
}

// patchStatus turns the error that ended the pass into the phase,
// conditions and requeue, and writes status in one patch. It sets
// observedGeneration only when the pass succeeded.
func (r *FirmwareRolloutReconciler) patchStatus(ctx context.Context, s *rolloutScope, passErr error) (ctrl.Result, error) {
	if errors.Is(passErr, errObjectGone) {
		return ctrl.Result{}, nil
	}
	sum, result, retErr := summarize(passErr, s.reached())
	obj := s.obj
	if sum.phase == fwv1.PhaseHalted && sum.reason == fwv1.ReasonHalted {
		// The halt's count is the status's, whatever the pass did after
		// the halt was decided.
		if limit, err := rules.FailureLimit(obj.Spec.Strategy.MaxFailures, int(obj.Status.Targets)); err == nil {
			sum.message = haltMessage(obj, limit)
		}
	}
	obj.Status.Phase = sum.phase
	setConditions(&obj.Status.Conditions, obj.Generation, sum)
	keepNextWindow(&obj.Status, sum)
	if retErr == nil {
		obj.Status.ObservedGeneration = obj.Generation
	}
	switch err := r.Status().Patch(ctx, obj, statusPatch{base: s.base}); {
	case err == nil, apierrors.IsNotFound(err):
	case apierrors.IsConflict(err) && retErr == nil:
		// Worked from a stale copy (see statusPatch): again, at once,
		// on the fresh one. Not an error worth a log line.
		result = ctrl.Result{RequeueAfter: 10 * time.Millisecond}
	default:
		retErr = kerrors.NewAggregate([]error{retErr, fmt.Errorf("patch status: %w", err)})
	}
	rolloutStations.record(obj)
	return result, retErr
}
