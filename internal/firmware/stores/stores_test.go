package stores_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/firmware/azblob"
	"github.com/stationfleet/stationfleet/internal/firmware/local"
	"github.com/stationfleet/stationfleet/internal/firmware/stores"
)

// crdGlob finds the generated CRDs from this package's directory.
const crdGlob = "../../../config/crd/bases/*.yaml"

// schemeTerm is one term of the API's scheme rule: self.startsWith('x://').
var schemeTerm = regexp.MustCompile(`^self\.startsWith\('([a-z][a-z0-9+.-]*)://'\)$`)

// urlRules returns the x-kubernetes-validations of spec.firmware.url in every
// version of the FirmwareRollout CRD.
func urlRules(t *testing.T) []apiextensionsv1.ValidationRule {
	t.Helper()
	files, err := filepath.Glob(crdGlob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs at %s: %v", crdGlob, err)
	}
	var rules []apiextensionsv1.ValidationRule
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if crd.Spec.Names.Kind != "FirmwareRollout" {
			continue
		}
		for _, v := range crd.Spec.Versions {
			spec := v.Schema.OpenAPIV3Schema.Properties["spec"]
			u, ok := spec.Properties["firmware"].Properties["url"]
			if !ok {
				t.Fatalf("%s version %s: no spec.firmware.url", f, v.Name)
			}
			rules = append(rules, u.XValidations...)
		}
	}
	if len(rules) == 0 {
		t.Fatalf("no FirmwareRollout CRD with rules on spec.firmware.url under %s", crdGlob)
	}
	return rules
}

// apiSchemes finds the rule that lists the schemes a firmware.url may start
// with (only self.startsWith('x://') terms joined by ||) and returns them
// and the rule's message.
func apiSchemes(rules []apiextensionsv1.ValidationRule) (schemes []string, message string, err error) {
	for _, r := range rules {
		var found []string
		for _, term := range strings.Split(r.Rule, "||") {
			m := schemeTerm.FindStringSubmatch(strings.TrimSpace(term))
			if m == nil {
				found = nil
				break
			}
			found = append(found, m[1])
		}
		if found != nil {
			if schemes != nil {
				return nil, "", fmt.Errorf("two rules list schemes: %v and %v", schemes, found)
			}
			schemes, message = found, r.Message
		}
	}
	if schemes == nil {
		return nil, "", fmt.Errorf("no rule of the form self.startsWith('x://') || ... on spec.firmware.url")
	}
	return schemes, message, nil
}

