package v1alpha1_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

// TestStationCountsAdd counts each outcome in its own counter, in the
// rollout's counts and in a batch's.
func TestStationCountsAdd(t *testing.T) {
	cases := []struct {
		name     string
		outcomes []fwv1.StationOutcome
		want     fwv1.StationCounts
		// wantBatch is what a batch's WrittenCounts hold for the same
		// outcomes: a batch never holds a Pending or Skipped station.
		wantBatch fwv1.WrittenCounts
		// notCounted is how many of outcomes a batch does not count.
		notCounted int
	}{
		{name: "none"},
		{name: "one of each",
			outcomes: []fwv1.StationOutcome{fwv1.OutcomePending, fwv1.OutcomeInProgress, fwv1.OutcomeUpdated, fwv1.OutcomeFailed, fwv1.OutcomeSkipped},
			want: fwv1.StationCounts{Pending: 1, Skipped: 1,
				WrittenCounts: fwv1.WrittenCounts{InProgress: 1, Updated: 1, Failed: 1}},
			wantBatch:  fwv1.WrittenCounts{InProgress: 1, Updated: 1, Failed: 1},
			notCounted: 2},
		{name: "a batch under way",
			outcomes:  []fwv1.StationOutcome{fwv1.OutcomeUpdated, fwv1.OutcomeInProgress, fwv1.OutcomeUpdated, fwv1.OutcomeUpdated, fwv1.OutcomeFailed},
			want:      fwv1.StationCounts{WrittenCounts: fwv1.WrittenCounts{InProgress: 1, Updated: 3, Failed: 1}},
			wantBatch: fwv1.WrittenCounts{InProgress: 1, Updated: 3, Failed: 1}},
		{name: "nothing written yet",
			outcomes:   []fwv1.StationOutcome{fwv1.OutcomePending, fwv1.OutcomePending, fwv1.OutcomeSkipped},
			want:       fwv1.StationCounts{Pending: 2, Skipped: 1},
			notCounted: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var c fwv1.StationCounts
			var b fwv1.WrittenCounts
			notCounted := 0
			for _, o := range tc.outcomes {
				g.Expect(c.Add(o)).To(BeTrue(), "outcome %s", o)
				if !b.Add(o) {
					notCounted++
				}
			}
			g.Expect(c).To(Equal(tc.want))
			g.Expect(c.Total()).To(BeNumerically("==", len(tc.outcomes)))
			g.Expect(b).To(Equal(tc.wantBatch))
			g.Expect(b.Total()).To(BeNumerically("==", len(tc.outcomes)-tc.notCounted))
			g.Expect(notCounted).To(Equal(tc.notCounted))
		})
	}
}

// TestStationCountsAddUnknown: a value that is no outcome is counted
// nowhere, and Add says so.
func TestStationCountsAddUnknown(t *testing.T) {
	g := NewWithT(t)
	var c fwv1.StationCounts
	g.Expect(c.Add("Exploded")).To(BeFalse())
	g.Expect(c.Add("")).To(BeFalse())
	g.Expect(c).To(Equal(fwv1.StationCounts{}))
}

// TestStationCountsEach: Each gives every outcome once, zeros included, in
// a fixed order (the metrics gauge and the CLI rely on both).
func TestStationCountsEach(t *testing.T) {
	type pair struct {
		o fwv1.StationOutcome
		n int32
	}
	cases := []struct {
		name string
		each func(func(fwv1.StationOutcome, int32))
		want []pair
	}{
		{"rollout", fwv1.StationCounts{Pending: 5, Skipped: 1, WrittenCounts: fwv1.WrittenCounts{Updated: 3}}.Each,
			[]pair{{fwv1.OutcomePending, 5}, {fwv1.OutcomeInProgress, 0}, {fwv1.OutcomeUpdated, 3}, {fwv1.OutcomeFailed, 0}, {fwv1.OutcomeSkipped, 1}}},
		{"rollout, all zero", fwv1.StationCounts{}.Each,
			[]pair{{fwv1.OutcomePending, 0}, {fwv1.OutcomeInProgress, 0}, {fwv1.OutcomeUpdated, 0}, {fwv1.OutcomeFailed, 0}, {fwv1.OutcomeSkipped, 0}}},
		{"batch", fwv1.WrittenCounts{InProgress: 2, Failed: 4}.Each,
			[]pair{{fwv1.OutcomeInProgress, 2}, {fwv1.OutcomeUpdated, 0}, {fwv1.OutcomeFailed, 4}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []pair
			tc.each(func(o fwv1.StationOutcome, n int32) { got = append(got, pair{o, n}) })
			NewWithT(t).Expect(got).To(Equal(tc.want))
		})
	}
}

