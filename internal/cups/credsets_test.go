package cups

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// credEnv is the TLS CUPS server reading twins through the real IoT Hub
// client and the emulator, and station A enrolled with client certificate
// #1. Rotations go through CUPS as an operator makes them: a credential
// blob, the twin's cupsCredCrc and cupsCredentialUrl, the thumbprint list.
type credEnv struct {
	hub      *hubsim.Server
	reg      *iothub.Client
	srv      *Server
	blobs    *memBlobs
	serverCA *testCA
	certs    []*issued // #1, #2, #3
	station  *stationsim.Station
	url      string
}

func newCredEnv(t *testing.T) *credEnv {
	t.Helper()
	g := NewWithT(t)
	e := &credEnv{hub: hubsim.Start(t, hubsim.Options{}), blobs: newMemBlobs(), serverCA: newTestCA(t, "server CA")}
	var err error
	e.reg, err = iothub.New(e.hub.ConnectionString(), iothub.WithCAFile(e.hub.CAFile()), iothub.WithEndpoint(e.hub.Addr()), iothub.WithoutRateLimits())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = e.reg.Close() })
	stCA := newTestCA(t, "station CA")
	for range 3 {
		e.certs = append(e.certs, stCA.issue(t, "11:22ff:fe33:4455", false))
	}
	opts := writeTLSFiles(t, e.serverCA.issue(t, "cups", true), stCA)
	opts.CacheTTL = time.Hour // every twin change below goes with an Invalidate
	e.srv, err = NewServer(opts, e.reg, e.blobs, WithRegisterer(newRegistry()), WithLogger(discard()),
		WithNotifier(NotifierFunc(func(string, string) {})))
	g.Expect(err).NotTo(HaveOccurred())
	e.url = serveOnLoopback(t, e.srv)

	st := stationsim.State{
		EUI: 0x001122FFFE334455, CUPSURI: e.url, Package: "v1",
		CUPSCred: e.set(0),
		SigKeys:  [][]byte{readVector(t, "sig-0.key")},
	}
	g.Expect(e.hub.Seed(stationA, nil, map[string]any{
		twin.DesiredCUPS:             map[string]any{"cupsUri": e.url, "cupsCredCrc": st.CUPSCred.CRC(), "tcCredCrc": st.TCCred.CRC(), "package": "v1"},
		twin.DesiredClientThumbprint: []any{e.certs[0].thumbprint},
	})).To(Succeed())
	e.station = stationsim.New(st, stationsim.WithTimeout(10*time.Second))
	return e
}

// set is the station's CUPS credential set holding certificate #i+1.
func (e *credEnv) set(i int) stationsim.CredSet {
	return stationsim.CredSet{Trust: e.serverCA.cert.Raw, Cert: e.certs[i].certDER, Key: e.certs[i].keyDER}
}

// patch writes desired properties as the operator does and drops the
// server's cached twin.
func (e *credEnv) patch(t *testing.T, desired map[string]any) {
	t.Helper()
	_, err := e.reg.Update(context.Background(), stationA, func(*twin.Twin) (*twin.Patch, error) {
		return &twin.Patch{Desired: desired}, nil
	})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	e.srv.Cache().Invalidate(stationA)
}

// allow sets the twin's clientThumbprint list to certificates #i+1.
func (e *credEnv) allow(t *testing.T, idx ...int) {
	t.Helper()
	var tps []any
	for _, i := range idx {
		tps = append(tps, e.certs[i].thumbprint)
	}
	e.patch(t, map[string]any{twin.DesiredClientThumbprint: tps})
}

func (e *credEnv) poll(t *testing.T) stationsim.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := e.station.Poll(ctx)
	if res.Malformed() {
		t.Fatalf("malformed response: %v %v", res.Err, res.Violations)
	}
	return res
}

// enrollAndRotateTwice: the station polls with #1 (its backup is taken),
// then the operator rotates it to #2 and to #3 through CUPS, listing the
// old and the new thumbprint during each rotation.
func (e *credEnv) enrollAndRotateTwice(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	res := e.poll(t)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.BackupTaken).To(BeTrue(), "the first successful session copies the regular set to the backup")
	for i := 1; i <= 2; i++ {
		url := "mem://cred/" + e.certs[i].thumbprint
		set := e.set(i)
		e.blobs.put(url, credBlob(set.Trust, set.Cert, set.Key))
		e.patch(t, map[string]any{
			twin.DesiredCUPS:             map[string]any{"cupsCredCrc": set.CRC(), "cupsCredentialUrl": url},
			twin.DesiredClientThumbprint: []any{e.certs[0].thumbprint, e.certs[i-1].thumbprint, e.certs[i].thumbprint},
		})
		res = e.poll(t)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.CUPSCredChanged).To(BeTrue(), "rotation %d", i)
		res = e.poll(t)
		g.Expect(res.Err).NotTo(HaveOccurred(), "the station speaks with certificate #%d", i+1)
		g.Expect(res.CredSet).To(Equal(stationsim.CredSetRegular))
		g.Expect(res.Response.NothingToChange()).To(BeTrue())
	}
	st := e.station.State()
	g.Expect(st.CUPSCred.CRC()).To(Equal(e.set(2).CRC()), "the regular set holds #3")
	g.Expect(st.Backup.Cred.Cert).To(Equal(e.certs[0].certDER), "the backup still holds #1: a rotation never refreshes it")
	g.Expect(st.BackupDone).To(BeTrue())
}

