package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/signing"
)

// ConditionFirmwareVerified records that the preflight check passed for the
// rollout's (immutable) firmware, so it is not downloaded again.
const ConditionFirmwareVerified = fwv1.ConditionFirmwareVerified

// preflight checks the firmware once per rollout (the firmware is
// immutable): on failure the rollout stalls before any twin is written, and
// is checked again after PreflightRetry (StatusResync when the store was
// unavailable).
func (r *FirmwareRolloutReconciler) preflight(ctx context.Context, s *rolloutScope) error {
	obj := s.obj
	if meta.IsStatusConditionTrue(obj.Status.Conditions, ConditionFirmwareVerified) {
		return nil
	}
	ref, err := r.firmwareRef(ctx, obj)
	if err == nil {
		err = r.Firmware.Check(ctx, ref)
	}
	if err != nil {
		return r.preflightFailed(ctx, obj, err)
	}
	meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{Type: ConditionFirmwareVerified, Status: metav1.ConditionTrue,
		Reason: fwv1.ReasonVerified, Message: verifiedMessage(ref), ObservedGeneration: obj.Generation})
	return nil
}

// firmwareRef is what the firmware checker needs, with the public key read
// from the ConfigMap the rollout's publicKeyRef names (uncached: one read
// per rollout, and no informer over every ConfigMap of the cluster).
func (r *FirmwareRolloutReconciler) firmwareRef(ctx context.Context, obj *fwv1.FirmwareRollout) (FirmwareRef, error) {
	ref := FirmwareRef{URL: obj.Spec.Firmware.URL, Signature: obj.Spec.Firmware.Signature, KeyChecksum: uint32(obj.Spec.Firmware.KeyChecksum)}
	pk := obj.Spec.Firmware.PublicKeyRef
	if pk == nil {
		return ref, nil
	}
	var cm corev1.ConfigMap
	if err := r.apiReader().Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: pk.Name}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return ref, fmt.Errorf("publicKeyRef: no ConfigMap %s in namespace %s (create it with `kubectl -n %s create configmap %s --from-file=%s=sig-0.key`)",
				pk.Name, obj.Namespace, obj.Namespace, pk.Name, pk.Key)
		}
		return ref, fmt.Errorf("read public key ConfigMap %s: %w", pk.Name, err)
	}
	raw, ok := cm.BinaryData[pk.Key]
	if !ok {
		text, inData := cm.Data[pk.Key]
		if !inData {
			return ref, fmt.Errorf("ConfigMap %s has no key %q in data or binaryData", pk.Name, pk.Key)
		}
		raw = []byte(text)
	}
	key, err := stationKey(raw)
	if err != nil {
		return ref, fmt.Errorf("ConfigMap %s key %q: %w", pk.Name, pk.Key, err)
	}
	ref.PublicKey = key
	return ref, nil
}

// apiReader is the uncached reader for the public key ConfigMap: APIReader,
// or the client when none is set (unit tests over a fake client).
func (r *FirmwareRolloutReconciler) apiReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// preflightFailed records a failed check and stalls the rollout.
func (r *FirmwareRolloutReconciler) preflightFailed(ctx context.Context, obj *fwv1.FirmwareRollout, err error) error {
	msg := "firmware check failed, no twin was written: " + err.Error()
	meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{Type: ConditionFirmwareVerified, Status: metav1.ConditionFalse,
		Reason: fwv1.ReasonFirmwareInvalid, Message: msg, ObservedGeneration: obj.Generation})
	if !meta.IsStatusConditionFalse(obj.Status.Conditions, fwv1.ConditionReady) ||
		meta.FindStatusCondition(obj.Status.Conditions, fwv1.ConditionStalled) == nil {
		r.event(ctx, obj, corev1.EventTypeWarning, fwv1.ReasonFirmwareInvalid, msg)
	}
	retry := r.Options.PreflightRetry
	if errors.Is(err, ErrFirmwareUnavailable) {
		retry = r.Options.StatusResync
	}
	return &Stalling{Phase: fwv1.PhasePending, Reason: fwv1.ReasonFirmwareInvalid, Err: errors.New(msg), RequeueAfter: jitter(retry)}
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
