// Package controllers holds the FirmwareRollout reconciler and the small
// interfaces it consumes (twins, firmware checks, the CUPS twin cache). The
// adapters that satisfy them live in internal/iothub, internal/firmware and
// internal/cups; cmd/manager wires them together.
package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// ConditionFirmwareVerified records that the preflight check passed for the
// rollout's (immutable) firmware, so it is not downloaded again.
//
// Deprecated: use fwv1.ConditionFirmwareVerified; kept while the controller
// is being rewritten (issue 14).
const ConditionFirmwareVerified = fwv1.ConditionFirmwareVerified

// Options are the reconciler's tunables.
type Options struct {
	// TargetResync is how long the selector's result is reused before the
	// registry is queried again (it is also refreshed at every step).
	TargetResync time.Duration
	// StatusResync is how often an active rollout re-reads its stations
	// when no CUPS report woke it (reports from other replicas arrive so).
	StatusResync time.Duration
	// PreflightRetry is how often a rollout stalled on its firmware checks
	// again (a blob uploaded late, a Secret fixed).
	PreflightRetry time.Duration
	// WriteConcurrency is how many twin writes run at once; the registry's
	// own rate limit still applies.
	WriteConcurrency int
	// MaxWritesPerReconcile bounds one reconcile's writes, so status shows
	// progress during a large batch.
	MaxWritesPerReconcile int
	// MaxConcurrentReconciles is how many rollouts reconcile at once.
	MaxConcurrentReconciles int
	// ReportRelayInterval is how often at most this process writes one
	// rollout's ReportedStationsAnnotation (see ReportRelay).
	ReportRelayInterval time.Duration
}

// DefaultOptions returns the defaults used by the manager.
func DefaultOptions() Options {
	return Options{
		TargetResync:            time.Minute,
		StatusResync:            30 * time.Second,
		PreflightRetry:          5 * time.Minute,
		WriteConcurrency:        16,
		MaxWritesPerReconcile:   2000,
		MaxConcurrentReconciles: 4,
		ReportRelayInterval:     DefaultReportRelayInterval,
	}
}

// BindFlags registers the options on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.DurationVar(&o.TargetResync, "rollout-target-resync", o.TargetResync, "How long a rollout reuses its selector's result before querying IoT Hub again.")
	fs.DurationVar(&o.StatusResync, "rollout-status-resync", o.StatusResync, "How often an active rollout re-reads its stations' twins when no CUPS report woke it.")
	fs.DurationVar(&o.PreflightRetry, "rollout-preflight-retry", o.PreflightRetry, "How often a rollout stalled on its firmware checks it again.")
	fs.IntVar(&o.WriteConcurrency, "rollout-write-concurrency", o.WriteConcurrency, "Twin writes in flight at once per rollout (the IoT Hub rate limit still applies).")
	fs.IntVar(&o.MaxWritesPerReconcile, "rollout-max-writes-per-reconcile", o.MaxWritesPerReconcile, "Twin writes per reconcile before status is updated and the rollout goes on.")
	fs.IntVar(&o.MaxConcurrentReconciles, "rollout-max-concurrent-reconciles", o.MaxConcurrentReconciles, "Rollouts reconciled at once.")
	fs.DurationVar(&o.ReportRelayInterval, "rollout-report-relay-interval", o.ReportRelayInterval, "How often at most this process tells another process's controller, through a rollout's annotation, which of its stations reported to this CUPS server.")
}

// FirmwareRolloutReconciler reconciles FirmwareRollout objects: it writes the
// rollout's firmware into the targeted stations' twins batch by batch and
// reports their outcomes in status.
type FirmwareRolloutReconciler struct {
	client.Client
	// Registry reads and writes twins (required).
	Registry TwinRegistry
	// Firmware checks the firmware before the first write (required).
	Firmware FirmwareChecker
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

	targets sync.Map // rollout UID -> *targetSnapshot
	owned   sync.Map // rollout UID -> *ownedView
}

// targetSnapshot is a cached selector result.
type targetSnapshot struct {
	at         time.Time
	generation int64
	stations   []target
}