// TestStationFallsBackToBackupCredentials (issue 21): after two rotations
// the regular set breaks; the station falls back to its backup set, which
// holds the first certificate it ever used, and gets in as long as that
// certificate is still accepted.
func TestStationFallsBackToBackupCredentials(t *testing.T) {
	t.Run("regular certificate's thumbprint removed from the twin", func(t *testing.T) {
		g := NewWithT(t)
		e := newCredEnv(t)
		e.enrollAndRotateTwice(t)
		e.allow(t, 0) // #3 no longer listed, #1 still is
		fw, err := stationsim.UpdateScript("2.0.7", 0)
		g.Expect(err).NotTo(HaveOccurred())
		e.blobs.put("mem://fw/2.0.7", fw) // signed by signature.der
		e.patch(t, map[string]any{twin.DesiredCUPS: map[string]any{
			"package": "2.0.7", "fwUrl": "mem://fw/2.0.7",
			"fwSignature": encodeB64(readVector(t, "signature.der")), "fwKeyChecksum": vectorKeyCRC,
		}})

		res := e.poll(t)
		g.Expect(res.StatusCode).To(Equal(403))
		g.Expect(res.CredSet).To(Equal(stationsim.CredSetRegular))
		g.Expect(res.NextCredSet).To(Equal(stationsim.CredSetBackup), "an HTTP error status moves to the backup at once")
		res = e.poll(t)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.CredSet).To(Equal(stationsim.CredSetBackup))
		g.Expect(res.Update).To(Equal(stationsim.UpdateApplied), res.UpdateReason)
		g.Expect(res.PackageAfter).To(Equal("2.0.7"), "the station got in with #1 and was updated")
	})

	t.Run("regular key file corrupted", func(t *testing.T) {
		g := NewWithT(t)
		e := newCredEnv(t)
		e.enrollAndRotateTwice(t)
		e.allow(t, 0, 2)
		st := e.station.State()
		st.CUPSCred.Key = []byte{0x30, 0x03, 1, 2, 3}
		e.station.SetState(st)

		// mbedTLS rejects the key before connecting: a failure, but not an
		// HTTP refusal, so the station stays on the regular set for 8.
		for i := 1; i <= stationsim.FailCountThreshold+2; i++ {
			res := e.poll(t)
			g.Expect(res.Err).To(MatchError(ContainSubstring("cups.key rejected")))
			g.Expect(res.CredSet).To(Equal(stationsim.CredSetRegular))
		}
		g.Expect(e.station.NextCredSet()).To(Equal(stationsim.CredSetBackup))
		res := e.poll(t)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.CredSet).To(Equal(stationsim.CredSetBackup))
		g.Expect(res.CUPSCredChanged).To(BeTrue(), "the request reports the broken set's CRC, so CUPS sends #3 again")
		g.Expect(e.station.State().CUPSCred.CRC()).To(Equal(e.set(2).CRC()))
		res = e.poll(t)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.CredSet).To(Equal(stationsim.CredSetRegular), "healed: back on the regular set")
		g.Expect(res.Response.NothingToChange()).To(BeTrue())
	})
}

// TestStationLockedOutWhenFirstCredentialRevoked is the trap of issue 21:
// after rotations the operator drops the old thumbprints, #1 included. The
// backup set still holds #1, so once the regular set breaks the station
// has nothing the server accepts and never gets in again.
func TestStationLockedOutWhenFirstCredentialRevoked(t *testing.T) {
	g := NewWithT(t)
	e := newCredEnv(t)
	e.enrollAndRotateTwice(t)
	e.allow(t, 2) // only #3
	res := e.poll(t)
	g.Expect(res.Err).NotTo(HaveOccurred(), "fine while the regular set works")

	st := e.station.State()
	st.CUPSCred.Key = []byte{0x30, 0x03, 1, 2, 3}
	e.station.SetState(st)
	used := map[stationsim.CredSetName]int{}
	for range 20 {
		res = e.poll(t)
		g.Expect(res.Err).To(HaveOccurred(), "no session succeeds")
		used[res.CredSet]++
		if res.CredSet == stationsim.CredSetBackup {
			g.Expect(res.StatusCode).To(Equal(403), "the backup's #1 is refused")
		}
	}
	g.Expect(used).To(HaveKey(stationsim.CredSetBackup))
	g.Expect(used).To(HaveKey(stationsim.CredSetBoot))
	g.Expect(e.station.Stats().Failures).To(BeEquivalentTo(20))
}
