package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/firmware/stores"
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
	cases := []refusal{
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
		}, "each step must be exactly one of batch, pause or analysis"},
		{"step with neither", func(s map[string]any) { strategy(s)["steps"] = []any{map[string]any{}} }, "each step must be exactly one of batch, pause or analysis"},
		{"batch zero", func(s map[string]any) { strategy(s)["steps"] = []any{map[string]any{"batch": 0}} }, "batch must be a positive count or a percentage from 1% to 100%"},
		{"batch 0%", func(s map[string]any) { strategy(s)["steps"] = []any{map[string]any{"batch": "0%"}} }, "batch must be a positive count or a percentage from 1% to 100%"},
		{"batch 101%", func(s map[string]any) { strategy(s)["steps"] = []any{map[string]any{"batch": "101%"}} }, "batch must be a positive count or a percentage from 1% to 100%"},
		{"maxFailures word", func(s map[string]any) { strategy(s)["maxFailures"] = "many" }, "strategy.maxFailures must be a count (0 or more) or a percentage"},
		{"progressDeadline short", func(s map[string]any) { strategy(s)["progressDeadline"] = "30s" }, "strategy.progressDeadline must be at least 1m"},
		{"bakeTime garbage", func(s map[string]any) { strategy(s)["bakeTime"] = "a while" },
			`spec.strategy.bakeTime: Invalid value: "a while": strategy.bakeTime must be a duration such as 30m, 2h or 1h30m (units h, m, s)`},
		{"bakeTime negative", func(s map[string]any) { strategy(s)["bakeTime"] = "-1h" }, "strategy.bakeTime must be a duration such as 30m"},
		{"bakeTime under a second", func(s map[string]any) { strategy(s)["bakeTime"] = "450ms" },
			`strategy.bakeTime must be 0 (off) or at least 1s`},
		{"bakeTime over a week", func(s map[string]any) { strategy(s)["bakeTime"] = "169h" },
			`spec.strategy.bakeTime: Invalid value: "169h": strategy.bakeTime must be at most 168h (one week)`},
		{"progressDeadline garbage", func(s map[string]any) { strategy(s)["progressDeadline"] = "tomorrow" }, "spec.strategy.progressDeadline: Invalid value: \"tomorrow\""},

		// Issue 13 item 7: what a person sees for the package and URL
		// mistakes the controller could only find later, or never.
		{"package with a newline inside", func(s map[string]any) { fw(s)["package"] = "2.0\n.7" },
			`spec.firmware.package: Invalid value: "2.0\n.7": firmware.package must not contain a newline, a tab or any other control or invisible character: it is compared with the station's version.txt and written to twins and logs`},
		{"package ending in a newline", func(s map[string]any) { fw(s)["package"] = "2.0.7\n" },
			"firmware.package must not contain a newline, a tab or any other control or invisible character"},
		{"package with a zero-width space", func(s map[string]any) { fw(s)["package"] = "2.0.7\u200b" },
			"firmware.package must not contain a newline, a tab or any other control or invisible character"},
		{"package with trailing spaces", func(s map[string]any) { fw(s)["package"] = "2.0.7  " },
			`spec.firmware.package: Invalid value: "2.0.7  ": firmware.package must not start or end with white space: the station trims version.txt, so it would never match`},
		{"azblob without container", func(s map[string]any) { fw(s)["url"] = "azblob://" },
			`spec.firmware.url: Invalid value: "azblob://": firmware.url azblob:// needs a container and a blob path: azblob://<container>/<path/to/blob>`},
		{"azblob without blob path", func(s map[string]any) { fw(s)["url"] = "azblob://firmware" },
			"firmware.url azblob:// needs a container and a blob path: azblob://<container>/<path/to/blob>"},
		{"azblob naming a directory", func(s map[string]any) { fw(s)["url"] = "azblob://firmware/station/" },
			"firmware.url azblob:// needs a container and a blob path"},
		{"azblob bad container", func(s map[string]any) { fw(s)["url"] = "azblob://Firmware/station.bin" },
			"firmware.url: an azblob:// container name is 3 to 63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit"},
		{"https without path", func(s map[string]any) { fw(s)["url"] = "https://mystorage.blob.core.windows.net" },
			`spec.firmware.url: Invalid value: "https://mystorage.blob.core.windows.net": firmware.url https:// needs a host, a container and a blob path: https://<account>.blob.core.windows.net/<container>/<path/to/blob>`},
		{"https with a container only", func(s map[string]any) { fw(s)["url"] = "https://mystorage.blob.core.windows.net/firmware" },
			"firmware.url https:// needs a host, a container and a blob path"},
		{"file naming a directory", func(s map[string]any) { fw(s)["url"] = "file:///srv/firmware/" },
			"firmware.url file:// needs the absolute path of a file: file:///<path/to/file>"},
		{"file on another host", func(s map[string]any) { fw(s)["url"] = "file://nas/firmware/station.bin" },
			"firmware.url file:// needs the absolute path of a file"},
		{"url with a SAS token", func(s map[string]any) {
			fw(s)["url"] = "https://mystorage.blob.core.windows.net/firmware/station.bin?sv=2024-05-04&sig=c2VjcmV0"
		}, "firmware.url must not have a query (?...) or a fragment (#...): a SAS token or other credential belongs in the manager's storage settings, never in a rollout"},
		{"url with a password", func(s map[string]any) {
			fw(s)["url"] = "https://me:secret@mystorage.blob.core.windows.net/firmware/station.bin"
		},
			"firmware.url must not carry user info (user:password@)"},
		{"url with a space", func(s map[string]any) { fw(s)["url"] = "azblob://firmware/station 2.bin" },
			"firmware.url must not contain white space, control characters or backslashes (write a space in a blob name as %20)"},
		{"url with a newline", func(s map[string]any) { fw(s)["url"] = "azblob://firmware/station.bin\n" },
			"firmware.url must not contain white space, control characters or backslashes"},
		{"url climbing out", func(s map[string]any) { fw(s)["url"] = "azblob://firmware/station/../secrets.bin" },
			"firmware.url must not have empty (//), '.' or '..' path segments"},
		{"model with a space", func(s map[string]any) { fw(s)["model"] = "linux " },
			"firmware.model must not contain white space or control characters: it is compared with the model the station reports, for example linux"},
		{"public key ConfigMap name", func(s map[string]any) {
			fw(s)["publicKeyRef"] = map[string]any{"name": "Station Keys", "key": "sig-0.key"}
		},
			"firmware.publicKeyRef.name must be a ConfigMap's name: lower-case letters, digits, '-' and '.'"},
		{"public key ConfigMap key", func(s map[string]any) {
			fw(s)["publicKeyRef"] = map[string]any{"name": "station-keys", "key": "keys/sig-0.key"}
		},
			"firmware.publicKeyRef.key must be a key of the ConfigMap's data: letters, digits, '-', '_' and '.'"},
		{"public key without a key", func(s map[string]any) {
			fw(s)["publicKeyRef"] = map[string]any{"name": "station-keys", "key": ""}
		},
			"firmware.publicKeyRef needs both name and key: the ConfigMap in the rollout's namespace and the key that holds the public key"},
	}
	expectRefused(t, "invalid", cases)
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