// TestStatusFieldsPromoted: code written against the flat status
// (st.Updated, b.Failed) keeps working on the shared counts.
func TestStatusFieldsPromoted(t *testing.T) {
	g := NewWithT(t)
	var st fwv1.FirmwareRolloutStatus
	st.Add(fwv1.OutcomeUpdated)
	st.Add(fwv1.OutcomePending)
	st.Failed++
	var b fwv1.BatchStatus
	b.Add(fwv1.OutcomeUpdated)
	b.InProgress++
	g.Expect(st.Updated).To(BeNumerically("==", 1))
	g.Expect(st.Pending).To(BeNumerically("==", 1))
	g.Expect(st.StationCounts.WrittenCounts).To(Equal(fwv1.WrittenCounts{Updated: 1, Failed: 1}))
	g.Expect(b.WrittenCounts).To(Equal(fwv1.WrittenCounts{InProgress: 1, Updated: 1}))
}

// statusWire is a rollout status as stationfleet stored it before the counts
// were one struct (recorded from the flat types): the wire format must not
// change, zeros included.
const (
	statusWire = `{"observedGeneration":2,"phase":"Progressing","targets":10,"pending":4,"inProgress":2,"updated":3,"failed":0,"skipped":1,` +
		`"progress":"3/10","baking":1,"currentStep":2,"stepStartTime":"2026-12-01T10:00:00Z","batches":[` +
		`{"step":1,"size":5,"inProgress":2,"updated":3,"failed":0,"startTime":"2026-12-01T10:00:00Z"},` +
		`{"step":2,"size":1,"inProgress":0,"updated":0,"failed":0}]}`
	emptyStatusWire = `{"targets":0,"pending":0,"inProgress":0,"updated":0,"failed":0,"skipped":0,"baking":0,"currentStep":0}`
)

func wireStatus() fwv1.FirmwareRolloutStatus {
	ts := metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	st := fwv1.FirmwareRolloutStatus{ObservedGeneration: 2, Phase: fwv1.PhaseProgressing, Progress: "3/10", CurrentStep: 2, StepStartTime: &ts}
	st.Targets, st.Pending, st.InProgress, st.Updated, st.Failed, st.Skipped, st.Baking = 10, 4, 2, 3, 0, 1, 1
	b := fwv1.BatchStatus{Step: 1, Size: 5, StartTime: &ts}
	b.InProgress, b.Updated, b.Failed = 2, 3, 0
	st.Batches = []fwv1.BatchStatus{b, {Step: 2, Size: 1}}
	return st
}

// TestStatusWireFormat: the status marshals byte for byte as before, and
// the stored form reads back into the same counts.
func TestStatusWireFormat(t *testing.T) {
	g := NewWithT(t)
	out, err := json.Marshal(wireStatus())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(out)).To(Equal(statusWire))
	out, err = json.Marshal(fwv1.FirmwareRolloutStatus{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(out)).To(Equal(emptyStatusWire))

	var back fwv1.FirmwareRolloutStatus
	g.Expect(json.Unmarshal([]byte(statusWire), &back)).To(Succeed())
	expectWireCounts(g, back)
	out, err = json.Marshal(back)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(out)).To(Equal(statusWire))
}

// expectWireCounts checks the counters of statusWire read into st.
func expectWireCounts(g Gomega, st fwv1.FirmwareRolloutStatus) {
	want := wireStatus()
	g.Expect(st.Targets).To(Equal(want.Targets))
	g.Expect(st.StationCounts).To(Equal(want.StationCounts))
	g.Expect(st.Baking).To(Equal(want.Baking))
	g.Expect(st.Batches).To(HaveLen(len(want.Batches)))
	for i, b := range st.Batches {
		g.Expect(b.WrittenCounts).To(Equal(want.Batches[i].WrittenCounts), "batch %d", i)
	}
}

