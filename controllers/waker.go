package controllers

import (
	"sort"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// Waker wakes the reconciler for a rollout, from the CUPS server in the same
// process, when one of its stations reported something new, and remembers
// which stations did, so that the reconciler re-reads just those twins.
// It only ever wakes rollouts in the namespaces the manager watches: a
// request for any other would fail in the reconciler ("unknown namespace
// for the cache") and be retried with growing backoff, never finishing.
// A nil *Waker is valid and does nothing.
type Waker struct {
	ch         chan event.GenericEvent
	namespaces map[string]bool // empty: every namespace

	mu    sync.Mutex
	dirty map[string]map[string]struct{} // "ns/name" -> device ids
}

// maxDirty bounds the stations remembered per rollout between two reads.
const maxDirty = 10000

// NewWaker returns a Waker with room for size pending wake-ups; more are
// coalesced (the controller's queue holds one request per rollout anyway).
// namespaces are those the manager watches (--watch-namespaces); none
// means every namespace.
func NewWaker(size int, namespaces ...string) *Waker {
	w := &Waker{ch: make(chan event.GenericEvent, size), dirty: map[string]map[string]struct{}{}}
	for _, ns := range namespaces {
		if ns = strings.TrimSpace(ns); ns != "" {
			if w.namespaces == nil {
				w.namespaces = map[string]bool{}
			}
			w.namespaces[ns] = true
		}
	}
	return w
}

// Watches reports whether the rollout "namespace/name" is in a namespace
// this manager reconciles (false for a nil Waker or a malformed name).
func (w *Waker) Watches(rollout string) bool {
	if w == nil {
		return false
	}
	ns, _, ok := strings.Cut(rollout, "/")
	return ok && ns != "" && (w.namespaces == nil || w.namespaces[ns])
}

// Notify wakes the reconciler for the rollout "namespace/name". It never
// blocks.
func (w *Waker) Notify(rollout string) { w.NotifyStation(rollout, "") }

// NotifyStation wakes the reconciler for the rollout "namespace/name" and
// marks the station deviceID (when not empty) to be read again. It never
// blocks, and ignores rollouts outside the watched namespaces (Watches).
func (w *Waker) NotifyStation(rollout, deviceID string) {
	if !w.Watches(rollout) {
		return
	}
	w.mark(rollout, deviceID)
	ns, name, _ := strings.Cut(rollout, "/")
	obj := &fwv1.FirmwareRollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	select {
	case w.ch <- event.GenericEvent{Object: obj}:
	default:
	}
}

// mark remembers that the station deviceID (when not empty) of the rollout
// must be read again, without waking the reconciler.
func (w *Waker) mark(rollout, deviceID string) {
	if w == nil || deviceID == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.dirty[rollout]
	if set == nil {
		set = map[string]struct{}{}
		w.dirty[rollout] = set
	}
	// Bounded: past maxDirty the periodic full read of the rollout's
	// stations catches the rest (a replica that is not the leader never
	// drains its set).
	if len(set) < maxDirty {
		set[deviceID] = struct{}{}
	}
}

// drain returns and forgets the stations marked for the rollout.
func (w *Waker) drain(rollout string) []string {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.dirty[rollout]
	delete(w.dirty, rollout)
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
