package controllers

import (
	"context"
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/signing"
)

// TestUnitPreflightPublicKeyFromConfigMap: publicKeyRef names a ConfigMap;
// the key is read from binaryData (a raw sig-N.key, as `kubectl create
// configmap --from-file` stores it) or data (a PEM public key), and a
// ConfigMap or key that is missing stalls the rollout with a message that
// says what to create, before the firmware is checked.
func TestUnitPreflightPublicKeyFromConfigMap(t *testing.T) {
	priv, err := signing.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sigKey, err := signing.MarshalSigKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := signing.MarshalPublicKeyPEM(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cm := func(name string, data map[string]string, bin map[string][]byte) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Data: data, BinaryData: bin}
	}
	cases := []struct {
		name    string
		ref     fwv1.ConfigMapKeySelector
		wantErr string
	}{
		{"station key in binaryData", fwv1.ConfigMapKeySelector{Name: "bin", Key: "sig-0.key"}, ""},
		{"PEM public key in data", fwv1.ConfigMapKeySelector{Name: "pem", Key: "sig-0.public.pem"}, ""},
		{"no such ConfigMap", fwv1.ConfigMapKeySelector{Name: "fw-signing", Key: "sig-0.key"},
			"publicKeyRef: no ConfigMap fw-signing in namespace ns (create it with `kubectl -n ns create configmap fw-signing --from-file=sig-0.key=sig-0.key`)"},
		{"no such key", fwv1.ConfigMapKeySelector{Name: "bin", Key: "sig-1.key"}, `ConfigMap bin has no key "sig-1.key" in data or binaryData`},
		{"not a key", fwv1.ConfigMapKeySelector{Name: "pem", Key: "notes"}, `ConfigMap pem key "notes": `},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			u := newUnit(t, 1, []fwv1.RolloutStep{batchStep("1")},
				cm("bin", nil, map[string][]byte{"sig-0.key": sigKey}),
				cm("pem", map[string]string{"sig-0.public.pem": string(pemKey), "notes": "not a key"}, nil))
			var got FirmwareRef
			u.r.Firmware = &FakeChecker{CheckFn: func(_ context.Context, ref FirmwareRef) error { got = ref; return nil }}
			s := u.scope(t)
			s.obj.Spec.Firmware.PublicKeyRef = &tc.ref
			err := u.r.preflight(context.Background(), s)
			if tc.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(got.PublicKey).To(Equal(sigKey), "the checker verifies with the station's 64-byte key")
				return
			}
			var stall *Stalling
			g.Expect(errors.As(err, &stall)).To(BeTrue(), "%v", err)
			g.Expect(stall.Reason).To(Equal(fwv1.ReasonFirmwareInvalid))
			g.Expect(stall.Err.Error()).To(ContainSubstring(tc.wantErr))
			g.Expect(got.URL).To(BeEmpty(), "the firmware is not checked without its key")
		})
	}
}
