package v1alpha1_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

var testEnv *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Main(m, &testEnv))
}

// validRollout is a minimal rollout every invalid case starts from.
const validRollout = `
apiVersion: firmware.stationfleet.io/v1alpha1
kind: FirmwareRollout
metadata: {name: base}
spec:
  firmware:
    package: "2.0.7"
    url: azblob://firmware/basicstation/2.0.7/update.bin
    signature: MEUCIDueCaqDd/sJvPB3Iha0SPwCLyTqMj+cPtYmJPv383H0AiEAl7foOrYX2u1hfrEPl3wa7ZAnBScagvhAQuTR+b7svsM=
    keyChecksum: 4101823099
  selector:
    tags: {region: eu-west}
  strategy:
    steps:
    - batch: 1
`

func decode(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatalf("decode manifest: %v", err)
	}
	return u
}

// TestSamplesAccepted applies every sample in config/samples to the real API
// server: a sample a user copies must work.
func TestSamplesAccepted(t *testing.T) {
	g := NewWithT(t)
	root, err := kubetest.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "firmware_*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(files).NotTo(BeEmpty())
	ns := testEnv.Namespace(t)
	for _, f := range files {
		b, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		for _, doc := range strings.Split(string(b), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			u := decode(t, doc)
			u.SetNamespace(ns)
			g.Expect(testEnv.Client.Create(context.Background(), u)).To(Succeed(), "sample %s", filepath.Base(f))
		}
	}
}

// TestInvalidManifestsRefused shows that the API server itself refuses each
// kind of malformed manifest with a message a person understands.
func TestInvalidManifestsRefused(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(spec map[string]any)
		message string
	}{
		{"package missing", func(s map[string]any) { delete(fw(s), "package") }, "spec.firmware.package: Required value"},
		{"package too long", func(s map[string]any) { fw(s)["package"] = strings.Repeat("9", 65) }, "spec.firmware.package: Too long: may not be more than 64"},
		{"package padded", func(s map[string]any) { fw(s)["package"] = "2.0.7 " }, "must not start or end with white space"},
		{"url scheme", func(s map[string]any) { fw(s)["url"] = "ftp://example.com/update.bin" }, "firmware.url must start with azblob://, https:// or file://"},
		{"signature not base64", func(s map[string]any) { fw(s)["signature"] = "not base64 at all!!" }, "firmware.signature must be standard base64"},
		{"signature too long", func(s map[string]any) { fw(s)["signature"] = strings.Repeat("A", 100) }, "spec.firmware.signature: Too long: may not be more than 96"},
		{"keyChecksum over 32 bits", func(s map[string]any) { fw(s)["keyChecksum"] = int64(4294967296) }, "spec.firmware.keyChecksum: Invalid value: 4294967296: spec.firmware.keyChecksum in body should be less than or equal to 4294967295"},
		{"keyChecksum negative", func(s map[string]any) { fw(s)["keyChecksum"] = -1 }, "should be greater than or equal to 0"},
		{"no selector", func(s map[string]any) { s["selector"] = map[string]any{} }, "selector needs deviceIds or tags (or both)"},
		{"bad device id", func(s map[string]any) { s["selector"] = map[string]any{"deviceIds": []any{"0011:22ff:fe33:4455"}} }, `spec.selector.deviceIds[0]: Invalid value: "0011:22ff:fe33:4455"`},
		{"bad tag key", func(s map[string]any) { s["selector"] = map[string]any{"tags": map[string]any{"region'or'1": "x"}} }, "selector.tags keys must start with a letter"},
		{"tag value too long", func(s map[string]any) {
			s["selector"] = map[string]any{"tags": map[string]any{"region": strings.Repeat("x", 129)}}
		}, "selector.tags values must be at most 128 characters"},
		{"reserved tag", func(s map[string]any) { s["selector"] = map[string]any{"tags": map[string]any{"stationfleet": "x"}} }, "reserved"},
		{"no steps", func(s map[string]any) { strategy(s)["steps"] = []any{} }, "spec.strategy.steps: Invalid value: 0: spec.strategy.steps in body should have at least 1 items"},
		{"step with both", func(s map[string]any) {
			strategy(s)["steps"] = []any{map[string]any{"batch": 1, "pause": map[string]any{}}}
		}, "each step must be exactly one of batch or pause"},
		{"step with neither", func(s map[string]any) { strategy(s)["steps"] = []any{map[string]any{}} }, "each step must be exactly one of batch or pause"},
		{"batch zero", func(s map[string]any) { strategy(s)["steps"] = []any{map[string]any{"batch": 0}} }, "batch must be a positive count or a percentage from 1% to 100%"},
		{"batch 0%", func(s map[string]any) { strategy(s)["steps"] = []any{map[string]any{"batch": "0%"}} }, "batch must be a positive count or a percentage from 1% to 100%"},
		{"batch 101%", func(s map[string]any) { strategy(s)["steps"] = []any{map[string]any{"batch": "101%"}} }, "batch must be a positive count or a percentage from 1% to 100%"},
		{"maxFailures word", func(s map[string]any) { strategy(s)["maxFailures"] = "many" }, "strategy.maxFailures must be a count (0 or more) or a percentage"},
		{"progressDeadline short", func(s map[string]any) { strategy(s)["progressDeadline"] = "30s" }, "strategy.progressDeadline must be at least 1m"},
		{"progressDeadline garbage", func(s map[string]any) { strategy(s)["progressDeadline"] = "tomorrow" }, "spec.strategy.progressDeadline: Invalid value: \"tomorrow\""},
	}
	ns := testEnv.Namespace(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			u := decode(t, validRollout)
			u.SetNamespace(ns)
			u.SetName("invalid-" + string(rune('a'+i)))
			tc.mutate(u.Object["spec"].(map[string]any))
			err := testEnv.Client.Create(context.Background(), u)
			g.Expect(err).To(HaveOccurred(), "the API server accepted an invalid manifest")
			g.Expect(err.Error()).To(ContainSubstring(tc.message))
		})
	}
}

