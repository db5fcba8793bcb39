package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/cli"
	"github.com/stationfleet/stationfleet/internal/firmware/azblob"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
	"github.com/stationfleet/stationfleet/internal/testutil/secretscan"
	"github.com/stationfleet/stationfleet/internal/testutil/testpki"
)

// secretsWorld is TestSecretsNeverWritten's stationfleet, set up as an
// operator would in production: CUPS over TLS with client certificates and
// bearer tokens, stations enrolled with the CLI, firmware signed and
// published with the CLI, the manager reading a service account token.
type secretsWorld struct {
	*world
	t   *testing.T
	g   *WithT
	dir string
	// scan holds every secret the world was given or issued.
	scan *secretscan.Scanner
	// transcript is every CLI command run and everything it printed.
	transcript bytes.Buffer
	// files the CLI and the manager read.
	connFile, accountKeyFile, serverCA, stationCA, stationCAKey, sigKey, kubeconfig string
	cupsURI                                                                         string
	// outputs are snapshots (rollouts, events) taken before objects went
	// away, scanned at the end with the rest.
	outputs map[string][]byte
	// start is when the test began, for step timings.
	start time.Time
}

// step logs how long the test took to reach a step.
func (sw *secretsWorld) step(name string) {
	sw.t.Logf("%6.1fs %s", time.Since(sw.start).Seconds(), name)
}

// The secret-scan test's stations: two with client certificates, one with
// a bearer token, all tagged for the rollout; and one token station the
// rollout does not select, whose token the test replaces with a wrong one.
const (
	secretsCertStations = 2
	secretsTokenStation = 2
	secretsIntruder     = 3
	secretsStations     = 4
)

