package dashboard

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// maxSamples bounds a rollout's progress history (a few hundred points
// are more than a chart 860 pixels wide shows); past it every other
// sample is dropped, so the picture keeps its whole span at half the detail.
const maxSamples = 600

// syncTimeout is how long Serve waits for the first list of rollouts.
const syncTimeout = time.Minute

// Sample is a rollout's counts at one time, a point of its progress chart.
type Sample struct {
	// T is when the counts held.
	T time.Time `json:"t"`
	// Updated, Failed and InProgress are the status' counts then.
	Updated    int32 `json:"updated"`
	Failed     int32 `json:"failed"`
	InProgress int32 `json:"inProgress"`
	// Derived is true for a sample read from the status' timestamps (the
	// start, each finished batch) rather than observed by the dashboard.
	Derived bool `json:"derived,omitempty"`
}

// WatchStatus says whether the watch on the rollouts works.
type WatchStatus struct {
	// Error is the watch's last error, empty while it works.
	Error string `json:"error,omitempty"`
	// Since is when the error started.
	Since *time.Time `json:"since,omitempty"`
}

// Snapshot is every rollout shown, as the page first loads them.
type Snapshot struct {
	// Namespace is the namespace shown; empty for all.
	Namespace string `json:"namespace"`
	// Rollouts are sorted by namespace and name.
	Rollouts []RolloutView `json:"rollouts"`
	// Watch says whether the watch works.
	Watch WatchStatus `json:"watch"`
	// Now is the server's clock, which the page's ages follow.
	Now time.Time `json:"now"`
}

// store holds the rollouts the informer sees, their views and progress
// history, and the open event streams to tell about changes.
type store struct {
	now       func() time.Time
	refusals  func(*fwv1.FirmwareRollout) map[Action]string
	namespace string

	mu      sync.Mutex
	objs    map[string]*fwv1.FirmwareRollout
	views   map[string]*RolloutView
	history map[string][]Sample
	subs    map[*subscriber]bool
	status  WatchStatus
}

func newStore(now func() time.Time, refusals func(*fwv1.FirmwareRollout) map[Action]string) *store {
	return &store{now: now, refusals: refusals, objs: map[string]*fwv1.FirmwareRollout{}, views: map[string]*RolloutView{},
		history: map[string][]Sample{}, subs: map[*subscriber]bool{}}
}

// start lists the rollouts once (to fail clearly without permission), then
// runs an informer on them until ctx ends and waits for its first list.
func (s *store) start(ctx context.Context, cfg *rest.Config, ns string) error {
	s.namespace = ns
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = fwv1.AddToScheme(scheme)
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("connect to the cluster: %w", err)
	}
	where := "in namespace " + ns
	if ns == "" {
		where = "in all namespaces"
	}
	if err := c.List(ctx, &fwv1.FirmwareRolloutList{}, client.InNamespace(ns), client.Limit(1)); err != nil {
		switch {
		case apierrors.IsForbidden(err):
			return fmt.Errorf("not allowed to list FirmwareRollouts %s: the dashboard needs get, list and watch on firmwarerollouts.firmware.stationfleet.io (and patch for pause, resume and abort): %w", where, err)
		case meta.IsNoMatchError(err):
			return fmt.Errorf("this cluster does not know FirmwareRollouts: install the stationfleet CRD first (kubectl apply -k config/default): %w", err)
		}
		return fmt.Errorf("list FirmwareRollouts %s: %w", where, err)
	}
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l := &fwv1.FirmwareRolloutList{}
			return l, c.List(ctx, l, client.InNamespace(ns), &client.ListOptions{Raw: &o})
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, &fwv1.FirmwareRolloutList{}, client.InNamespace(ns), &client.ListOptions{Raw: &o})
		},
	}
	inf := toolscache.NewSharedIndexInformer(lw, &fwv1.FirmwareRollout{}, 0, toolscache.Indexers{})
	log := ctrl.LoggerFrom(ctx)
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *toolscache.Reflector, err error) {
		log.Error(err, "watch FirmwareRollouts")
		s.setWatchError(err)
	})
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.put(o) },
		UpdateFunc: func(_, o any) { s.put(o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if obj, ok := o.(*fwv1.FirmwareRollout); ok {
				s.remove(obj.Namespace + "/" + obj.Name)
			}
		},
	}); err != nil {
		return fmt.Errorf("watch FirmwareRollouts: %w", err)
	}
	go inf.RunWithContext(ctx)
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !toolscache.WaitForCacheSync(sctx.Done(), inf.HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("list FirmwareRollouts %s: no answer within %s", where, syncTimeout)
	}
	return nil
}

func (s *store) setWatchError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.Error == "" {
		t := s.now().UTC()
		s.status.Since = &t
	}
	s.status.Error = err.Error()
	s.notifyLocked("", true)
}

