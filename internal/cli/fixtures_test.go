package cli

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// Firmware of the test rollouts.
const (
	testSignature = "MEUCIQDn3kRlb1JzJrZ0YW5kYXJkIGJhc2U2NCBzaWduYXR1cmUgZm9yIHRlc3Rz"
	testKeyCRC    = 3735928559
)

// newRollout is a realistic rollout: a canary of one, 10%, a pause until
// resumed, then everything.
func newRollout(ns, name string) *fwv1.FirmwareRollout {
	ten, all, one := intstr.FromString("10%"), intstr.FromString("100%"), intstr.FromInt32(1)
	maxF := intstr.FromString("5%")
	return &fwv1.FirmwareRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: fwv1.FirmwareRolloutSpec{
			Firmware: fwv1.FirmwareSpec{
				Package:     "2.0.7",
				URL:         "azblob://firmware/station/2.0.7/station.bin",
				Signature:   testSignature,
				KeyChecksum: testKeyCRC,
				Model:       "linux",
			},
			Selector: fwv1.StationSelector{Tags: map[string]string{"ring": "canary"}},
			Strategy: fwv1.RolloutStrategy{
				Steps: []fwv1.RolloutStep{
					{Batch: &one},
					{Batch: &ten},
					{Pause: &fwv1.PauseStep{}},
					{Batch: &all},
				},
				MaxFailures: &maxF,
			},
		},
	}
}

func ago(d time.Duration) *metav1.Time {
	t := metav1.NewTime(testNow.Add(-d))
	return &t
}

func cond(typ string, st metav1.ConditionStatus, reason, msg string, since time.Duration) metav1.Condition {
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, LastTransitionTime: *ago(since), ObservedGeneration: 1}
}

// Statuses the controller produces, by scenario.

func progressingStatus() fwv1.FirmwareRolloutStatus {
	msg := "step 2 of 4: 3 updated, 2 in progress, 1 failed, 44 pending of 50 stations"
	return fwv1.FirmwareRolloutStatus{
		ObservedGeneration: 1, Phase: fwv1.PhaseProgressing,
		Conditions: []metav1.Condition{
			cond(fwv1.ConditionFirmwareVerified, metav1.ConditionTrue, fwv1.ReasonVerified, "the firmware blob exists and its signature verifies with the given key", 40*time.Minute),
			cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonProgressing, msg, 40*time.Minute),
			cond(fwv1.ConditionReconciling, metav1.ConditionTrue, fwv1.ReasonProgressing, msg, 40*time.Minute),
		},
		Targets: 50, StationCounts: fwv1.StationCounts{Pending: 44, WrittenCounts: fwv1.WrittenCounts{InProgress: 2, Updated: 3, Failed: 1}},
		Progress: "3/50", CurrentStep: 2,
		StepStartTime: ago(25 * time.Minute), StartTime: ago(40 * time.Minute),
		Batches: []fwv1.BatchStatus{
			{Step: 1, Size: 1, WrittenCounts: fwv1.WrittenCounts{Updated: 1}, StartTime: ago(40 * time.Minute), CompletionTime: ago(25 * time.Minute)},
			{Step: 2, Size: 5, WrittenCounts: fwv1.WrittenCounts{Updated: 2, Failed: 1, InProgress: 2}, StartTime: ago(25 * time.Minute)},
		},
		Failures: []fwv1.StationFailure{{DeviceID: "001122FFFE334455", Reason: fwv1.FailureKeyMismatch,
			Message: "the station has no sig-N.key whose CRC is the rollout's keyChecksum; it was not sent the firmware", Time: *ago(3 * time.Minute)}},
	}
}

func waitingStatus(name string) fwv1.FirmwareRolloutStatus {
	st := progressingStatus()
	msg := "step 3 of 4: paused until resumed (kubectl stationfleet resume " + name + ")"
	st.Phase = fwv1.PhasePaused
	st.Conditions = []metav1.Condition{
		st.Conditions[0],
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonWaitingForResume, msg, 5*time.Minute),
	}
	st.InProgress, st.Updated, st.Progress, st.CurrentStep = 0, 5, "5/50", 3
	st.StepStartTime = ago(5 * time.Minute)
	st.Batches[1] = fwv1.BatchStatus{Step: 2, Size: 5, WrittenCounts: fwv1.WrittenCounts{Updated: 4, Failed: 1}, StartTime: ago(25 * time.Minute), CompletionTime: ago(5 * time.Minute)}
	st.Updated = 5
	return st
}

