package controllers

import (
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// TestStatusPatchCarriesEveryCounter: the status patch sends every counter,
// also the ones that did not change, so that a zero count is stored and
// kubectl prints 0 in the FAILED column instead of nothing.
func TestStatusPatchCarriesEveryCounter(t *testing.T) {
	g := NewWithT(t)
	base := &fwv1.FirmwareRollout{}
	base.ResourceVersion = "7"
	base.Status.Targets, base.Status.Pending, base.Status.CurrentStep = 3, 3, 1
	obj := base.DeepCopy()
	obj.Status.Pending, obj.Status.InProgress, obj.Status.Updated = 1, 1, 1

	raw, err := statusPatch{base: base}.Data(obj)
	g.Expect(err).NotTo(HaveOccurred())
	var patch struct {
		Metadata map[string]any   `json:"metadata"`
		Status   map[string]int32 `json:"status"`
	}
	g.Expect(json.Unmarshal(raw, &patch)).To(Succeed(), string(raw))
	g.Expect(patch.Status).To(Equal(map[string]int32{
		"targets": 3, "pending": 1, "inProgress": 1, "updated": 1, "failed": 0, "skipped": 0, "baking": 0, "currentStep": 1,
	}))
	g.Expect(patch.Metadata).To(HaveKeyWithValue("resourceVersion", "7"))
}
