package v1alpha1_test

import (
	"context"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// TestFailurePolicyValidated (issue 15 item 3): the API server defaults
// strategy.failurePolicy to Halt, accepts Abort with a maxFailures, and
// refuses an unknown policy or Abort without a limit, saying why.
func TestFailurePolicyValidated(t *testing.T) {
	ctx := context.Background()
	ns := testEnv.Namespace(t)
	cases := []struct {
		name    string
		mutate  func(strategy map[string]any)
		want    fwv1.FailurePolicy
		message string
	}{
		{"defaults to Halt", func(map[string]any) {}, fwv1.FailurePolicyHalt, ""},
		{"Abort with a limit", func(s map[string]any) { s["failurePolicy"], s["maxFailures"] = "Abort", "5%" }, fwv1.FailurePolicyAbort, ""},
		{"unknown policy", func(s map[string]any) { s["failurePolicy"], s["maxFailures"] = "Rollback", 1 }, "",
			`spec.strategy.failurePolicy: Unsupported value: "Rollback": supported values: "Halt", "Abort"`},
		{"Abort without a limit", func(s map[string]any) { s["failurePolicy"] = "Abort" }, "",
			"strategy.failurePolicy Abort needs strategy.maxFailures: without a limit no number of failures passes it, so the rollout would never abort"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			u := decode(t, validRollout)
			u.SetNamespace(ns)
			u.SetName(fmt.Sprintf("policy-%d", i))
			tc.mutate(strategy(u.Object["spec"].(map[string]any)))
			err := testEnv.Client.Create(ctx, u)
			if tc.message != "" {
				g.Expect(err).To(HaveOccurred(), "the API server accepted an invalid failurePolicy")
				g.Expect(err.Error()).To(ContainSubstring(tc.message))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			r := &fwv1.FirmwareRollout{}
			g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(u), r)).To(Succeed())
			g.Expect(r.Spec.Strategy.FailurePolicy).To(Equal(tc.want))
		})
	}
}
