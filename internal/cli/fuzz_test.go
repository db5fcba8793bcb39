package cli

import (
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// The API's rules for the fields the manifest writer derives from flags,
// as api/v1alpha1's kubebuilder markers state them (CEL and patterns). A
// fuzz worker cannot reach the API server, so the property is checked
// against them here; the publish tests apply manifests to the real one.
var (
	apiBatchPercent    = regexp.MustCompile(`^(100|[1-9][0-9]?)%$`)
	apiFailuresPercent = regexp.MustCompile(`^(100|[1-9]?[0-9])%$`)
	apiDigits          = regexp.MustCompile(`^[0-9]+$`)
	apiDeviceID        = regexp.MustCompile(`^[0-9A-F]{16}$`)
	apiTagKey          = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)
	apiConfigMapName   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	apiConfigMapKey    = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
)

func checkCount(t *testing.T, what string, v *intstr.IntOrString, percent *regexp.Regexp, min int, doc []byte) {
	t.Helper()
	switch {
	case v == nil:
	case v.Type == intstr.Int && v.IntValue() < min:
		t.Fatalf("%s %d is below %d, which the API refuses:\n%s", what, v.IntValue(), min, doc)
	case v.Type == intstr.String && !percent.MatchString(v.StrVal) && !apiDigits.MatchString(v.StrVal):
		t.Fatalf("%s %q is not a form the API accepts:\n%s", what, v.StrVal, doc)
	}
}

func FuzzPublishManifest(f *testing.F) {
	f.Add("2.0.7", "", "", "0011:22ff:fe33:4455", "region=eu-west", "1,10%,100%", "5%", "")
	f.Add("2.0.7", "fw-eu", "linux", "", "ring=prod", "1,pause,pause=1h30m,100%", "0", "fw-signing/sig-0.key")
	f.Add("v1 ", "", "", "001122FFFE334455", "", "100%", "", "")
	f.Add("2.0.7", "", "", "", "a=b", "05%", "+5%", "")
	f.Add("2.0.7", "", "", "", "a=b", "+1", "-0", "")
	f.Add("ÄÖÜ", "", "", "", "a=b", "pause=1.5h", "100%", "s/k")
	f.Add("2.0\n.7", "", "linux pico", "", "a=b", "1", "", "Station Keys/keys/sig-0.key")
	f.Fuzz(func(t *testing.T, pkg, name, model, deviceID, tag, steps, maxFailures, pubKey string) {
		o := &publishOptions{pkg: pkg, name: name, model: model, steps: steps, maxFailures: maxFailures, publicKeyConfigMap: pubKey}
		if deviceID != "" {
			o.deviceIDs = strings.Split(deviceID, ";")
		}
		if tag != "" {
			o.tags = strings.Split(tag, ";")
		}
		m, err := o.manifest("")
		if err != nil {
			return
		}
		// What publish adds after the upload.
		fw := m["spec"].(map[string]any)["firmware"].(map[string]any)
		fw["url"] = "azblob://firmware/station/update.bin"
		fw["signature"] = "MEUCIQDe" + strings.Repeat("A", 88) // 96 characters, as a DER P-256 signature in base64
		fw["keyChecksum"] = int64(4101823099)
		doc, err := yaml.Marshal(m)
		if err != nil {
			t.Fatalf("encode manifest: %v", err)
		}
		obj := &fwv1.FirmwareRollout{}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("the manifest does not decode strictly: %v\n%s", err, doc)
		}
		r := obj.Spec
		if err := fwv1.ValidatePackage(r.Firmware.Package); err != nil {
			t.Fatalf("package %q breaks the API's rules: %v\n%s", r.Firmware.Package, err, doc)
		}
		if err := fwv1.ValidateModel(r.Firmware.Model); err != nil {
			t.Fatalf("model %q breaks the API's rules: %v\n%s", r.Firmware.Model, err, doc)
		}
		if ref := r.Firmware.PublicKeyRef; ref != nil && (!apiConfigMapName.MatchString(ref.Name) || !apiConfigMapKey.MatchString(ref.Key)) {
			t.Fatalf("publicKeyRef %q/%q breaks the API's rules:\n%s", ref.Name, ref.Key, doc)
		}
		if errs := validation.IsDNS1123Subdomain(obj.Name); len(errs) > 0 {
			t.Fatalf("name %q: %v\n%s", obj.Name, errs, doc)
		}
		if len(r.Firmware.Model) > 64 {
			t.Fatalf("model longer than 64 characters:\n%s", doc)
		}
		if len(r.Selector.DeviceIDs) == 0 && len(r.Selector.Tags) == 0 {
			t.Fatalf("a selector of every station:\n%s", doc)
		}
		for _, id := range r.Selector.DeviceIDs {
			if !apiDeviceID.MatchString(id) {
				t.Fatalf("device id %q:\n%s", id, doc)
			}
		}
		for k, v := range r.Selector.Tags {
			if !apiTagKey.MatchString(k) || k == "stationfleet" || len(v) > 128 {
				t.Fatalf("tag %q=%q:\n%s", k, v, doc)
			}
		}
		if n := len(r.Strategy.Steps); n < 1 || n > 32 {
			t.Fatalf("%d steps:\n%s", n, doc)
		}
		for _, st := range r.Strategy.Steps {
			if (st.Batch == nil) == (st.Pause == nil) {
				t.Fatalf("a step that is not exactly one of batch or pause:\n%s", doc)
			}
			checkCount(t, "batch", st.Batch, apiBatchPercent, 1, doc)
		}
		checkCount(t, "maxFailures", r.Strategy.MaxFailures, apiFailuresPercent, 0, doc)
		if ref := r.Firmware.PublicKeyRef; ref != nil && (ref.Name == "" || ref.Key == "" || len(ref.Name) > 253 || len(ref.Key) > 253) {
			t.Fatalf("publicKeyRef %+v:\n%s", *ref, doc)
		}
	})
}
