package controllers

import (
	"context"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
)

// resolveOwners adds to s.active (and s.byUID) the rollouts that own a
// station this rollout selects but that this manager's cache does not
// hold: a rollout of a namespace it does not watch, or one created so
// recently that the cache has not caught up. Each is read once, uncached,
// by the name its ownership record gives. A rollout that no longer exists
// (or whose name now belongs to another UID) does not hold its stations:
// the record is an orphan. One that cannot be read (forbidden with
// namespaced RBAC, or the API server failed) holds them: the twin's
// ownership record is the lock (rules.Holds), and a rollout is never taken
// over by one that cannot see it.
func (r *FirmwareRolloutReconciler) resolveOwners(ctx context.Context, s *rolloutScope, selected []target) {
	unknown := map[string]string{} // uid -> "namespace/name"
	for i := range selected {
		info := selected[i].get()
		if info.ownerUID == "" || info.ownerUID == s.uid() {
			continue
		}
		if _, known := s.active[info.ownerUID]; !known {
			unknown[info.ownerUID] = info.ownerName
		}
	}
	for uid, name := range unknown {
		ns, n, ok := strings.Cut(name, "/")
		if !ok {
			continue
		}
		var ro fwv1.FirmwareRollout
		err := r.apiReader().Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, &ro)
		switch {
		case apierrors.IsNotFound(err), err == nil && string(ro.UID) != uid:
			s.active[uid] = false
		case err == nil:
			s.active[uid] = rules.ActiveRollouts([]fwv1.FirmwareRollout{ro})[uid]
			s.byUID[uid] = &ro
		}
	}
}