// TestSecretsNeverWritten runs the manager at its most verbose logging
// with real secrets (the IoT Hub connection string, the storage account
// key, the CUPS server's TLS key, a service account token) through a
// rollout to completion and through its error paths, with stations
// enrolled, rotated and polling over mutual TLS and with bearer tokens,
// and the CLI a user runs on the way. It then scans everything that was
// written: the manager's log, every Event, every rollout (spec and status
// as JSON), the CLI's output, the manifest publish wrote and the IoT Hub
// emulator's stored twins, for each secret and its encodings.
//
// Error paths: a station with a wrong token (refused with 403), a rollout whose
// firmware does not exist (Stalled), IoT Hub answering 503 and then
// refusing the manager's key (401) while a rollout starts, the blob store
// gone (a rollout's preflight, a rotation from the CLI).
func TestSecretsNeverWritten(t *testing.T) {
	sw := newSecretsWorld(t)
	g := sw.g
	ctx := context.Background()

	sw.step("world ready")
	// Enroll the stations and publish the firmware with the CLI.
	homes := make([]string, secretsStations)
	for i := range homes {
		homes[i] = filepath.Join(sw.dir, fmt.Sprintf("station-%d", i))
		args := []string{"station", "add", fmt.Sprintf("%016X", secretsEUI(i)), "--cups-uri", sw.cupsURI, "--out", homes[i],
			"--sig-key", filepath.Join(sw.dir, "keys", "sig-0.key"), "--trust", sw.serverCA}
		if i < secretsCertStations {
			args = append(args, "--ca-cert", sw.stationCA, "--ca-key", sw.stationCAKey, "--validity", "12h")
		} else {
			args = append(args, "--auth", "token")
		}
		if i != secretsIntruder {
			args = append(args, "--tag", "e2e="+sw.tag)
		}
		sw.run(0, append(args, sw.stationFlags()...)...)
	}
	fwFile := filepath.Join(sw.dir, "update-2.0.7.bin")
	script, err := stationsim.UpdateScript(newPackage, 0)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(fwFile, script, 0o644)).To(Succeed())
	manifestFile := filepath.Join(sw.dir, "rollout.yaml")
	sw.run(0, append([]string{"publish", fwFile, "--to", "azblob://firmware/basicstation/2.0.7/update.bin", "--key", sw.sigKey,
		"--package", newPackage, "--tag", "e2e=" + sw.tag, "--steps", "100%", "--max-failures", "50%", "--name", "fw",
		"-n", sw.ns, "-o", manifestFile}, sw.storeFlags()...)...)
	sw.run(0, "sign", fwFile, "--key", sw.sigKey, "--station-key-out", filepath.Join(sw.dir, "sig-0-again.key"))
	manifest, err := os.ReadFile(manifestFile)
	g.Expect(err).NotTo(HaveOccurred())
	sw.outputs["publish manifest "+manifestFile] = manifest

	// Error path: the CLI with keys IoT Hub and Blob refuse (a stale key
	// is still somebody's key): it fails without printing them.
	staleHubKey, staleAccountKey := randomKey(t), randomKey(t)
	sw.scan.AddBase64Text("stale IoT Hub SharedAccessKey", staleHubKey)
	sw.scan.AddBase64Text("stale storage account key", staleAccountKey)
	staleConn := sw.write(sw.dir, "stale-iothub-connection-string", []byte(strings.Replace(sw.hub.ConnectionString(),
		sharedAccessKey(t, sw.hub.ConnectionString()), staleHubKey, 1)))
	staleKeyFile := sw.write(sw.dir, "stale-azblob-account-key", []byte(staleAccountKey))
	sw.run(1, "station", "show", fmt.Sprintf("%016X", secretsEUI(0)), "--iothub-connection-string-file", staleConn,
		"--iothub-ca-file", sw.hub.CAFile(), "--iothub-endpoint", sw.hub.Addr())
	sw.run(1, append(append([]string{"publish", fwFile, "--to", "azblob://firmware/basicstation/2.0.7-stale/update.bin", "--key", sw.sigKey,
		"--package", newPackage, "--tag", "e2e=" + sw.tag}, sw.storeFlags()...), "--azblob-account-key-file", staleKeyFile)...)

	sw.step("stations enrolled, firmware published")
	// The stations poll with exactly the files add wrote; the intruder
	// presents a token nobody issued.
	stations := make([]*stationsim.Station, secretsStations)
	for i, home := range homes {
		st, err := stationsim.LoadHome(home)
		g.Expect(err).NotTo(HaveOccurred(), home)
		st.Package = oldPackage
		sw.addStationCredential(fmt.Sprintf("station %d", i), st.CUPSCred)
		if i == secretsIntruder {
			wrong := randomToken(t)
			sw.scan.AddText("wrong station token", wrong)
			st.CUPSCred.Key = []byte("Authorization: Bearer " + wrong + "\r\n")
		}
		stations[i] = stationsim.New(st, stationsim.WithTimeout(5*time.Second))
	}
	sw.mgr.start()
	fleet := stationsim.NewFleet(stations, stationsim.FleetOptions{Interval: pollInterval, RetryInterval: pollInterval})
	fleetCtx, stopFleet := context.WithCancel(ctx)
	fleetDone := make(chan struct{})
	go func() { _ = fleet.Run(fleetCtx); close(fleetDone) }()
	t.Cleanup(func() { stopFleet(); <-fleetDone })
	g.Eventually(func() int64 { return stations[secretsIntruder].Stats().Rejected }, 10*time.Second, 20*time.Millisecond).
		Should(BeNumerically(">", 0), "the station with a wrong token is refused")
	for i := range secretsIntruder {
		g.Eventually(func() int64 { return stations[i].Stats().Polls - stations[i].Stats().Failures }, 10*time.Second, 20*time.Millisecond).
			Should(BeNumerically(">", 0), "station %d gets in with the credential add issued", i)
	}

	sw.step("manager up, stations polling")
	// Error path: firmware that does not exist stalls the rollout.
	rollout := decodeRollout(g, manifest)
	rollout.Spec.Strategy.ProgressDeadline = &metav1.Duration{Duration: time.Minute}
	rollout.Spec.Strategy.MaxUpdateAttempts = ptr.To[int32](2)
	missing := rollout.DeepCopy()
	missing.Name = "missing-firmware"
	missing.Spec.Firmware.URL = "azblob://firmware/basicstation/9.9.9/update.bin"
	sw.create(missing)
	g.Eventually(func() bool {
		return meta.IsStatusConditionTrue(sw.get(missing.Name).Status.Conditions, fwv1.ConditionStalled)
	}, 20*time.Second, 50*time.Millisecond).Should(BeTrue(), "a rollout of missing firmware stalls")
	sw.snapshot("before deleting " + missing.Name)
	g.Expect(testEnv.Client.Delete(ctx, missing)).To(Succeed())
	g.Eventually(func() error {
		return testEnv.Client.Get(ctx, client.ObjectKeyFromObject(missing), &fwv1.FirmwareRollout{})
	}, 15*time.Second, 50*time.Millisecond).Should(HaveOccurred(), "the stalled rollout is finalized")

	sw.step("missing firmware stalled and deleted")
	// Error path: IoT Hub fails (503, retried), then refuses the manager's
	// key (401, not retried) while the rollout starts; then recovers.
	unavailable := sw.hub.InjectFault(hubsim.Fault{Status: 503})
	sw.create(rollout)
	g.Eventually(func() bool { return sw.mgr.logContains("retrying IoT Hub request") }, 15*time.Second, 50*time.Millisecond).
		Should(BeTrue(), "the manager retries while IoT Hub answers 503")
	sw.step("IoT Hub 503 retried")
	refused := sw.hub.InjectFault(hubsim.Fault{Status: 401})
	unavailable()
	g.Eventually(func() string {
		c := meta.FindStatusCondition(sw.get(rollout.Name).Status.Conditions, fwv1.ConditionReady)
		if c == nil {
			return ""
		}
		return c.Reason
	}, 20*time.Second, 50*time.Millisecond).Should(Equal(fwv1.ReasonRegistryError), "IoT Hub's refusal shows in the rollout")
	sw.snapshot("while IoT Hub refuses the manager")
	sw.step("IoT Hub 401 shown")
	refused()
	r := sw.waitPhase(rollout.Name, fwv1.PhaseCompleted, 45*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", secretsIntruder), statusString(r))

	sw.step("rollout completed")
	// What a user runs afterwards, and rotations delivered through CUPS.
	sw.run(0, "status", rollout.Name, "-n", sw.ns, "--kubeconfig", sw.kubeconfig)
	sw.run(0, append([]string{"stations", rollout.Name, "-o", "wide", "-n", sw.ns, "--kubeconfig", sw.kubeconfig}, sw.hubFlags()...)...)
	for _, i := range []int{0, secretsTokenStation} {
		before := stations[i].State().CUPSCred.CRC()
		sw.run(0, append([]string{"station", "rotate", fmt.Sprintf("%016X", secretsEUI(i)), "--trust", sw.serverCA,
			"--ca-cert", sw.stationCA, "--ca-key", sw.stationCAKey, "--validity", "12h"}, sw.stationFlags()...)...)
		sw.step(fmt.Sprintf("station %d: rotate ran", i))
		g.Eventually(func() uint32 { return stations[i].State().CUPSCred.CRC() }, 15*time.Second, 20*time.Millisecond).
			ShouldNot(Equal(before), "station %d gets its rotated credential through CUPS", i)
		sw.addStationCredential(fmt.Sprintf("station %d rotated", i), stations[i].State().CUPSCred)
		id := fmt.Sprintf("%016X", secretsEUI(i))
		sw.step(fmt.Sprintf("station %d: rotated credential received", i))
		ok := func() int64 { s := stations[i].Stats(); return s.Polls - s.Failures }
		since := ok()
		g.Eventually(ok, 10*time.Second, 20*time.Millisecond).Should(BeNumerically(">=", since+2), "station %d gets in with its rotated credential", i)
		sw.run(0, append([]string{"station", "show", id}, sw.stationFlags()...)...)
	}

	sw.step("rotations delivered")
	// The twins identify the credentials by hash and thumbprint only.
	token, _ := strings.CutPrefix(strings.TrimSpace(string(stations[secretsTokenStation].State().CUPSCred.Key)), "Authorization: Bearer ")
	sum := sha256.Sum256([]byte(token))
	doc, ok := sw.hub.TwinDocument(fmt.Sprintf("%016X", secretsEUI(secretsTokenStation)))
	g.Expect(ok).To(BeTrue())
	twinJSON, err := json.Marshal(doc)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(twinJSON)).To(ContainSubstring(hex.EncodeToString(sum[:])), "the token station's twin holds its token's SHA-256")

	// An analysis step whose Prometheus token comes from a Secret: refused,
	// then accepted.
	sw.analysisWithSecret(rollout)

	// Error path: the blob store is gone. A rollout's preflight cannot
	// read the firmware; a rotation cannot store the credential.
	sw.blob.Stop()
	down := rollout.DeepCopy()
	down.ObjectMeta = metav1.ObjectMeta{Namespace: sw.ns, Name: "blob-down"}
	down.Spec.Firmware.URL = "azblob://firmware/basicstation/2.0.7/update.bin"
	sw.create(down)
	g.Eventually(func() bool {
		return meta.IsStatusConditionFalse(sw.get(down.Name).Status.Conditions, fwv1.ConditionFirmwareVerified)
	}, 30*time.Second, 50*time.Millisecond).Should(BeTrue(), "the blob store outage shows in the rollout")
	sw.step("blob outage shown in the rollout")
	sw.run(1, append([]string{"station", "rotate", fmt.Sprintf("%016X", secretsEUI(1)), "--trust", sw.serverCA,
		"--ca-cert", sw.stationCA, "--ca-key", sw.stationCAKey, "--validity", "12h"}, sw.stationFlags()...)...)
	sw.run(0, "status", down.Name, "-n", sw.ns, "--kubeconfig", sw.kubeconfig)

	sw.step("CLI failed on the blob outage")
	// The manager really logged at debug level, and really saw the 401.
	g.Expect(sw.mgr.logContains("DEBUG")).To(BeTrue(), "the manager logs at debug level")
	sw.scanAll()
}

