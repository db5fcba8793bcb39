package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// jsonMap is v as decoded JSON, the form twin tags are stored in.
func jsonMap(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// seedStation creates a twin with the user's tags and stationfleet's
// ownership and observation records (either may be nil).
func seedStation(t *testing.T, hub *hubsim.Server, id string, tags map[string]any, own *twin.Ownership, obs *twin.Observation, hist ...twin.HistoryEntry) {
	t.Helper()
	sf := map[string]any{}
	if len(hist) > 0 {
		list := make([]any, len(hist))
		for i := range hist {
			list[i] = jsonMap(t, hist[i])
		}
		sf[twin.TagHistory] = list
	}
	if own != nil {
		sf[twin.TagRollout] = jsonMap(t, own)
	}
	if obs != nil {
		sf[twin.TagObserved] = jsonMap(t, obs)
	}
	all := map[string]any{}
	for k, v := range tags {
		all[k] = v
	}
	if len(sf) > 0 {
		all[twin.TagRoot] = sf
	}
	desired := map[string]any{"cups": map[string]any{"package": "2.0.6"}}
	if own != nil {
		desired = map[string]any{"cups": map[string]any{"package": "2.0.7", "fwUrl": "azblob://firmware/station/2.0.7/station.bin"}}
	}
	if err := hub.Seed(id, all, desired); err != nil {
		t.Fatalf("seed %s: %v", id, err)
	}
}

// stationsFixture is a rollout in envtest, another active and a completed
// one, and their stations in the IoT Hub emulator.
type stationsFixture struct {
	ns, kubeconfig, connFile, caFile string
	endpoint                         string // where the emulator listens (its HostName is "localhost")
	connectionString                 string
}

func newStationsFixture(t *testing.T) stationsFixture {
	t.Helper()
	ctx := context.Background()
	ns := testEnv.Namespace(t)
	obj := newRollout(ns, "fw-2-0-7")
	obj.Spec.Strategy.ProgressDeadline = &metav1.Duration{Duration: 20 * time.Minute}
	obj = createRollout(t, obj, progressingStatus())
	other := createRollout(t, newRollout(ns, "fw-2-0-7-lab"), progressingStatus())
	done := createRollout(t, newRollout(ns, "fw-2-0-6"), completedStatus())
	_ = ctx

	hub := hubsim.Start(t, hubsim.Options{})
	uid := string(obj.UID)
	mine := func(batch int, written time.Duration) *twin.Ownership {
		return &twin.Ownership{Rollout: ns + "/fw-2-0-7", UID: uid, Batch: batch, Model: "linux", WrittenAt: testNow.Add(-written)}
	}
	seen := func(pkg string, served int, refusal string) *twin.Observation {
		o := &twin.Observation{LastSeen: testNow.Add(-time.Minute), Station: "2.0.6(linux/std) 2026-01-01 00:00:00", Model: "linux",
			Package: pkg, Keys: []uint32{testKeyCRC}, ServedPackage: "2.0.7", ServedRollout: uid, UpdatesServed: served}
		if refusal != "" {
			o.Refusal, o.RefusedPackage, o.RefusedRollout = refusal, "2.0.7", uid
			if refusal != twin.RefusalNotApplied {
				o.ServedPackage, o.ServedRollout, o.UpdatesServed = "", "", 0
			}
		}
		return o
	}
	canary := map[string]any{"ring": "canary"}
	seedStation(t, hub, "00000000000000A1", canary, mine(1, 40*time.Minute), seen("2.0.7", 1, ""))
	seedStation(t, hub, "001122FFFE334455", canary, mine(2, 15*time.Minute), seen("2.0.6", 0, twin.RefusalKeyMismatch))
	seedStation(t, hub, "00000000000000A2", canary, mine(2, 15*time.Minute), seen("2.0.6", 0, twin.RefusalModelMismatch))
	seedStation(t, hub, "00000000000000A3", canary, mine(2, 15*time.Minute), seen("2.0.6", 3, twin.RefusalNotApplied))
	seedStation(t, hub, "00000000000000A4", canary, mine(2, 25*time.Minute), seen("2.0.6", 1, ""))
	seedStation(t, hub, "00000000000000A5", canary, mine(2, 5*time.Minute), seen("2.0.6", 1, ""))
	seedStation(t, hub, "00000000000000A6", canary, mine(2, 5*time.Minute), nil)
	// Owned by this rollout although its tags no longer match the selector.
	seedStation(t, hub, "00000000000000C1", map[string]any{"ring": "prod"}, mine(2, 5*time.Minute), seen("2.0.7", 2, ""))
	// Selected, not yet written.
	seedStation(t, hub, "00000000000000B1", canary, nil, seen("2.0.6", 0, ""))
	// Selected, held by another active rollout: skipped.
	seedStation(t, hub, "00000000000000B2", canary,
		&twin.Ownership{Rollout: ns + "/fw-2-0-7-lab", UID: string(other.UID), Batch: 1, WrittenAt: testNow.Add(-time.Hour)}, seen("2.0.6", 0, ""))
	// Selected, owned by a completed rollout: free, so pending.
	seedStation(t, hub, "00000000000000B3", canary,
		&twin.Ownership{Rollout: ns + "/fw-2-0-6", UID: string(done.UID), Batch: 4, WrittenAt: testNow.Add(-3 * time.Hour)}, seen("2.0.6", 0, ""))
	// Counted Updated by this rollout, then taken over by another active
	// rollout: shown as this rollout counted it, from the twin's history.
	taken := seen("2.0.7", 0, "")
	taken.ServedPackage, taken.ServedRollout = "", ""
	seedStation(t, hub, "00000000000000E1", canary,
		&twin.Ownership{Rollout: ns + "/fw-2-0-7-lab", UID: string(other.UID), Batch: 1, WrittenAt: testNow.Add(-10 * time.Minute)}, taken,
		twin.HistoryEntry{Rollout: ns + "/fw-2-0-7", UID: uid, Batch: 1, Outcome: "Updated", UpdatesServed: 1, At: testNow.Add(-10 * time.Minute)})
	// Written by this rollout; its observation still holds the KeyMismatch
	// of an aborted rollout of the same package: not this rollout's failure.
	aborted := seen("2.0.6", 0, twin.RefusalKeyMismatch)
	aborted.RefusedRollout = "uid-of-an-aborted-rollout"
	seedStation(t, hub, "00000000000000E2", canary, mine(2, 5*time.Minute), aborted)
	// Neither selected nor owned: not shown.
	seedStation(t, hub, "00000000000000D1", map[string]any{"ring": "prod"}, nil, seen("2.0.6", 0, ""))

	connFile := filepath.Join(t.TempDir(), "iothub-connection-string")
	if err := os.WriteFile(connFile, []byte(hub.ConnectionString()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return stationsFixture{ns: ns, kubeconfig: kubeconfig(t), connFile: connFile, caFile: hub.CAFile(), endpoint: hub.Addr(), connectionString: hub.ConnectionString()}
}

func TestStationsGolden(t *testing.T) {
	f := newStationsFixture(t)
	tests := []struct {
		name string
		args []string
	}{
		{"all", nil},
		{"failed", []string{"--outcome", "Failed"}},
		{"inprogress-wide", []string{"--outcome", "inprogress", "-o", "wide"}},
		{"all-wide", []string{"-o", "wide"}},
		{"skipped", []string{"--outcome", "Skipped"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			args := append([]string{"stations", "fw-2-0-7", "--kubeconfig", f.kubeconfig, "-n", f.ns,
				"--iothub-connection-string-file", f.connFile, "--iothub-ca-file", f.caFile, "--iothub-endpoint", f.endpoint}, tt.args...)
			r := runCLI(t, args...)
			g.Expect(r.code).To(Equal(0), r.errOut)
			g.Expect(r.out+r.errOut).NotTo(ContainSubstring(secretOf(f.connectionString)), "the connection string's key must never be printed")
			golden(t, "stations-"+tt.name+".golden", strings.ReplaceAll(r.out, f.ns, "NAMESPACE"))
		})
	}
}

func TestStationsConnectionStringFromEnvironment(t *testing.T) {
	g := NewWithT(t)
	f := newStationsFixture(t)
	t.Setenv(EnvIoTHubConnectionString, f.connectionString)
	t.Setenv(EnvIoTHubCAFile, f.caFile)
	t.Setenv(EnvIoTHubEndpoint, f.endpoint)
	r := runCLI(t, "stations", "fw-2-0-7", "--kubeconfig", f.kubeconfig, "-n", f.ns, "--outcome", "Updated")
	g.Expect(r.code).To(Equal(0), r.errOut)
	g.Expect(r.out).To(ContainSubstring("00000000000000A1"))
	g.Expect(r.out).To(ContainSubstring("3 of 13 stations shown"))
}

func TestStationsErrors(t *testing.T) {
	ns := testEnv.Namespace(t)
	createRollout(t, newRollout(ns, "x"), progressingStatus())
	kc := kubeconfig(t)
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("HostName=127.0.0.1:1;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0LWtleS1kby1ub3QtcHJpbnQ="), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  string
		args []string
		want string
	}{
		{name: "no connection string", want: "no IoT Hub connection string: set --iothub-connection-string-file or $IOTHUB_CONNECTION_STRING"},
		{name: "bad outcome", args: []string{"--outcome", "Done"}, want: "--outcome \"Done\": use Updated, Failed, InProgress, Pending or Skipped"},
		{name: "unreachable hub", args: []string{"--iothub-connection-string-file", bad}, want: "query the stations x owns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			t.Setenv(EnvIoTHubConnectionString, tt.env)
			r := runCLI(t, append([]string{"stations", "x", "--kubeconfig", kc, "-n", ns}, tt.args...)...)
			g.Expect(r.code).To(Equal(1))
			g.Expect(r.errOut).To(ContainSubstring(tt.want))
			g.Expect(r.errOut).NotTo(ContainSubstring("c2VjcmV0LWtleS1kby1ub3QtcHJpbnQ="))
		})
	}
}

// secretOf returns the SharedAccessKey of a connection string.
func secretOf(cs string) string {
	for _, part := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && k == "SharedAccessKey" {
			return v
		}
	}
	return "\x00never"
}
