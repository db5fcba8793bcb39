package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
)

// publishKeys makes a key pair with keygen and a firmware file.
func publishKeys(t *testing.T) (keyDir, fw string, content []byte) {
	t.Helper()
	keyDir = t.TempDir()
	if r := runCLI(t, "keygen", "--dir", keyDir); r.code != 0 {
		t.Fatal(r.errOut)
	}
	content = bytes.Repeat([]byte("station firmware 2.0.7\n"), 50000) // ~1 MiB, several upload blocks' worth
	fw = filepath.Join(t.TempDir(), "station-2.0.7.bin")
	if err := os.WriteFile(fw, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return keyDir, fw, content
}

// applyManifest decodes a manifest strictly and creates it in a fresh
// namespace of the real API server (CEL validation included).
func applyManifest(t *testing.T, manifest []byte) *fwv1.FirmwareRollout {
	t.Helper()
	g := NewWithT(t)
	obj := &fwv1.FirmwareRollout{}
	g.Expect(yaml.UnmarshalStrict(manifest, obj)).To(Succeed(), string(manifest))
	if obj.Namespace == "" {
		obj.Namespace = testEnv.Namespace(t)
	}
	g.Expect(testEnv.Client.Create(context.Background(), obj)).To(Succeed(), "the API server must accept the manifest:\n%s", manifest)
	got := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), got)).To(Succeed())
	return got
}

func TestPublishToAzuriteMakesAnAcceptedRollout(t *testing.T) {
	g := NewWithT(t)
	az := azurite.Start(t)
	g.Expect(az.CreateContainer(context.Background(), "firmware")).To(Succeed())
	keyDir, fw, content := publishKeys(t)
	t.Setenv("AZURE_STORAGE_KEY", azurite.AccountKey)
	ns := testEnv.Namespace(t)
	out := filepath.Join(t.TempDir(), "rollout.yaml")

	r := runCLI(t, "publish", fw, "--to", "azblob://firmware/station/2.0.7/",
		"--azblob-account", azurite.Account, "--azblob-endpoint", az.Endpoint,
		"--key", filepath.Join(keyDir, "sig-0.private.pem"), "--package", "2.0.7",
		"--tag", "ring=canary", "--tag", "region=eu", "--device-id", "0011:22ff:fe33:4455", "--model", "linux",
		"--public-key-configmap", "fw-keys/sig-0.key", "-n", ns, "-o", out)
	g.Expect(r.code).To(Equal(0), r.errOut)
	g.Expect(r.errOut).To(ContainSubstring("the stored blob verifies"))
	g.Expect(r.errOut).NotTo(ContainSubstring(azurite.AccountKey))

	manifest, err := os.ReadFile(out)
	g.Expect(err).NotTo(HaveOccurred())
	obj := applyManifest(t, manifest)
	g.Expect(obj.Namespace).To(Equal(ns))
	g.Expect(obj.Name).To(Equal("fw-2-0-7"))
	sp := obj.Spec
	g.Expect(sp.Firmware.URL).To(Equal("azblob://firmware/station/2.0.7/station-2.0.7.bin"))
	g.Expect(sp.Firmware.Package).To(Equal("2.0.7"))
	g.Expect(sp.Firmware.Model).To(Equal("linux"))
	g.Expect(sp.Firmware.PublicKeyRef).To(Equal(&fwv1.ConfigMapKeySelector{Name: "fw-keys", Key: "sig-0.key"}))
	g.Expect(r.errOut).To(ContainSubstring("create it in the rollout's namespace with `kubectl -n " + ns +
		" create configmap fw-keys --from-file=sig-0.key=" + filepath.Join(keyDir, "sig-0.key") + "`"))
	g.Expect(sp.Selector.DeviceIDs).To(Equal([]string{"001122FFFE334455"}))
	g.Expect(sp.Selector.Tags).To(Equal(map[string]string{"ring": "canary", "region": "eu"}))
	g.Expect(sp.Strategy.Steps).To(HaveLen(3))
	g.Expect(sp.Strategy.Steps[0].Batch.String()).To(Equal("1"))
	g.Expect(sp.Strategy.Steps[1].Batch.String()).To(Equal("10%"))
	g.Expect(sp.Strategy.Steps[2].Batch.String()).To(Equal("100%"))
	g.Expect(sp.Strategy.MaxFailures.String()).To(Equal("5%"))

	// The keyChecksum is the station key's CRC, and the signature verifies
	// over the bytes stored in Azurite with the station's sig-0.key.
	sigKey, err := os.ReadFile(filepath.Join(keyDir, "sig-0.key"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sp.Firmware.KeyChecksum).To(Equal(int64(signing.KeyCRC(sigKey))))
	pub, err := signing.ParseSigKey(sigKey)
	g.Expect(err).NotTo(HaveOccurred())
	der, err := signing.DecodeSignature(sp.Firmware.Signature)
	g.Expect(err).NotTo(HaveOccurred())
	cl, err := az.Client()
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := cl.DownloadStream(context.Background(), "firmware", "station/2.0.7/station-2.0.7.bin", nil)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var stored bytes.Buffer
	g.Expect(signing.Verify(pub, &teeTo{r: resp.Body, w: &stored}, der)).To(Succeed())
	g.Expect(stored.Bytes()).To(Equal(content))

	// Publishing the same name again is refused: the blob is never replaced.
	r = runCLI(t, "publish", fw, "--to", "azblob://firmware/station/2.0.7/",
		"--azblob-account", azurite.Account, "--azblob-endpoint", az.Endpoint,
		"--key", filepath.Join(keyDir, "sig-0.private.pem"), "--package", "2.0.7", "--tag", "ring=canary")
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.errOut).To(ContainSubstring("already exists and is never replaced"))
	g.Expect(r.out).To(BeEmpty(), "no manifest for a refused publish")
}