// newSecretsWorld starts the emulators, makes the secrets and writes them
// to files as mounted Secrets, and prepares (does not start) the manager.
func newSecretsWorld(t *testing.T) *secretsWorld {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	sw := &secretsWorld{t: t, g: g, dir: t.TempDir(), scan: secretscan.New(), outputs: map[string][]byte{}, start: time.Now()}
	sw.scan.AddCredentialShapes()
	sw.world = &world{t: t, ns: testEnv.Namespace(t), tag: uniqueTag(t)}
	// The CLI reads these as defaults: only the test's flags count.
	for _, env := range []string{"KUBECONFIG", cli.EnvIoTHubConnectionString, cli.EnvIoTHubConnectionStringFile, cli.EnvIoTHubCAFile,
		cli.EnvIoTHubEndpoint, azblob.EnvAccount, azblob.EnvAccountKey, azblob.EnvSASToken, azblob.EnvConnectionString} {
		t.Setenv(env, "")
	}

	sw.hub = hubsim.Start(t, hubsim.Options{StateFile: filepath.Join(sw.dir, "hub-state.json")})
	sw.step("hub up")
	sw.blob = azurite.Start(t)
	for _, c := range []string{firmwareContainer, "credentials"} {
		g.Expect(sw.blob.CreateContainer(ctx, c)).To(Succeed())
	}
	sw.step("azurite up")
	secrets := filepath.Join(sw.dir, "secrets")
	g.Expect(os.MkdirAll(secrets, 0o700)).To(Succeed())
	conn := sw.hub.ConnectionString()
	sw.scan.AddText("IoT Hub connection string", conn)
	sw.scan.AddBase64Text("IoT Hub SharedAccessKey", sharedAccessKey(t, conn))
	sw.connFile = sw.write(secrets, "iothub-connection-string", []byte(conn+"\n"))
	sw.scan.AddBase64Text("Azure storage account key", azurite.AccountKey)
	sw.accountKeyFile = sw.write(secrets, "azblob-account-key", []byte(azurite.AccountKey+"\n"))

	// The CUPS server's certificate and key, and the CA of the stations'
	// client certificates (whose key the CLI signs with).
	serverCA, err := testpki.NewCA("cups server CA")
	g.Expect(err).NotTo(HaveOccurred())
	server, err := serverCA.IssueServer()
	g.Expect(err).NotTo(HaveOccurred())
	sw.scan.AddPEM("CUPS server TLS private key", server.KeyPEM())
	sw.scan.AddPEM("CUPS server CA private key", pemECKey(t, serverCA))
	sw.serverCA = sw.write(sw.dir, "cups-server-ca.crt", serverCA.PEM())
	certFile := sw.write(secrets, "cups-tls.crt", server.CertPEM())
	keyFile := sw.write(secrets, "cups-tls.key", server.KeyPEM())
	stationCA, err := testpki.NewCA("stations CA")
	g.Expect(err).NotTo(HaveOccurred())
	sw.stationCA = sw.write(sw.dir, "stations-ca.crt", stationCA.PEM())
	sw.stationCAKey = sw.write(sw.dir, "stations-ca.key", pemECKey(t, stationCA))
	sw.scan.AddPEM("station CA private key", pemECKey(t, stationCA))

	sw.step("PKI made")
	// The firmware signing key, made by the CLI as a user makes it.
	sw.run(0, "keygen", "--dir", filepath.Join(sw.dir, "keys"))
	keys, err := filepath.Glob(filepath.Join(sw.dir, "keys", "*.pem"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, k := range keys {
		b, err := os.ReadFile(k)
		g.Expect(err).NotTo(HaveOccurred())
		if blk, _ := pem.Decode(b); blk != nil && strings.Contains(blk.Type, "PRIVATE") {
			sw.sigKey = k
			sw.scan.AddPEM("firmware signing private key", b)
		}
	}
	g.Expect(sw.sigKey).NotTo(BeEmpty(), "keygen wrote a private key among %v", keys)

	sw.step("emulators up, keys made")
	sw.kubeconfig = sw.serviceAccountKubeconfig()
	args := []string{
		"--kubeconfig=" + sw.kubeconfig, // the last --kubeconfig wins over newManager's
		"--iothub-connection-string-file=" + sw.connFile,
		"--iothub-ca-file=" + sw.hub.CAFile(),
		"--iothub-endpoint=" + sw.hub.Addr(),
		"--iothub-no-rate-limit",
		"--azblob-account=" + azurite.Account,
		"--azblob-endpoint=" + sw.blob.Endpoint,
		"--azblob-auth=shared-key",
		"--azblob-account-key-file=" + sw.accountKeyFile,
		"--azblob-max-retries=1",
		"--cups-tls-cert-file=" + certFile,
		"--cups-tls-key-file=" + keyFile,
		"--cups-client-ca-file=" + sw.stationCA,
		"--cups-twin-cache-ttl=100ms",
		"--rollout-status-resync=1s",
		"--rollout-target-resync=1s",
		// The most verbose logging there is: every V level, development
		// mode (stack traces on warnings), and metrics off (another
		// change makes them need authentication).
		"--zap-devel",
		"--zap-log-level=10",
		"--zap-stacktrace-level=info",
		"--metrics-bind-address=0",
	}
	sw.mgr = newManager(t, args...)
	sw.cupsURI = "https://" + sw.mgr.cupsAddr
	t.Cleanup(sw.deleteRollouts)
	t.Cleanup(sw.reportOnFailure)
	return sw
}

// secretsEUI is station i's EUI (a block of its own, away from the
// embedded fleet's).
func secretsEUI(i int) uint64 { return 0x0016C0FFFE5E0000 + uint64(i) }

// hubFlags are the CLI's IoT Hub flags.
func (sw *secretsWorld) hubFlags() []string {
	return []string{"--iothub-connection-string-file", sw.connFile, "--iothub-ca-file", sw.hub.CAFile(), "--iothub-endpoint", sw.hub.Addr()}
}

// storeFlags are the CLI's Azure Blob flags.
func (sw *secretsWorld) storeFlags() []string {
	return []string{"--azblob-account", azurite.Account, "--azblob-endpoint", sw.blob.Endpoint, "--azblob-auth", "shared-key",
		"--azblob-account-key-file", sw.accountKeyFile, "--azblob-max-retries", "1"}
}

// stationFlags are the station commands' connections.
func (sw *secretsWorld) stationFlags() []string {
	return append(append(sw.hubFlags(), "--iothub-no-rate-limit", "--credential-store", "azblob://credentials/stations/"), sw.storeFlags()...)
}

// run runs the CLI with args, as cmd/stationfleet does but in this
// process (linking a second binary would double the test's time), records
// the command and everything it printed in the transcript, and fails the
// test unless it exits with code. Its streams are captured, and so is
// anything written to the process's stdout and stderr meanwhile (klog,
// a stray print).
func (sw *secretsWorld) run(code int, args ...string) string {
	sw.t.Helper()
	var out, errOut bytes.Buffer
	began := time.Now()
	stray := captureStdio(sw.t)
	got := cli.Execute(context.Background(), cli.Options{Name: "stationfleet",
		Streams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}}, args)
	other := stray()
	if took := time.Since(began); took > time.Second {
		sw.t.Logf("stationfleet %s took %s", args[0], took.Round(time.Millisecond))
	}
	fmt.Fprintf(&sw.transcript, "$ stationfleet %s\n[stdout]\n%s[stderr]\n%s[process stdout and stderr]\n%s[exit %d]\n",
		strings.Join(args, " "), out.String(), errOut.String(), other, got)
	if got != code {
		sw.t.Fatalf("stationfleet %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), got, code, out.String(), errOut.String())
	}
	return out.String()
}

// captureStdio sends the process's stdout and stderr to a pipe until the
// returned function is called, which restores them and returns what was
// written.
func captureStdio(t *testing.T) func() []byte {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("capture stdio: %v", err)
	}
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&buf, r); close(done) }()
	return func() []byte {
		os.Stdout, os.Stderr = stdout, stderr
		_ = w.Close()
		<-done
		_ = r.Close()
		return buf.Bytes()
	}
}