// put records a rollout the informer delivered, adds a history sample when
// its counts moved, and tells the streams.
func (s *store) put(o any) {
	obj, ok := o.(*fwv1.FirmwareRollout)
	if !ok {
		return
	}
	obj = obj.DeepCopy()
	key := obj.Namespace + "/" + obj.Name
	now := s.now().UTC()
	refusals := s.refusals(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	statusChanged := false
	if s.status.Error != "" {
		s.status = WatchStatus{} // an event arrived: the watch works again
		statusChanged = true
	}
	if old := s.objs[key]; old != nil && old.UID != obj.UID {
		delete(s.history, key) // deleted and created again
	}
	s.objs[key] = obj
	s.history[key] = addSample(s.history[key], obj, now)
	v := buildView(obj, s.history[key], refusals)
	s.views[key] = &v
	s.notifyLocked(key, statusChanged)
}

// addSample appends the rollout's counts to h when they moved. A rollout
// seen for the first time gets its past from the status' timestamps first:
// nothing done at its start, then the written counts of each batch at that
// batch's completion. A rollout first seen finished is sampled at its
// completion time.
func addSample(h []Sample, obj *fwv1.FirmwareRollout, now time.Time) []Sample {
	st := &obj.Status
	if len(h) == 0 {
		h = derivedSamples(obj, now)
	}
	at := now
	if st.CompletionTime != nil && st.CompletionTime.Time.Before(now) && !hasObserved(h) {
		at = st.CompletionTime.Time.UTC()
	}
	next := Sample{T: at, Updated: st.Updated, Failed: st.Failed, InProgress: st.InProgress}
	if n := len(h); n > 0 {
		last := h[n-1]
		if !last.Derived && last.Updated == next.Updated && last.Failed == next.Failed && last.InProgress == next.InProgress {
			return h
		}
		if next.T.Before(last.T) {
			next.T = last.T
		}
	}
	h = append(h, next)
	if len(h) > maxSamples {
		thin := h[:0:0]
		for i := range h {
			if i%2 == 0 || i == len(h)-1 || h[i].Derived {
				thin = append(thin, h[i])
			}
		}
		h = thin
	}
	return h
}

func hasObserved(h []Sample) bool {
	for _, s := range h {
		if !s.Derived {
			return true
		}
	}
	return false
}

// derivedSamples is the rollout's past as its status tells it: nothing at
// its start, and the cumulative counts of the finished batches at each
// one's completion time (a finished batch's stations all had an outcome
// then).
func derivedSamples(obj *fwv1.FirmwareRollout, now time.Time) []Sample {
	st := &obj.Status
	if st.StartTime == nil || !st.StartTime.Time.Before(now) {
		return nil
	}
	out := []Sample{{T: st.StartTime.Time.UTC(), Derived: true}}
	done := make([]fwv1.BatchStatus, 0, len(st.Batches))
	for _, b := range st.Batches {
		if b.CompletionTime != nil && b.CompletionTime.Time.Before(now) && !b.CompletionTime.Time.Before(st.StartTime.Time) {
			done = append(done, b)
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].CompletionTime.Time.Before(done[j].CompletionTime.Time) })
	var updated, failed int32
	for _, b := range done {
		updated += b.Updated
		failed += b.Failed
		out = append(out, Sample{T: b.CompletionTime.Time.UTC(), Updated: updated, Failed: failed, Derived: true})
	}
	return out
}

func (s *store) remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objs, key)
	delete(s.views, key)
	delete(s.history, key)
	s.notifyLocked(key, false)
}

// get returns a copy of the rollout namespace/name, or nil.
func (s *store) get(ns, name string) *fwv1.FirmwareRollout {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.objs[ns+"/"+name]; o != nil {
		return o.DeepCopy()
	}
	return nil
}

// view returns the view of the rollout under key, nil when it is gone.
func (s *store) view(key string) *RolloutView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.views[key]
}

func (s *store) watchStatus() WatchStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *store) snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Snapshot{Namespace: s.namespace, Rollouts: make([]RolloutView, 0, len(s.views)), Watch: s.status, Now: s.now().UTC()}
	for _, v := range s.views {
		out.Rollouts = append(out.Rollouts, *v)
	}
	sort.Slice(out.Rollouts, func(i, j int) bool {
		a, b := out.Rollouts[i], out.Rollouts[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

// subscriber is one open event stream: the rollouts that changed since it
// last sent, coalesced, so a slow page never holds up the informer.
type subscriber struct {
	wake   chan struct{}
	mu     sync.Mutex
	keys   map[string]bool
	status bool
}

func (s *store) subscribe() *subscriber {
	sub := &subscriber{wake: make(chan struct{}, 1), keys: map[string]bool{}}
	s.mu.Lock()
	s.subs[sub] = true
	s.mu.Unlock()
	return sub
}

func (s *store) unsubscribe(sub *subscriber) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}

// notifyLocked marks key (when not empty) and the watch status as changed
// for every stream. s.mu is held.
func (s *store) notifyLocked(key string, status bool) {
	for sub := range s.subs {
		sub.mu.Lock()
		if key != "" {
			sub.keys[key] = true
		}
		sub.status = sub.status || status
		sub.mu.Unlock()
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
}

// drain returns the changed keys, sorted, and whether the watch status
// changed, and forgets them.
func (sub *subscriber) drain() ([]string, bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	keys := make([]string, 0, len(sub.keys))
	for k := range sub.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	status := sub.status
	sub.keys, sub.status = map[string]bool{}, false
	return keys, status
}