// teeTo copies what is read from r into w.
type teeTo struct {
	r interface{ Read([]byte) (int, error) }
	w *bytes.Buffer
}

func (t *teeTo) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.w.Write(p[:n])
	return n, err
}

func TestPublishToLocalDirectory(t *testing.T) {
	g := NewWithT(t)
	keyDir, fw, content := publishKeys(t)
	dir := filepath.Join(t.TempDir(), "srv", "firmware")

	r := runCLI(t, "publish", fw, "--to", "file://"+dir+"/station.bin",
		"--key", filepath.Join(keyDir, "sig-0.private.pem"), "--package", "2.0.7",
		"--device-id", "001122fffe334455", "--steps", "1,pause,50%,pause=30m,100%", "--max-failures", "2", "--name", "canary-2-0-7")
	g.Expect(r.code).To(Equal(0), r.errOut)
	g.Expect(r.out).To(HavePrefix("# Published by stationfleet: station-2.0.7.bin, "))
	stored, err := os.ReadFile(filepath.Join(dir, "station.bin"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(stored).To(Equal(content))

	obj := applyManifest(t, []byte(r.out))
	g.Expect(obj.Name).To(Equal("canary-2-0-7"))
	g.Expect(obj.Spec.Firmware.URL).To(Equal("file://" + dir + "/station.bin"))
	g.Expect(obj.Spec.Strategy.Steps).To(HaveLen(5))
	g.Expect(obj.Spec.Strategy.Steps[1].Pause).NotTo(BeNil())
	g.Expect(obj.Spec.Strategy.Steps[1].Pause.Duration).To(BeNil())
	g.Expect(obj.Spec.Strategy.Steps[3].Pause.Duration.Duration.String()).To(Equal("30m0s"))
	g.Expect(obj.Spec.Strategy.MaxFailures.IntValue()).To(Equal(2))

	// The printed signature is the one sign prints for the same file.
	r2 := runCLI(t, "verify", fw, "--key", filepath.Join(keyDir, "sig-0.key"), "--signature", obj.Spec.Firmware.Signature)
	g.Expect(r2.code).To(Equal(0), r2.errOut)
}

func TestPublishRefusesBadFlagsBeforeUploading(t *testing.T) {
	keyDir, fw, _ := publishKeys(t)
	dir := t.TempDir()
	key := filepath.Join(keyDir, "sig-0.private.pem")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no selector", []string{}, "publish needs --device-id or --tag"},
		{"bad device id", []string{"--device-id", "0011"}, `--device-id "0011": use the station EUI as 16 hex digits`},
		{"reserved tag", []string{"--tag", "stationfleet=x"}, "reserved"},
		{"bad tag", []string{"--tag", "ring"}, "use KEY=VALUE"},
		{"bad step", []string{"--tag", "a=b", "--steps", "1,0%"}, `--steps "0%"`},
		{"bad pause", []string{"--tag", "a=b", "--steps", "1,pause=10"}, "use a Go duration"},
		{"bad max failures", []string{"--tag", "a=b", "--max-failures", "101%"}, "--max-failures"},
		{"station key instead of private key", []string{"--tag", "a=b", "--key", filepath.Join(keyDir, "sig-0.key")}, "publish needs the private PEM key"},
		{"package with spaces", []string{"--tag", "a=b", "--package", " 2.0.7"},
			`--package " 2.0.7": firmware.package must not start or end with white space: the station trims version.txt, so it would never match`},
		// The API server refuses these (api/v1alpha1 validation): publish
		// must refuse them before it uploads, with the same words.
		{"package with a newline", []string{"--tag", "a=b", "--package", "2.0\n.7"},
			`--package "2.0\n.7": firmware.package must not contain a newline, a tab or any other control or invisible character`},
		{"model with a space", []string{"--tag", "a=b", "--model", "linux pico"},
			`--model "linux pico": firmware.model must not contain white space or control characters`},
		{"url with a space", []string{"--tag", "a=b", "--to", "file://" + dir + "/fw 1.bin"},
			"/fw 1.bin: firmware.url must not contain white space, control characters or backslashes (write a space in a blob name as %20)"},
		{"file url naming a directory", []string{"--tag", "a=b", "--to", "file://" + dir + "/sub//fw.bin"},
			"firmware.url must not have empty (//), '.' or '..' path segments"},
		{"azblob url without blob path", []string{"--tag", "a=b", "--to", "azblob://firmware"},
			"--to azblob://firmware: firmware.url azblob:// needs a container and a blob path: azblob://<container>/<path/to/blob>"},
		{"public key in a Secret", []string{"--tag", "a=b", "--public-key-secret", "fw-keys/sig-0.key"},
			"--public-key-secret is gone: publicKeyRef names a ConfigMap (a public key is not a secret, and the manager reads no Secrets)"},
		{"public key ConfigMap without key", []string{"--tag", "a=b", "--public-key-configmap", "fw-keys"}, `--public-key-configmap "fw-keys": use CONFIGMAP/KEY`},
		{"public key ConfigMap name", []string{"--tag", "a=b", "--public-key-configmap", "Fw Keys/sig-0.key"},
			`--public-key-configmap "Fw Keys/sig-0.key": firmware.publicKeyRef.name must be a ConfigMap's name: lower-case letters, digits, '-' and '.'`},
		{"https url with a SAS token", []string{"--tag", "a=b", "--to", "https://acct.blob.core.windows.net/firmware/fw.bin?sv=1&sig=c2VjcmV0"},
			"firmware.url must not have a query (?...) or a fragment (#...): a SAS token or other credential belongs in the manager's storage settings, never in a rollout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			args := []string{"publish", fw, "--to", "file://" + dir + "/fw.bin", "--key", key, "--package", "2.0.7"}
			r := runCLI(t, append(args, tt.args...)...)
			g.Expect(r.code).To(Equal(1))
			g.Expect(r.errOut).To(ContainSubstring(tt.want))
			g.Expect(r.errOut).NotTo(ContainSubstring("c2VjcmV0"), "a SAS token is never printed")
			entries, err := os.ReadDir(dir)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(entries).To(BeEmpty(), "nothing is uploaded when the flags are wrong")
		})
	}
}