// write writes a file of the world (0600) and returns its path.
func (sw *secretsWorld) write(dir, name string, b []byte) string {
	sw.t.Helper()
	p := filepath.Join(dir, name)
	sw.g.Expect(os.WriteFile(p, b, 0o600)).To(Succeed())
	return p
}

// addStationCredential registers the secret part of a station credential
// set: the client certificate's key (DER) or the token.
func (sw *secretsWorld) addStationCredential(name string, c stationsim.CredSet) {
	key := string(c.Key)
	if tok, ok := strings.CutPrefix(strings.TrimSpace(key), "Authorization: Bearer "); ok {
		sw.scan.AddText(name+" bearer token", tok)
		return
	}
	sw.scan.AddBinary(name+" client certificate private key", c.Key)
}

// snapshot records the namespace's rollouts and Events now, for objects
// the test deletes later.
func (sw *secretsWorld) snapshot(label string) {
	sw.t.Helper()
	for what, b := range sw.objects() {
		sw.outputs[what+" ("+label+")"] = b
	}
}

// objects returns the namespace's rollouts and Events as JSON.
func (sw *secretsWorld) objects() map[string][]byte {
	sw.t.Helper()
	ctx := context.Background()
	var rollouts fwv1.FirmwareRolloutList
	sw.g.Expect(testEnv.Client.List(ctx, &rollouts, client.InNamespace(sw.ns))).To(Succeed())
	var events corev1.EventList
	sw.g.Expect(testEnv.Client.List(ctx, &events, client.InNamespace(sw.ns))).To(Succeed())
	out := map[string][]byte{}
	for i := range rollouts.Items {
		b, err := json.Marshal(&rollouts.Items[i])
		sw.g.Expect(err).NotTo(HaveOccurred())
		out["rollout "+rollouts.Items[i].Name] = b
	}
	b, err := json.Marshal(&events)
	sw.g.Expect(err).NotTo(HaveOccurred())
	out[fmt.Sprintf("%d Events", len(events.Items))] = b
	return out
}