// TestFailureReasonEnum: the CRD's enum of status.failures[].reason, the Go
// constants (FailureReasons) and Known agree, so a reason added in Go
// without the marker (or the other way round) fails here, not in a cluster.
func TestFailureReasonEnum(t *testing.T) {
	g := NewWithT(t)
	root, err := kubetest.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := os.ReadFile(filepath.Join(root, "config", "crd", "bases", "firmware.stationfleet.io_firmwarerollouts.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var crd apiextensionsv1.CustomResourceDefinition
	g.Expect(yaml.Unmarshal(raw, &crd)).To(Succeed())
	g.Expect(crd.Spec.Versions).To(HaveLen(1))
	status := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"]
	reason := status.Properties["failures"].Items.Schema.Properties["reason"]
	var enum []fwv1.FailureReason
	for _, v := range reason.Enum {
		var s fwv1.FailureReason
		g.Expect(json.Unmarshal(v.Raw, &s)).To(Succeed())
		enum = append(enum, s)
	}
	g.Expect(enum).To(Equal(fwv1.FailureReasons()), "the Enum marker of FailureReason and FailureReasons differ; run make manifests")
	for _, r := range fwv1.FailureReasons() {
		g.Expect(r.Known()).To(BeTrue(), "reason %s", r)
	}
	for _, r := range []fwv1.FailureReason{"", "Exploded", "keymismatch", fwv1.FailureReason(fwv1.SkipOwnedElsewhere)} {
		g.Expect(r.Known()).To(BeFalse(), "reason %q", r)
	}
}

// createForStatus creates a valid rollout to write statuses on.
func createForStatus(t *testing.T, name string) *fwv1.FirmwareRollout {
	t.Helper()
	g := NewWithT(t)
	u := decode(t, validRollout)
	u.SetNamespace(testEnv.Namespace(t))
	u.SetName(name)
	g.Expect(testEnv.Client.Create(context.Background(), u)).To(Succeed())
	r := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(u), r)).To(Succeed())
	return r
}

// TestFailureReasonRefused: the API server refuses a status whose failure
// reason is none of the known ones, with a message that names the allowed
// values, and accepts each known one.
func TestFailureReasonRefused(t *testing.T) {
	ctx := context.Background()
	r := createForStatus(t, "reasons")
	for _, reason := range append(fwv1.FailureReasons(), "Exploded", "keymismatch", "") {
		t.Run(fmt.Sprintf("%q", reason), func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(r), r)).To(Succeed())
			r.Status.Failures = []fwv1.StationFailure{{DeviceID: "001122FFFE334455", Reason: reason, Message: "m", Time: r.CreationTimestamp}}
			err := testEnv.Client.Status().Update(ctx, r)
			if reason.Known() {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(HaveOccurred(), "the API server accepted failure reason %q", reason)
			g.Expect(err.Error()).To(ContainSubstring(fmt.Sprintf(
				`status.failures[0].reason: Unsupported value: %q: supported values: "KeyMismatch", "ModelMismatch", "NotApplied", "TimedOut", "Unhealthy", "RolledBack"`, reason)))
		})
	}
}

// TestStatusCountersRoundTrip: a status in the stored wire format (the
// controller's merge patch) is stored and read back with every counter,
// zeros included (kubectl's FAILED column shows 0, not nothing), and the
// typed status reads back into the same JSON.
func TestStatusCountersRoundTrip(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	r := createForStatus(t, "counters")
	patch := []byte(`{"status":` + statusWire + `}`)
	g.Expect(testEnv.Client.Status().Patch(ctx, r, client.RawPatch(types.MergePatchType, patch))).To(Succeed())

	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(fwv1.GroupVersion.WithKind(fwv1.FirmwareRolloutKind))
	g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(r), u)).To(Succeed())
	for k, want := range map[string]int64{"targets": 10, "pending": 4, "inProgress": 2, "updated": 3, "failed": 0, "skipped": 1, "baking": 1} {
		n, found, err := unstructured.NestedInt64(u.Object, "status", k)
		g.Expect(err).NotTo(HaveOccurred(), "status.%s", k)
		g.Expect(found).To(BeTrue(), "status.%s is not stored", k)
		g.Expect(n).To(Equal(want), "status.%s", k)
	}
	batches, _, err := unstructured.NestedSlice(u.Object, "status", "batches")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(batches).To(HaveLen(2))
	g.Expect(batches[1]).To(Equal(map[string]any{"step": int64(2), "size": int64(1), "inProgress": int64(0), "updated": int64(0), "failed": int64(0)}))

	got := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(r), got)).To(Succeed())
	expectWireCounts(g, got.Status)
	out, err := json.Marshal(got.Status)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(out)).To(Equal(statusWire))

	// A typed update of an all-zero status stores every counter too.
	got.Status = fwv1.FirmwareRolloutStatus{}
	g.Expect(testEnv.Client.Status().Update(ctx, got)).To(Succeed())
	g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(r), u)).To(Succeed())
	status, _, err := unstructured.NestedMap(u.Object, "status")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(status).To(Equal(map[string]any{"targets": int64(0), "pending": int64(0), "inProgress": int64(0), "updated": int64(0),
		"failed": int64(0), "skipped": int64(0), "baking": int64(0), "currentStep": int64(0)}))
}