// +kubebuilder:rbac:groups=firmware.stationfleet.io,resources=firmwarerollouts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=firmware.stationfleet.io,resources=firmwarerollouts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=firmware.stationfleet.io,resources=firmwarerollouts/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler with mgr.
func (r *FirmwareRolloutReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Registry == nil || r.Firmware == nil {
		return errors.New("firmware rollout reconciler needs a twin registry and a firmware checker")
	}
	r.applyDefaults()
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

func (r *FirmwareRolloutReconciler) applyDefaults() {
	d := DefaultOptions()
	o := &r.Options
	if o.TargetResync <= 0 {
		o.TargetResync = d.TargetResync
	}
	if o.StatusResync <= 0 {
		o.StatusResync = d.StatusResync
	}
	if o.PreflightRetry <= 0 {
		o.PreflightRetry = d.PreflightRetry
	}
	if o.WriteConcurrency <= 0 {
		o.WriteConcurrency = d.WriteConcurrency
	}
	if o.MaxWritesPerReconcile <= 0 {
		o.MaxWritesPerReconcile = d.MaxWritesPerReconcile
	}
	if o.MaxConcurrentReconciles <= 0 {
		o.MaxConcurrentReconciles = d.MaxConcurrentReconciles
	}
	if r.Now == nil {
		r.Now = time.Now
	}
}

// Reconcile moves one rollout towards its goal.
func (r *FirmwareRolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	r.applyDefaults()
	obj := &fwv1.FirmwareRollout{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	base := obj.DeepCopy()
	var sum summary
	deleted := false

	// One deferred patch computes the summary conditions and writes status.
	defer func() {
		if deleted {
			return
		}
		if retErr != nil && !errors.Is(retErr, reconcile.TerminalError(nil)) {
			sum.err = retErr
		}
		if sum.phase == "" {
			sum.phase = obj.Status.Phase
			if sum.phase == "" {
				sum.phase = fwv1.PhasePending
			}
		}
		obj.Status.Phase = sum.phase
		setConditions(&obj.Status.Conditions, obj.Generation, sum)
		if retErr == nil {
			obj.Status.ObservedGeneration = obj.Generation
		}
		switch err := r.Status().Patch(ctx, obj, statusPatch{base: base}); {
		case err == nil, apierrors.IsNotFound(err):
		case apierrors.IsConflict(err) && retErr == nil:
			// Worked from a stale copy (see statusPatch): again, at once,
			// on the fresh one. Not an error worth a log line.
			result = ctrl.Result{RequeueAfter: 10 * time.Millisecond}
		default:
			retErr = kerrors.NewAggregate([]error{retErr, fmt.Errorf("patch status: %w", err)})
		}
		rolloutStations.record(obj)
	}()

	if !obj.DeletionTimestamp.IsZero() {
		var err error
		deleted, err = r.reconcileDelete(ctx, obj)
		sum = summary{phase: obj.Status.Phase, reason: fwv1.ReasonDeleting, message: "releasing the stations this rollout owns"}
		return ctrl.Result{}, err
	}

	// The finalizer must be stored before any twin is written, so that a
	// deletion always gets the chance to release them.
	if !controllerutil.ContainsFinalizer(obj, fwv1.Finalizer) {
		patchBase := obj.DeepCopy()
		controllerutil.AddFinalizer(obj, fwv1.Finalizer)
		if err := r.Patch(ctx, obj, client.MergeFrom(patchBase)); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
		base.Finalizers = obj.Finalizers
		base.ResourceVersion = obj.ResourceVersion
	}
	r.takeReports(ctx, obj, base) // stations that reported to another process's CUPS server

	return r.reconcileRollout(ctx, obj, &sum)
}

// statusPatch is a JSON merge patch of the status from base to the object,
// which always carries the counters: a merge patch leaves out what did not
// change, and a zero count that was never stored would then stay missing
// (kubectl would print an empty FAILED column instead of 0).
type statusPatch struct{ base *fwv1.FirmwareRollout }

// Type implements client.Patch.
func (p statusPatch) Type() types.PatchType { return types.MergePatchType }

// Data implements client.Patch.
func (p statusPatch) Data(obj client.Object) ([]byte, error) {
	raw, err := client.MergeFrom(p.base).Data(obj)
	if err != nil {
		return nil, err
	}
	patch := map[string]any{}
	if err := json.Unmarshal(raw, &patch); err != nil {
		return nil, err
	}
	st := obj.(*fwv1.FirmwareRollout).Status
	status, _ := patch["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
	}
	// Every counter of StationCounts, by its JSON name (none is omitempty).
	counts, err := json.Marshal(st.StationCounts)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(counts, &status); err != nil {
		return nil, err
	}
	status["targets"], status["currentStep"] = st.Targets, st.CurrentStep
	patch["status"] = status
	// Optimistic lock: a reconcile that worked from a copy older than the
	// status it last wrote (the informer had not caught up) must not write
	// its stale counts and batch times over it; it is retried on a fresh
	// copy (a rollout's status is its history).
	if rv := p.base.ResourceVersion; rv != "" {
		patch["metadata"] = map[string]any{"resourceVersion": rv}
	}
	return json.Marshal(patch)
}

// reconcileRollout is the table of contents of a live rollout.
func (r *FirmwareRolloutReconciler) reconcileRollout(ctx context.Context, obj *fwv1.FirmwareRollout, sum *summary) (ctrl.Result, error) {
	st := &obj.Status
	switch st.Phase {
	case fwv1.PhaseCompleted, fwv1.PhaseAborted:
		*sum = summaryFromStatus(obj)
		return ctrl.Result{}, nil
	}
	if obj.Spec.Abort {
		return r.reconcileAbort(ctx, obj, sum)
	}
	if ok, res := r.preflight(ctx, obj, sum); !ok {
		return res, nil
	}
	v, err := r.loadStations(ctx, obj)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.updateCounts(ctx, obj, v)
	if err := r.markFailed(ctx, obj, v); err != nil {
		return ctrl.Result{}, err
	}

	if st.Phase == fwv1.PhaseHalted {
		*sum = summaryFromStatus(obj)
		return r.requeueWhileInFlight(v), nil
	}
	if limit, err := failureLimit(obj.Spec.Strategy.MaxFailures, len(v.all)); err == nil && int(st.Failed) > limit {
		now := metav1.NewTime(r.Now())
		st.CompletionTime = &now
		msg := fmt.Sprintf("%d stations failed, more than maxFailures allows (%d); no further batch is written. Abort to restore the previous firmware, or delete the rollout", st.Failed, limit)
		*sum = summary{phase: fwv1.PhaseHalted, reason: fwv1.ReasonHalted, message: msg, stalled: true}
		r.event(ctx, obj, corev1.EventTypeWarning, fwv1.ReasonHalted, msg)
		return r.requeueWhileInFlight(v), nil
	}
	if obj.Spec.Paused {
		*sum = summary{phase: fwv1.PhasePaused, reason: fwv1.ReasonPaused,
			message: fmt.Sprintf("spec.paused is true: no twin is written until it is false (step %d of %d)", st.CurrentStep, len(obj.Spec.Strategy.Steps))}
		if obj.Status.Phase != fwv1.PhasePaused {
			r.event(ctx, obj, corev1.EventTypeNormal, fwv1.ReasonPaused, sum.message)
		}
		return r.requeueWhileInFlight(v), nil
	}
	return r.reconcileSteps(ctx, obj, v, sum)
}

// stationView is every station the rollout concerns, classified.
type stationView struct {
	all       []station // selected or owned by this rollout, in spread order
	outs      []outcome // the outcome of all[i]
	unwritten []int     // positions in all of the targets not yet written nor skipped, in order
}

// loadStations reads the stations this rollout owns and the stations its
// selector matches, and classifies them. Owned stations come from an
// in-memory view that a full registry query refreshes every StatusResync; in
// between, only the stations the CUPS server reported on are read again (one
// twin read each instead of a query over the whole rollout). The selector's
// result is cached for TargetResync and refreshed at each step.
func (r *FirmwareRolloutReconciler) loadStations(ctx context.Context, obj *fwv1.FirmwareRollout) (*stationView, error) {
	uid := string(obj.UID)
	owned, err := r.ownedStations(ctx, obj)
	if err != nil {
		return nil, err
	}
	selected, err := r.selected(ctx, obj)
	if err != nil {
		return nil, err
	}
	active, err := r.activeRollouts(ctx)
	if err != nil {
		return nil, err
	}

	v := &stationView{all: make([]station, 0, len(owned)+len(selected))}
	p := r.evalParams(obj)
	for _, s := range owned {
		v.all = append(v.all, s)
	}
	for _, t := range selected {
		if _, ok := owned[t.id]; ok {
			continue // the owned view is fresher
		}
		s := station{id: t.id, order: t.order}
		// A selection that saw this rollout's ownership the fresher owned
		// view does not have means the station was released: unwritten.
		if t.ownerUID != uid {
			s.ownerUID, s.ownerName = t.ownerUID, t.ownerName
		}
		v.all = append(v.all, s)
	}
	sortStations(v.all)
	v.outs = make([]outcome, len(v.all))
	for i, s := range v.all {
		o := classify(s, uid, active, p)
		v.outs[i] = o
		if o.state == fwv1.OutcomePending {
			v.unwritten = append(v.unwritten, i)
		}
	}
	return v, nil
}

// ownedView is the in-memory view of the stations one rollout owns.
type ownedView struct {
	mu       sync.Mutex
	stations map[string]station
	fullAt   time.Time
}

// ownedStations returns the rollout's owned stations, refreshed as
// loadStations describes. The map is the view itself: read it, don't keep it.
func (r *FirmwareRolloutReconciler) ownedStations(ctx context.Context, obj *fwv1.FirmwareRollout) (map[string]station, error) {
	uid := string(obj.UID)
	vi, _ := r.owned.LoadOrStore(uid, &ownedView{})
	ov := vi.(*ownedView)
	ov.mu.Lock()
	defer ov.mu.Unlock()
	key := obj.Namespace + "/" + obj.Name
	if ov.stations == nil || r.Now().Sub(ov.fullAt) >= r.Options.StatusResync {
		fresh := map[string]station{}
		start := r.Now()
		r.Wake.drain(key) // the full read covers every report so far
		if err := r.Registry.Query(ctx, twin.Selector{OwnerUID: uid}, func(page []*twin.Twin) error {
			for _, t := range page {
				if t.Ownership != nil && t.Ownership.UID == uid {
					fresh[t.DeviceID] = newStation(t, uid)
				}
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("query stations owned by %s: %w", key, err)
		}
		ov.stations, ov.fullAt = fresh, start
	} else {
		for _, id := range r.Wake.drain(key) {
			t, err := r.Registry.Get(ctx, id)
			switch {
			case errors.Is(err, twin.ErrNotFound):
				delete(ov.stations, id)
			case err != nil:
				r.Wake.NotifyStation(key, id) // read it again next time
				return nil, fmt.Errorf("read twin %s: %w", id, err)
			case t.Ownership != nil && t.Ownership.UID == uid:
				ov.stations[id] = newStation(t, uid)
			default:
				delete(ov.stations, id)
			}
		}
	}
	// Not a copy: a 100,000-station view is megabytes, and only this
	// rollout's reconcile uses it (controller-runtime never reconciles one
	// object twice at once); callers read it before writing new stations.
	return ov.stations, nil
}

// rememberOwned records a station this reconcile wrote.
func (r *FirmwareRolloutReconciler) rememberOwned(obj *fwv1.FirmwareRollout, s station) {
	if vi, ok := r.owned.Load(string(obj.UID)); ok {
		ov := vi.(*ownedView)
		ov.mu.Lock()
		if ov.stations != nil {
			ov.stations[s.id] = s
		}
		ov.mu.Unlock()
	}
}

// target is a station the selector matches, as the cached selection keeps
// it: only what classifying a station not owned by this rollout needs (the
// owned view has the rest), so that a 100,000-station selection stays small.
type target struct {
	id                  string
	order               uint64
	ownerUID, ownerName string
}

// selected returns the stations the selector matches, from the cache when it
// is fresh and the rollout is still on the same step.
func (r *FirmwareRolloutReconciler) selected(ctx context.Context, obj *fwv1.FirmwareRollout) ([]target, error) {
	uid := string(obj.UID)
	if c, ok := r.targets.Load(uid); ok {
		snap := c.(*targetSnapshot)
		if snap.generation == obj.Generation && r.Now().Sub(snap.at) < r.Options.TargetResync {
			return snap.stations, nil
		}
	}
	sel := twin.Selector{DeviceIDs: obj.Spec.Selector.DeviceIDs, Tags: obj.Spec.Selector.Tags}
	var out []target
	if err := r.Registry.Query(ctx, sel, func(page []*twin.Twin) error {
		for _, t := range page {
			s := newStation(t, uid)
			out = append(out, target{id: s.id, order: s.order, ownerUID: s.ownerUID, ownerName: s.ownerName})
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("query stations selected by %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	r.targets.Store(uid, &targetSnapshot{at: r.Now(), generation: obj.Generation, stations: out})
	return out, nil
}

// forgetTargets drops the cached selection, so the next reconcile queries
// the selector again.
func (r *FirmwareRolloutReconciler) forgetTargets(obj *fwv1.FirmwareRollout) {
	r.targets.Delete(string(obj.UID))
}

// forget drops everything cached for a rollout that is done.
func (r *FirmwareRolloutReconciler) forget(obj *fwv1.FirmwareRollout) {
	r.targets.Delete(string(obj.UID))
	r.owned.Delete(string(obj.UID))
	r.Wake.drain(obj.Namespace + "/" + obj.Name)
}

// activeRollouts returns the UIDs of rollouts that still hold their stations.
func (r *FirmwareRolloutReconciler) activeRollouts(ctx context.Context) (map[string]bool, error) {
	var list fwv1.FirmwareRolloutList
	if err := r.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	return ActiveRollouts(list.Items), nil
}

// rolloutIndex returns the UIDs of active rollouts (see ActiveRollouts) and
// every rollout by UID.
func (r *FirmwareRolloutReconciler) rolloutIndex(ctx context.Context) (map[string]bool, map[string]*fwv1.FirmwareRollout, error) {
	var list fwv1.FirmwareRolloutList
	if err := r.List(ctx, &list); err != nil {
		return nil, nil, fmt.Errorf("list rollouts: %w", err)
	}
	byUID := make(map[string]*fwv1.FirmwareRollout, len(list.Items))
	for i := range list.Items {
		byUID[string(list.Items[i].UID)] = &list.Items[i]
	}
	return ActiveRollouts(list.Items), byUID, nil
}

// ActiveRollouts returns the UIDs of the rollouts that still hold their
// stations: every rollout that is neither Completed nor Aborted nor being
// deleted. A station owned by one of them is Skipped by every other rollout.
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

func (r *FirmwareRolloutReconciler) evalParams(obj *fwv1.FirmwareRollout) evalParams {
	return paramsFor(obj, r.Now())
}

// updateCounts writes counts, per-batch summaries and the bounded failure
// list into status.
func (r *FirmwareRolloutReconciler) updateCounts(ctx context.Context, obj *fwv1.FirmwareRollout, v *stationView) {
	st := &obj.Status
	now := metav1.NewTime(r.Now())
	st.Targets, st.Pending, st.InProgress, st.Updated, st.Failed, st.Skipped = int32(len(v.all)), 0, 0, 0, 0, 0
	type agg struct {
		b     fwv1.BatchStatus
		start time.Time
	}
	batches := map[int]*agg{}
	failedNow := map[string]outcome{}
	firstTime := map[string]bool{}      // counted Failed for the first time: no failure mark yet
	writtenAt := map[string]time.Time{} // of the other failed stations
	for i, s := range v.all {
		o := v.outs[i]
		switch o.state {
		case fwv1.OutcomePending:
			st.Pending++
			continue
		case fwv1.OutcomeSkipped:
			st.Skipped++
			continue
		case fwv1.OutcomeInProgress:
			st.InProgress++
		case fwv1.OutcomeUpdated:
			st.Updated++
		case fwv1.OutcomeFailed:
			st.Failed++
			failedNow[s.id] = o
			if s.failed == "" {
				firstTime[s.id] = true
			} else {
				writtenAt[s.id] = s.writtenAt
			}
		}
		a := batches[s.batch]
		if a == nil {
			a = &agg{b: fwv1.BatchStatus{Step: int32(s.batch)}}
			batches[s.batch] = a
		}
		a.b.Size++
		switch o.state {
		case fwv1.OutcomeInProgress:
			a.b.InProgress++
		case fwv1.OutcomeUpdated:
			a.b.Updated++
		case fwv1.OutcomeFailed:
			a.b.Failed++
		}
		if a.start.IsZero() || s.writtenAt.Before(a.start) {
			a.start = s.writtenAt
		}
	}
	st.Progress = fmt.Sprintf("%d/%d", st.Updated, st.Targets)

	// Per-batch summaries keep their completion time once set.
	prev := map[int32]fwv1.BatchStatus{}
	for _, b := range st.Batches {
		prev[b.Step] = b
	}
	var out []fwv1.BatchStatus
	for _, a := range batches {
		b := a.b
		if !a.start.IsZero() {
			t := metav1.NewTime(a.start)
			b.StartTime = &t
		}
		if b.InProgress == 0 {
			if p, ok := prev[b.Step]; ok && p.CompletionTime != nil {
				b.CompletionTime = p.CompletionTime
			} else {
				b.CompletionTime = &now
				batchDuration.Observe(now.Sub(a.start).Seconds())
			}
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	st.Batches = out

	r.updateFailureList(ctx, obj, failedNow, firstTime, writtenAt)
}

// reconcileSteps walks the strategy's steps as far as it can in this
// reconcile.
func (r *FirmwareRolloutReconciler) reconcileSteps(ctx context.Context, obj *fwv1.FirmwareRollout, v *stationView, sum *summary) (ctrl.Result, error) {
	st := &obj.Status
	steps := obj.Spec.Strategy.Steps
	now := r.Now()
	resume := obj.Annotations[fwv1.ResumeAnnotation]
	advance := func() {
		if st.CurrentStep > 0 {
			// Each new step sees the stations that started matching since.
			r.forgetTargets(obj)
		}
		st.CurrentStep++
		t := metav1.NewTime(now)
		st.StepStartTime = &t
		// A resume given before the rollout reached an indefinite pause does
		// not skip it: only a new value resumes.
		if int(st.CurrentStep) <= len(steps) {
			if p := steps[st.CurrentStep-1].Pause; p != nil && p.Duration == nil {
				st.LastHandledResume = resume
			}
		}
	}
	if st.CurrentStep == 0 {
		if len(v.all) == 0 {
			*sum = summary{phase: fwv1.PhasePending, reason: fwv1.ReasonNoStations, stalled: true,
				message: "the selector matches no station in IoT Hub; checking again every " + r.Options.TargetResync.String()}
			return ctrl.Result{RequeueAfter: jitter(r.Options.TargetResync)}, nil
		}
		t := metav1.NewTime(now)
		st.StartTime = &t
		advance()
	}

	for int(st.CurrentStep) <= len(steps) {
		i := int(st.CurrentStep)
		step := steps[i-1]
		switch {
		case step.Batch != nil:
			writtenHere := 0
			for _, s := range v.all {
				if s.ownerUID == string(obj.UID) && s.batch == i {
					writtenHere++
				}
			}
			size, err := batchSize(step.Batch, len(v.all), len(v.unwritten)+writtenHere)
			if err != nil {
				*sum = summary{phase: fwv1.PhasePending, reason: fwv1.ReasonInvalidStrategy, message: err.Error(), stalled: true}
				return ctrl.Result{}, reconcile.TerminalError(err)
			}
			if need := size - writtenHere; need > 0 && len(v.unwritten) > 0 {
				if writtenHere == 0 {
					r.event(ctx, obj, corev1.EventTypeNormal, fwv1.ReasonBatchStarted,
						fmt.Sprintf("step %d: writing the firmware into %d stations' twins", i, size))
				}
				res, err := r.writeBatch(ctx, obj, v, i, need)
				r.updateCounts(ctx, obj, v)
				plannedSize(&st.Batches, i, size)
				*sum = r.progressSummary(obj, i)
				return res, err
			}
			if !batchDone(v, string(obj.UID), i) {
				*sum = r.progressSummary(obj, i)
				return r.requeueWhileInFlight(v), nil
			}
			r.event(ctx, obj, corev1.EventTypeNormal, fwv1.ReasonBatchCompleted,
				fmt.Sprintf("step %d: every station of the batch has an outcome (%d updated, %d failed in all)", i, st.Updated, st.Failed))
			advance()
		case step.Pause != nil && step.Pause.Duration != nil:
			end := st.StepStartTime.Add(step.Pause.Duration.Duration)
			if now.Before(end) {
				*sum = summary{phase: fwv1.PhasePaused, reason: fwv1.ReasonPaused,
					message: fmt.Sprintf("step %d of %d: pause until %s", i, len(steps), end.UTC().Format(time.RFC3339))}
				return ctrl.Result{RequeueAfter: end.Sub(now) + time.Second}, nil
			}
			advance()
		default: // an indefinite pause
			if resume == "" || resume == st.LastHandledResume {
				*sum = summary{phase: fwv1.PhasePaused, reason: fwv1.ReasonWaitingForResume,
					message: fmt.Sprintf("step %d of %d: paused until resumed (kubectl stationfleet resume %s)", i, len(steps), obj.Name)}
				return r.requeueWhileInFlight(v), nil
			}
			st.LastHandledResume = resume
			r.event(ctx, obj, corev1.EventTypeNormal, fwv1.ReasonResumed, fmt.Sprintf("step %d: resumed", i))
			advance()
		}
	}

	// Every step is done: complete once every written station has an outcome.
	if st.InProgress > 0 {
		*sum = r.progressSummary(obj, len(steps))
		return r.requeueWhileInFlight(v), nil
	}
	t := metav1.NewTime(now)
	st.CompletionTime = &t
	st.CurrentStep = int32(len(steps))
	msg := fmt.Sprintf("%d of %d stations updated, %d failed, %d skipped", st.Updated, st.Targets, st.Failed, st.Skipped)
	if st.Pending > 0 {
		msg += fmt.Sprintf("; %d were not written because the steps ended before them", st.Pending)
	}
	*sum = summary{phase: fwv1.PhaseCompleted, reason: fwv1.ReasonCompleted, message: msg}
	r.event(ctx, obj, corev1.EventTypeNormal, fwv1.ReasonCompleted, msg)
	r.forget(obj)
	return ctrl.Result{}, nil
}

func (r *FirmwareRolloutReconciler) progressSummary(obj *fwv1.FirmwareRollout, step int) summary {
	st := obj.Status
	return summary{phase: fwv1.PhaseProgressing, reason: fwv1.ReasonProgressing,
		message: fmt.Sprintf("step %d of %d: %d updated, %d in progress, %d failed, %d pending of %d stations",
			step, len(obj.Spec.Strategy.Steps), st.Updated, st.InProgress, st.Failed, st.Pending, st.Targets)}
}

// plannedSize makes the summary of the batch of step show its planned size
// while it is still being written.
func plannedSize(batches *[]fwv1.BatchStatus, step, size int) {
	for j := range *batches {
		if b := &(*batches)[j]; int(b.Step) == step {
			if int(b.Size) < size {
				b.Size = int32(size)
				b.CompletionTime = nil
			}
			return
		}
	}
	*batches = append(*batches, fwv1.BatchStatus{Step: int32(step), Size: int32(size)})
}

// batchDone reports whether every station written by steps up to step has a
// final outcome.
func batchDone(v *stationView, uid string, step int) bool {
	for i, s := range v.all {
		if s.ownerUID == uid && s.batch <= step && v.outs[i].state == fwv1.OutcomeInProgress {
			return false
		}
	}
	return true
}

// requeueWhileInFlight asks to come back when a written station could time
// out, or after StatusResync, whichever is sooner.
func (r *FirmwareRolloutReconciler) requeueWhileInFlight(v *stationView) ctrl.Result {
	next := r.Options.StatusResync
	now := r.Now()
	for _, o := range v.outs {
		if o.state == fwv1.OutcomeInProgress {
			if d := o.deadline.Sub(now) + time.Second; d > 0 && d < next {
				next = d
			}
		}
	}
	return ctrl.Result{RequeueAfter: jitter(next)}
}

// jitter spreads periodic requeues of many rollouts by up to 10%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

// writeBatch writes the rollout's firmware and ownership into up to need
// unwritten stations, in spread order, skipping those another active rollout
// claimed meanwhile. Each write is conditional on the twin's ETag, and a
// station already owned by this rollout is never written again.
func (r *FirmwareRolloutReconciler) writeBatch(ctx context.Context, obj *fwv1.FirmwareRollout, v *stationView, step, need int) (ctrl.Result, error) {
	if need > r.Options.MaxWritesPerReconcile {
		need = r.Options.MaxWritesPerReconcile
	}
	active, byUID, err := r.rolloutIndex(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	uid := string(obj.UID)
	fw := desiredFirmware(obj)
	now := r.Now().UTC().Truncate(time.Second)
	own := twin.Ownership{Rollout: obj.Namespace + "/" + obj.Name, UID: uid, Batch: step, Model: obj.Spec.Firmware.Model,
		MaxUpdateAttempts: r.evalParams(obj).maxUpdateAttempts, WrittenAt: now}

	type result struct {
		i       int // position in v.all
		s       station
		written bool
		skipped string
		err     error
	}
	written := 0
	var errs []error
	for len(v.unwritten) > 0 && written < need && len(errs) == 0 {
		n := min(need-written, len(v.unwritten))
		chunk := v.unwritten[:n]
		v.unwritten = v.unwritten[n:]
		results := make([]result, len(chunk))
		sem := make(chan struct{}, r.Options.WriteConcurrency)
		var wg sync.WaitGroup
		for j, i := range chunk {
			s := v.all[i]
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				res := result{i: i, s: s}
				_, res.err = r.Registry.Update(ctx, s.id, func(t *twin.Twin) (*twin.Patch, error) {
					res.written, res.skipped = false, ""
					if o := t.Ownership; o != nil {
						if o.UID == uid {
							res.written = true // written before a restart: never twice
							res.s.batch, res.s.writtenAt = o.Batch, o.WrittenAt
							return nil, nil
						}
						if active[o.UID] {
							res.skipped = o.Rollout
							return nil, nil
						}
					}
					res.written = true
					res.s.batch, res.s.writtenAt = step, now
					return claimPatch(t, fw, own, byUID, now), nil
				})
				results[j] = res
			}()
		}
		wg.Wait()
		for _, res := range results {
			switch {
			case res.err != nil:
				errs = append(errs, fmt.Errorf("write twin %s: %w", res.s.id, res.err))
				v.unwritten = append(v.unwritten, res.i)
			case res.skipped != "":
				v.outs[res.i] = outcome{state: fwv1.OutcomeSkipped, reason: string(fwv1.SkipOwnedElsewhere), message: "owned by the active rollout " + res.skipped}
				v.all[res.i] = res.s
			case res.written:
				written++
				res.s.ownerUID, res.s.ownerName = uid, own.Rollout
				v.all[res.i] = res.s
				r.rememberOwned(obj, res.s)
				v.outs[res.i] = evaluate(res.s, r.evalParams(obj))
				twinWrites.Inc()
				if r.Cache != nil {
					r.Cache.Invalidate(res.s.id)
				}
			}
		}
	}
	// The cached selection is kept: the stations written here are in the
	// owned view, which loadStations lays over it. Querying the whole
	// selection again after every MaxWritesPerReconcile writes made a
	// rollout's cost grow with the square of the fleet (DESIGN.md section 9).
	if len(errs) > 0 {
		return ctrl.Result{}, kerrors.NewAggregate(errs)
	}
	if written >= need && len(v.unwritten) > 0 && need == r.Options.MaxWritesPerReconcile {
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil // more of this batch to write
	}
	return r.requeueWhileInFlight(v), nil
}

func desiredFirmware(obj *fwv1.FirmwareRollout) twin.Firmware {
	crc := uint32(obj.Spec.Firmware.KeyChecksum)
	return twin.Firmware{
		Package:     obj.Spec.Firmware.Package,
		URL:         obj.Spec.Firmware.URL,
		Signature:   obj.Spec.Firmware.Signature,
		KeyChecksum: &crc,
	}
}

// preflight checks the firmware once per rollout (the firmware is
// immutable): on failure the rollout is Stalled before any twin is written.
func (r *FirmwareRolloutReconciler) preflight(ctx context.Context, obj *fwv1.FirmwareRollout, sum *summary) (bool, ctrl.Result) {
	if meta.IsStatusConditionTrue(obj.Status.Conditions, fwv1.ConditionFirmwareVerified) {
		return true, ctrl.Result{}
	}
	fail := func(err error) (bool, ctrl.Result) {
		msg := "firmware check failed, no twin was written: " + err.Error()
		*sum = summary{phase: fwv1.PhasePending, reason: fwv1.ReasonFirmwareInvalid, message: msg, stalled: true}
		meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{Type: fwv1.ConditionFirmwareVerified, Status: metav1.ConditionFalse,
			Reason: fwv1.ReasonFirmwareInvalid, Message: msg, ObservedGeneration: obj.Generation})
		if !meta.IsStatusConditionFalse(obj.Status.Conditions, fwv1.ConditionReady) ||
			meta.FindStatusCondition(obj.Status.Conditions, fwv1.ConditionStalled) == nil {
			r.event(ctx, obj, corev1.EventTypeWarning, fwv1.ReasonFirmwareInvalid, msg)
		}
		retry := r.Options.PreflightRetry
		var t interface{ Transient() bool }
		if errors.Is(err, ErrFirmwareUnavailable) || errors.As(err, &t) && t.Transient() {
			retry = r.Options.StatusResync
		}
		return false, ctrl.Result{RequeueAfter: jitter(retry)}
	}
	ref := FirmwareRef{URL: obj.Spec.Firmware.URL, Signature: obj.Spec.Firmware.Signature, KeyChecksum: uint32(obj.Spec.Firmware.KeyChecksum)}
	if pk := obj.Spec.Firmware.PublicKeyRef; pk != nil {
		var sec corev1.Secret
		if err := r.Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: pk.Name}, &sec); err != nil {
			return fail(fmt.Errorf("read public key Secret %s: %w", pk.Name, err))
		}
		raw, ok := sec.Data[pk.Key]
		if !ok {
			return fail(fmt.Errorf("Secret %s has no key %q", pk.Name, pk.Key))
		}
		key, err := stationKey(raw)
		if err != nil {
			return fail(fmt.Errorf("Secret %s key %q: %w", pk.Name, pk.Key, err))
		}
		ref.PublicKey = key
	}
	if err := r.Firmware.Check(ctx, ref); err != nil {
		return fail(err)
	}
	meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{Type: fwv1.ConditionFirmwareVerified, Status: metav1.ConditionTrue,
		Reason: fwv1.ReasonVerified, Message: verifiedMessage(ref), ObservedGeneration: obj.Generation})
	return true, ctrl.Result{}
}

func verifiedMessage(ref FirmwareRef) string {
	if ref.PublicKey == nil {
		return "the firmware blob exists; no publicKeyRef, so its signature was not checked"
	}
	return "the firmware blob exists and its signature verifies with the given key"
}

// stationKey accepts a 64-byte sig-N.key or a PEM public or private key and
// returns the 64-byte form the station holds.
func stationKey(raw []byte) ([]byte, error) {
	pub, err := signing.ParsePublicKey(raw)
	if err != nil {
		return nil, err
	}
	return signing.MarshalSigKey(pub)
}

// summaryFromStatus rebuilds the summary of a rollout in a phase that needs
// no work (its Ready condition carries the message).
func summaryFromStatus(obj *fwv1.FirmwareRollout) summary {
	s := summary{phase: obj.Status.Phase, stalled: obj.Status.Phase == fwv1.PhaseHalted}
	if c := meta.FindStatusCondition(obj.Status.Conditions, fwv1.ConditionReady); c != nil {
		s.reason, s.message = c.Reason, c.Message
	}
	return s
}

// event logs and records an Event on the rollout.
func (r *FirmwareRolloutReconciler) event(ctx context.Context, obj *fwv1.FirmwareRollout, eventType, reason, msg string) {
	log := ctrl.LoggerFrom(ctx)
	if eventType == corev1.EventTypeWarning {
		log.Info(msg, "reason", reason, "warning", true)
	} else {
		log.Info(msg, "reason", reason)
	}
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, eventType, reason, reason, "%s", msg)
	}
}