// scanAll scans everything the world wrote and fails naming each secret
// found and where.
func (sw *secretsWorld) scanAll() {
	sw.t.Helper()
	outputs := sw.outputs
	for what, b := range sw.objects() {
		outputs[what+" (at the end)"] = b
	}
	log, err := os.ReadFile(sw.mgr.p.LogPath())
	sw.g.Expect(err).NotTo(HaveOccurred())
	outputs["manager log (stdout and stderr)"] = log
	outputs["CLI output"] = sw.transcript.Bytes()
	for i := range secretsStations {
		id := fmt.Sprintf("%016X", secretsEUI(i))
		doc, ok := sw.hub.TwinDocument(id)
		sw.g.Expect(ok).To(BeTrue(), "twin %s", id)
		b, err := json.Marshal(doc)
		sw.g.Expect(err).NotTo(HaveOccurred())
		outputs["IoT Hub twin "+id] = b
	}
	sw.g.Expect(sw.hub.Save()).To(Succeed())
	state, err := os.ReadFile(filepath.Join(sw.dir, "hub-state.json"))
	sw.g.Expect(err).NotTo(HaveOccurred())
	outputs["IoT Hub emulator state file"] = state

	var found []string
	total := 0
	for what, b := range outputs {
		sw.g.Expect(b).NotTo(BeEmpty(), "nothing to scan in %s", what)
		total += len(b)
		for _, f := range sw.scan.Scan(what, b) {
			found = append(found, f.String())
		}
	}
	sw.t.Logf("scanned %d outputs (%d KiB, manager log %d lines) for %d secrets: %s",
		len(outputs), total>>10, bytes.Count(log, []byte("\n")), len(sw.scan.Names()), strings.Join(sw.scan.Names(), ", "))
	if len(found) > 0 {
		sw.t.Errorf("secrets were written where a user or a log collector reads them:\n  %s", strings.Join(found, "\n  "))
	}
}