// TestTransitionRules shows the rules that compare a change with the stored
// object: firmware is immutable, abort cannot be undone.
func TestTransitionRules(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := testEnv.Namespace(t)
	u := decode(t, validRollout)
	u.SetNamespace(ns)
	g.Expect(testEnv.Client.Create(ctx, u)).To(Succeed())

	r := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(u), r)).To(Succeed())
	r.Spec.Firmware.Package = "2.0.8"
	err := testEnv.Client.Update(ctx, r)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("spec.firmware is immutable"))

	g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(u), r)).To(Succeed())
	r.Spec.Abort = true
	g.Expect(testEnv.Client.Update(ctx, r)).To(Succeed())
	r.Spec.Abort = false
	err = testEnv.Client.Update(ctx, r)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("spec.abort cannot be set back to false"))
}

// TestDefaultsApplied shows that the API server fills the documented defaults.
func TestDefaultsApplied(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	u := decode(t, validRollout)
	u.SetNamespace(testEnv.Namespace(t))
	g.Expect(testEnv.Client.Create(ctx, u)).To(Succeed())
	r := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(u), r)).To(Succeed())
	g.Expect(r.Spec.Strategy.ProgressDeadline).NotTo(BeNil())
	g.Expect(r.Spec.Strategy.ProgressDeadline.Duration.Hours()).To(BeNumerically("==", 26))
	g.Expect(r.Spec.Strategy.MaxUpdateAttempts).To(HaveValue(BeNumerically("==", 3)))
}

// TestStatusSubresource shows that status is written through its own
// subresource: a spec update does not change it and a status update does
// not change the spec.
func TestStatusSubresource(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	u := decode(t, validRollout)
	u.SetNamespace(testEnv.Namespace(t))
	g.Expect(testEnv.Client.Create(ctx, u)).To(Succeed())

	r := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(u), r)).To(Succeed())
	r.Status.Phase = fwv1.PhaseProgressing
	r.Status.Targets = 100
	r.Status.Updated = 42
	r.Status.Progress = "42/100"
	r.Status.Failures = []fwv1.StationFailure{{DeviceID: "001122FFFE334455", Reason: fwv1.FailureKeyMismatch, Message: "no key", Time: r.CreationTimestamp}}
	g.Expect(testEnv.Client.Status().Update(ctx, r)).To(Succeed())

	got := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(u), got)).To(Succeed())
	g.Expect(got.Status.Phase).To(Equal(fwv1.PhaseProgressing))
	g.Expect(got.Status.Updated).To(BeNumerically("==", 42))
	g.Expect(got.Status.Failures).To(HaveLen(1))
	g.Expect(got.Status.Failures[0].Reason).To(Equal(fwv1.FailureKeyMismatch))

	// A write to the main resource ignores status changes.
	got.Status.Phase = fwv1.PhaseAborted
	got.Spec.Paused = true
	g.Expect(testEnv.Client.Update(ctx, got)).To(Succeed())
	again := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(u), again)).To(Succeed())
	g.Expect(again.Spec.Paused).To(BeTrue())
	g.Expect(again.Status.Phase).To(Equal(fwv1.PhaseProgressing))
}

func fw(spec map[string]any) map[string]any       { return spec["firmware"].(map[string]any) }
func strategy(spec map[string]any) map[string]any { return spec["strategy"].(map[string]any) }