// TestGoChecksMatchTheAPIServer runs the Go checks that tools use before
// they build a rollout (ValidatePackage, ValidateFirmwareURL, ValidateModel)
// and the API server over the same values: both must accept or refuse alike,
// with the same messages. Every URL the API server accepts must also be one
// the firmware stores can read.
func TestGoChecksMatchTheAPIServer(t *testing.T) {
	values := []struct {
		field string
		value string
	}{
		{"package", "2.0.7"}, {"package", "2.0.7-rc.1+build.5"}, {"package", "2.0.7 beta"}, {"package", "versión-2 固件"},
		{"package", "2.0.7\n"}, {"package", "2.0\n.7"}, {"package", "2.0.7\r"}, {"package", "\t2.0.7"}, {"package", "2.0\t.7"},
		{"package", "2.0.7\x7f"}, {"package", "2.0.7\u0085"}, {"package", "2.0\u200b.7"}, {"package", "2.0.7\u00a0"},
		{"package", "2.0\u2028.7"}, {"package", "2.0\u202e.7"}, {"package", " 2.0.7"}, {"package", "2.0.7 "},

		{"url", "azblob://firmware/basicstation/2.0.7/update.bin"}, {"url", "azblob://$root/update.bin"},
		{"url", "azblob://fw-2/a/b.bin"}, {"url", "azblob://firmware/.hidden/x.bin"}, {"url", "azblob://firmware/a..b"},
		{"url", "azblob://firmware/a%20b.bin"},
		{"url", "https://acct.blob.core.windows.net/firmware/station.bin"}, {"url", "https://acct.blob.core.windows.net/firmware/dir/a%20b.bin"},
		{"url", "file:///srv/firmware/station.bin"}, {"url", "file://localhost/srv/fw.bin"},
		{"url", "azblob://"}, {"url", "azblob://firmware"}, {"url", "azblob://firmware/"}, {"url", "azblob:///update.bin"},
		{"url", "azblob://firmware/dir/"}, {"url", "azblob://Firmware/x"}, {"url", "azblob://fw/x.bin"}, {"url", "azblob://-fw/x.bin"},
		{"url", "azblob://f--w/x.bin"}, {"url", "azblob://firmware-/x.bin"}, {"url", "azblob://$logs/x.bin"},
		{"url", "https://acct.blob.core.windows.net"}, {"url", "https://acct.blob.core.windows.net/"},
		{"url", "https://acct.blob.core.windows.net/firmware"}, {"url", "https://acct.blob.core.windows.net/firmware/"},
		{"url", "https:///firmware/x.bin"}, {"url", "file://"}, {"url", "file:///"}, {"url", "file://nas/share/fw.bin"},
		{"url", "file:///srv/firmware/"}, {"url", "file:relative/fw.bin"}, {"url", "azblob://firmware/a/../b"}, {"url", "azblob://firmware/./b"},
		{"url", "azblob://firmware/a//b"}, {"url", "file:///srv//fw.bin"}, {"url", "https://acct.blob.core.windows.net/firmware/x.bin?sv=1&sig=abc"},
		{"url", "azblob://firmware/x.bin#v2"}, {"url", "https://user:pw@acct.blob.core.windows.net/c/x.bin"},
		{"url", "azblob://firmware/a b.bin"}, {"url", "azblob://firmware/x.bin\n"}, {"url", "azblob://firmware\\x.bin"},
		{"url", "azblob://firmware/x\u00a0.bin"}, {"url", "ftp://host/firmware/x.bin"}, {"url", "http://127.0.0.1:10000/devstoreaccount1/firmware/x.bin"},

		{"model", "linux"}, {"model", "corecell"}, {"model", "linux pico"}, {"model", "linux\n"}, {"model", "linux\u200b"},
	}
	check := map[string]func(string) error{
		"package": fwv1.ValidatePackage, "url": fwv1.ValidateFirmwareURL, "model": fwv1.ValidateModel,
	}
	ns := testEnv.Namespace(t)
	for i, v := range values {
		t.Run(fmt.Sprintf("%s %q", v.field, v.value), func(t *testing.T) {
			g := NewWithT(t)
			u := decode(t, validRollout)
			u.SetNamespace(ns)
			u.SetName(fmt.Sprintf("value-%d", i))
			fw(u.Object["spec"].(map[string]any))[v.field] = v.value
			apiErr := testEnv.Client.Create(context.Background(), u)
			goErr := check[v.field](v.value)
			if goErr == nil {
				g.Expect(apiErr).NotTo(HaveOccurred(), "the Go check accepts what the API server refuses")
				if v.field == "url" {
					_, err := stores.ParseURL(v.value)
					g.Expect(err).NotTo(HaveOccurred(), "the API server accepts a URL the firmware stores cannot read")
				}
				return
			}
			g.Expect(apiErr).To(HaveOccurred(), "the Go check refuses what the API server accepts: %v", goErr)
			for _, msg := range fwv1.RuleMessages {
				g.Expect(strings.Contains(apiErr.Error(), msg)).To(Equal(strings.Contains(goErr.Error(), msg)),
					"message %q: API server said %v; the Go check said %v", msg, apiErr, goErr)
			}
		})
	}
}