// compareSchemes says how the API's scheme rule and message differ from the
// registry's schemes.
func compareSchemes(rules []apiextensionsv1.ValidationRule, reg *firmware.Registry) error {
	api, message, err := apiSchemes(rules)
	if err != nil {
		return err
	}
	var errs []string
	if !slices.Equal(api, reg.Schemes()) {
		errs = append(errs, fmt.Sprintf("the API's firmware.url rule allows %v, the registered backends serve %v: "+
			"change the +kubebuilder:validation:XValidation rule on FirmwareSpec.URL in api/v1alpha1 (and its message) and run make manifests", api, reg.Schemes()))
	}
	if want := "firmware.url must start with " + reg.Want(); message != want {
		errs = append(errs, fmt.Sprintf("the rule's message is %q, want %q", message, want))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// TestAPISchemesAreRegistered: the schemes the API server lets a rollout's
// firmware.url start with are exactly the registered backends' schemes (in
// the same order, with the message built from them). A backend registered
// without changing the API's rule, or a rule changed without a backend,
// fails here.
func TestAPISchemesAreRegistered(t *testing.T) {
	rules := urlRules(t)
	if err := compareSchemes(rules, stores.Registry()); err != nil {
		t.Fatal(err)
	}

	t.Run("the API's Go mirror of the rule allows the same schemes", func(t *testing.T) {
		// api/v1alpha1's ValidateFirmwareURL (what publish checks before
		// uploading) repeats the CEL rules; its own test holds it to them
		// value by value, this one to the registry scheme by scheme.
		g := NewWithT(t)
		_, message, err := apiSchemes(rules)
		g.Expect(err).NotTo(HaveOccurred())
		for _, scheme := range stores.Registry().Schemes() {
			err := fwv1.ValidateFirmwareURL(scheme + "://host/container/path/fw.bin")
			if err != nil {
				g.Expect(err.Error()).NotTo(ContainSubstring(message), scheme)
			}
		}
		g.Expect(fwv1.ValidateFirmwareURL("s3://bucket/path/fw.bin")).To(MatchError(ContainSubstring(message)))
	})
	t.Run("a backend the API does not know fails the comparison", func(t *testing.T) {
		g := NewWithT(t)
		s3 := &firmware.Backend{Name: "S3", Schemes: []firmware.Scheme{{Name: "s3", Form: "s3://BUCKET/PATH"}}, Enable: "set --s3-bucket",
			Parse: func(*url.URL, bool) (firmware.BlobURL, error) { return firmware.BlobURL{}, nil }}
		reg, err := firmware.NewRegistry(azblob.Backend, local.Backend, s3)
		g.Expect(err).NotTo(HaveOccurred())
		err = compareSchemes(rules, reg)
		g.Expect(err).To(MatchError(ContainSubstring("the API's firmware.url rule allows [azblob https file], the registered backends serve [azblob https file s3]")))
		g.Expect(err).To(MatchError(ContainSubstring(`want "firmware.url must start with azblob://, https://, file:// or s3://"`)))
	})
	t.Run("an endpoint-only scheme is not one a rollout may name", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(stores.Registry().Schemes()).NotTo(ContainElement(azblob.SchemeHTTP))
		b, ok := stores.Registry().Lookup("HTTP")
		g.Expect(ok).To(BeTrue(), "the store still serves http:// under a configured endpoint (Azurite)")
		g.Expect(b).To(BeIdenticalTo(azblob.Backend))
	})
}

// TestRouter: each URL goes to the store of its scheme's backend; a scheme
// without a configured backend, or no backend at all, gets an error saying
// what to set, and an unknown scheme one listing the registered schemes.
func TestRouter(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	g := NewWithT(t)
	g.Expect(os.WriteFile(filepath.Join(dir, "fw.bin"), []byte("firmware"), 0o644)).To(Succeed())
	r, err := stores.New(stores.Options{Dir: dir})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = r.Close() })

	tests := []struct {
		url     string
		message string
	}{
		{url: "file:fw.bin"},
		{url: "FILE://" + dir + "/fw.bin"},
		{url: "azblob://firmware/fw.bin", message: "stat azblob://firmware/fw.bin: invalid blob URL: Azure Blob storage is not configured (set --azblob-account or --azblob-endpoint)"},
		{url: "https://acct.blob.core.windows.net/firmware/fw.bin", message: "Azure Blob storage is not configured (set --azblob-account or --azblob-endpoint)"},
		{url: "ftp://host/fw.bin", message: `stat ftp://host/fw.bin: invalid blob URL: unsupported scheme "ftp"; want azblob://, https:// or file://`},
		{url: "fw.bin", message: "stat fw.bin: invalid blob URL: no scheme; want azblob://, https:// or file://"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			g := NewWithT(t)
			info, err := r.Stat(ctx, tt.url)
			if tt.message == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(info.Size).To(BeEquivalentTo(len("firmware")))
				return
			}
			g.Expect(err).To(MatchError(firmware.ErrInvalidURL))
			g.Expect(err).To(MatchError(ContainSubstring(tt.message)))
			g.Expect(firmware.IsTransient(err)).To(BeFalse())
		})
	}

	t.Run("nothing configured", func(t *testing.T) {
		t.Setenv(azblob.EnvAccount, "")
		t.Setenv(azblob.EnvConnectionString, "")
		_, err := stores.New(stores.DefaultOptions())
		NewWithT(t).Expect(err).To(MatchError("no firmware storage configured: for Azure Blob storage set --azblob-account or --azblob-endpoint; for the local firmware directory set --firmware-dir"))
	})
}

// TestParseURL: the registry parses every backend's URLs and refuses others
// with the registered schemes in the message.
func TestParseURL(t *testing.T) {
	tests := []struct {
		url     string
		want    firmware.BlobURL
		message string
	}{
		{url: "azblob://firmware/station/fw.bin", want: firmware.BlobURL{Scheme: "azblob", Container: "firmware", Blob: "station/fw.bin"}},
		{url: "HTTPS://Acct.blob.core.windows.net/firmware/fw.bin", want: firmware.BlobURL{Scheme: "https", Host: "acct.blob.core.windows.net", Path: "/firmware/fw.bin"}},
		{url: "file:///srv/fw.bin", want: firmware.BlobURL{Scheme: "file", Path: "/srv/fw.bin"}},
		{url: "s3://bucket/fw.bin", message: `invalid blob URL "s3://bucket/fw.bin": unsupported scheme "s3"; want azblob://, https:// or file://`},
		{url: "azblob://firmware/fw.bin?sig=x", message: "a SAS token or other credential belongs in the store configuration"},
		{url: "azblob://Firmware/fw.bin", message: `container name "Firmware": only lower-case letters`},
		{url: "file:///srv/../etc/passwd", message: `".." segment`},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			g := NewWithT(t)
			u, err := stores.ParseURL(tt.url)
			if tt.message == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(u).To(Equal(tt.want))
				return
			}
			g.Expect(err).To(MatchError(firmware.ErrInvalidURL))
			g.Expect(err).To(MatchError(ContainSubstring(tt.message)))
		})
	}
}