func haltedStatus() fwv1.FirmwareRolloutStatus {
	st := progressingStatus()
	msg := "4 stations failed, more than maxFailures allows (2); no further batch is written. Abort to restore the previous firmware, or delete the rollout"
	st.Phase = fwv1.PhaseHalted
	st.Conditions = []metav1.Condition{
		st.Conditions[0],
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonHalted, msg, 2*time.Minute),
		cond(fwv1.ConditionStalled, metav1.ConditionTrue, fwv1.ReasonHalted, msg, 2*time.Minute),
	}
	st.Updated, st.Failed, st.InProgress, st.Progress = 2, 4, 0, "2/50"
	st.Batches[1] = fwv1.BatchStatus{Step: 2, Size: 5, WrittenCounts: fwv1.WrittenCounts{Updated: 1, Failed: 4}, StartTime: ago(25 * time.Minute), CompletionTime: ago(2 * time.Minute)}
	st.CompletionTime = ago(2 * time.Minute)
	st.Failures = []fwv1.StationFailure{
		{DeviceID: "00000000000000A4", Reason: fwv1.FailureTimedOut, Message: `no report of package "2.0.7" within 20m0s of the twin being written; last reported "2.0.6"`, Time: *ago(2 * time.Minute)},
		{DeviceID: "00000000000000A3", Reason: fwv1.FailureNotApplied, Message: `served the update 3 times, the station still reports package "2.0.6"`, Time: *ago(4 * time.Minute)},
		{DeviceID: "00000000000000A2", Reason: fwv1.FailureModelMismatch, Message: "the station reports another model than firmware.model; it was not sent the firmware", Time: *ago(8 * time.Minute)},
		{DeviceID: "001122FFFE334455", Reason: fwv1.FailureKeyMismatch, Message: "the station has no sig-N.key whose CRC is the rollout's keyChecksum; it was not sent the firmware", Time: *ago(13 * time.Minute)},
	}
	return st
}

func completedStatus() fwv1.FirmwareRolloutStatus {
	msg := "49 of 50 stations updated, 1 failed, 0 skipped"
	return fwv1.FirmwareRolloutStatus{
		ObservedGeneration: 1, Phase: fwv1.PhaseCompleted,
		Conditions: []metav1.Condition{
			cond(fwv1.ConditionFirmwareVerified, metav1.ConditionTrue, fwv1.ReasonVerified, "the firmware blob exists and its signature verifies with the given key", 3*time.Hour),
			cond(fwv1.ConditionReady, metav1.ConditionTrue, fwv1.ReasonCompleted, msg, 10*time.Minute),
		},
		Targets: 50, StationCounts: fwv1.StationCounts{WrittenCounts: fwv1.WrittenCounts{Updated: 49, Failed: 1}},
		Progress: "49/50", CurrentStep: 4,
		StepStartTime: ago(70 * time.Minute), StartTime: ago(3 * time.Hour), CompletionTime: ago(10 * time.Minute),
		Batches: []fwv1.BatchStatus{
			{Step: 1, Size: 1, WrittenCounts: fwv1.WrittenCounts{Updated: 1}, StartTime: ago(3 * time.Hour), CompletionTime: ago(170 * time.Minute)},
			{Step: 2, Size: 5, WrittenCounts: fwv1.WrittenCounts{Updated: 4, Failed: 1}, StartTime: ago(170 * time.Minute), CompletionTime: ago(150 * time.Minute)},
			{Step: 4, Size: 44, WrittenCounts: fwv1.WrittenCounts{Updated: 44}, StartTime: ago(70 * time.Minute), CompletionTime: ago(10 * time.Minute)},
		},
		Failures: []fwv1.StationFailure{{DeviceID: "001122FFFE334455", Reason: fwv1.FailureKeyMismatch,
			Message: "the station has no sig-N.key whose CRC is the rollout's keyChecksum; it was not sent the firmware", Time: *ago(160 * time.Minute)}},
		LastHandledResume: testNow.Add(-80 * time.Minute).Format(time.RFC3339Nano),
	}
}

func firmwareInvalidStatus() fwv1.FirmwareRolloutStatus {
	msg := "firmware check failed, no twin was written: blob azblob://firmware/station/2.0.7/station.bin does not exist"
	return fwv1.FirmwareRolloutStatus{
		ObservedGeneration: 1, Phase: fwv1.PhasePending,
		Conditions: []metav1.Condition{
			cond(fwv1.ConditionFirmwareVerified, metav1.ConditionFalse, fwv1.ReasonFirmwareInvalid, msg, time.Minute),
			cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonFirmwareInvalid, msg, time.Minute),
			cond(fwv1.ConditionStalled, metav1.ConditionTrue, fwv1.ReasonFirmwareInvalid, msg, time.Minute),
		},
	}
}

// createRollout creates obj (with spec mutated by mut) and sets its status
// through the status subresource, as the controller would.
func createRollout(t *testing.T, obj *fwv1.FirmwareRollout, st fwv1.FirmwareRolloutStatus) *fwv1.FirmwareRollout {
	t.Helper()
	ctx := context.Background()
	c := testEnv.Client
	if err := c.Create(ctx, obj); err != nil {
		t.Fatalf("create rollout: %v", err)
	}
	st.ObservedGeneration = obj.Generation
	obj.Status = st
	if err := c.Status().Update(ctx, obj); err != nil {
		t.Fatalf("set rollout status: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	return obj
}