// TestPublicKeyRefGoCheckMatchesTheAPIServer does for publicKeyRef what
// TestGoChecksMatchTheAPIServer does for the string fields.
func TestPublicKeyRefGoCheckMatchesTheAPIServer(t *testing.T) {
	refs := []fwv1.ConfigMapKeySelector{
		{Name: "fw-signing", Key: "sig-0.key"}, {Name: "fw.signing-2", Key: "SIG_0.pem"}, {Name: "a", Key: "."},
		{Name: "fw-signing", Key: ""}, {Name: "", Key: "sig-0.key"}, {Name: "", Key: ""},
		{Name: "Fw-Signing", Key: "sig-0.key"}, {Name: "fw signing", Key: "sig-0.key"}, {Name: "-fw", Key: "k"}, {Name: "fw.", Key: "k"},
		{Name: "fw", Key: "keys/sig-0.key"}, {Name: "fw", Key: "sig 0.key"}, {Name: "Station Keys", Key: "a/b"},
		{Name: strings.Repeat("a", 254), Key: "k"}, {Name: "fw", Key: strings.Repeat("k", 254)},
	}
	ns := testEnv.Namespace(t)
	for i, ref := range refs {
		t.Run(fmt.Sprintf("%q/%q", ref.Name, ref.Key), func(t *testing.T) {
			g := NewWithT(t)
			u := decode(t, validRollout)
			u.SetNamespace(ns)
			u.SetName(fmt.Sprintf("keyref-%d", i))
			fw(u.Object["spec"].(map[string]any))["publicKeyRef"] = map[string]any{"name": ref.Name, "key": ref.Key}
			apiErr := testEnv.Client.Create(context.Background(), u)
			goErr := fwv1.ValidatePublicKeyRef(ref)
			if goErr == nil {
				g.Expect(apiErr).NotTo(HaveOccurred(), "the Go check accepts what the API server refuses")
				return
			}
			g.Expect(apiErr).To(HaveOccurred(), "the Go check refuses what the API server accepts: %v", goErr)
			for _, msg := range fwv1.RuleMessages {
				g.Expect(strings.Contains(apiErr.Error(), msg)).To(Equal(strings.Contains(goErr.Error(), msg)),
					"message %q: API server said %v; the Go check said %v", msg, apiErr, goErr)
			}
		})
	}
}

func fw(spec map[string]any) map[string]any       { return spec["firmware"].(map[string]any) }
func strategy(spec map[string]any) map[string]any { return spec["strategy"].(map[string]any) }

// refusal is a change to a valid rollout's spec that the API server must
// refuse, with the message it must say.
type refusal struct {
	name    string
	mutate  func(spec map[string]any)
	message string
}

// expectRefused creates, in a new namespace which it returns, one rollout
// per case (named prefix-N), and expects each to be refused with its
// message.
func expectRefused(t *testing.T, prefix string, cases []refusal) string {
	t.Helper()
	ns := testEnv.Namespace(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			u := decode(t, validRollout)
			u.SetNamespace(ns)
			u.SetName(fmt.Sprintf("%s-%d", prefix, i))
			tc.mutate(u.Object["spec"].(map[string]any))
			err := testEnv.Client.Create(context.Background(), u)
			g.Expect(err).To(HaveOccurred(), "the API server accepted an invalid %s", tc.name)
			g.Expect(err.Error()).To(ContainSubstring(tc.message))
		})
	}
	return ns
}
