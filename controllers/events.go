package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

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