// serviceAccountKubeconfig gives a service account cluster-admin, requests
// a token for it and writes a kubeconfig that uses the token (registered
// as a secret), as an in-cluster manager authenticates.
func (sw *secretsWorld) serviceAccountKubeconfig() string {
	sw.t.Helper()
	ctx := context.Background()
	g := sw.g
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sw.ns, Name: "stationfleet-manager"}}
	g.Expect(testEnv.Client.Create(ctx, sa)).To(Succeed())
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "secrets-test-" + sw.ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: sw.ns, Name: sa.Name}},
	}
	g.Expect(testEnv.Client.Create(ctx, crb)).To(Succeed())
	sw.t.Cleanup(func() { _ = testEnv.Client.Delete(context.Background(), crb) })
	cs, err := kubernetes.NewForConfig(testEnv.Config)
	g.Expect(err).NotTo(HaveOccurred())
	tr, err := cs.CoreV1().ServiceAccounts(sw.ns).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred(), "request a service account token")
	token := tr.Status.Token
	sw.scan.AddText("Kubernetes service account token", token)
	// A JWT's signature alone is a secret too, should something log the
	// token in parts.
	if parts := strings.Split(token, "."); len(parts) == 3 {
		sw.scan.AddText("Kubernetes service account token signature", parts[2])
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: testEnv.Config.Host, CertificateAuthorityData: testEnv.Config.CAData}
	cfg.AuthInfos["manager"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "manager", Namespace: sw.ns}
	cfg.CurrentContext = "envtest"
	b, err := clientcmd.Write(*cfg)
	g.Expect(err).NotTo(HaveOccurred())
	return sw.write(sw.dir, "kubeconfig", b)
}

// sharedAccessKey returns the SharedAccessKey value of an IoT Hub
// connection string.
func sharedAccessKey(t *testing.T, conn string) string {
	t.Helper()
	for _, part := range strings.Split(conn, ";") {
		if v, ok := strings.CutPrefix(part, "SharedAccessKey="); ok {
			return v
		}
	}
	t.Fatalf("no SharedAccessKey in the emulator's connection string")
	return ""
}

// pemECKey returns a CA's private key as PEM.
func pemECKey(t *testing.T, ca *testpki.CA) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// randomToken returns a token shaped like the ones the CLI issues.
func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomKey returns a random 32-byte key in base64, shaped like an IoT Hub
// or storage account key.
func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// decodeRollout reads the manifest publish wrote.
func decodeRollout(g *WithT, manifest []byte) *fwv1.FirmwareRollout {
	r := &fwv1.FirmwareRollout{}
	g.Expect(yaml.UnmarshalStrict(manifest, r)).To(Succeed(), "the manifest publish wrote:\n%s", manifest)
	return r
}
