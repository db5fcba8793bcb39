package cups

import (
	"bytes"
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// simEnv is a TLS CUPS server with client-certificate authentication and a
// simulated station A that holds a certificate of the station CA.
type simEnv struct {
	h        *harness
	serverCA *testCA
	stCA     *testCA
	station  *stationsim.Station
	twin     *twin.Twin
	sigKey   []byte
	blobs    *memBlobs
}

// credBlob is a CUPS credential segment: the DER trust, the DER client
// certificate or four zero bytes, then the DER key or a token.
func credBlob(trust, cert, key []byte) []byte {
	b := append([]byte{}, trust...)
	if len(cert) == 0 {
		b = append(b, 0, 0, 0, 0)
	} else {
		b = append(b, cert...)
	}
	return append(b, key...)
}

// newSimEnv starts the server (with the extra options); adjust edits the
// twin first (its CUPS URI and credential CRCs already match the station,
// its package is v1).
func newSimEnv(t *testing.T, adjust func(e *simEnv), extra ...Option) *simEnv {
	t.Helper()
	e := &simEnv{serverCA: newTestCA(t, "server CA"), stCA: newTestCA(t, "station CA"), blobs: newMemBlobs()}
	e.sigKey = readVector(t, "sig-0.key")
	certA := e.stCA.issue(t, "11:22ff:fe33:4455", false)
	store := newMemStore()
	opts := writeTLSFiles(t, e.serverCA.issue(t, "cups", true), e.stCA)
	opts.CacheTTL = time.Hour // every change below goes with an Invalidate, as the controller does
	// The server's port is needed in the station's cups.uri and the twin,
	// so start with an empty twin store and fill it before the first poll.
	e.h = startServer(t, opts, store, e.blobs, extra...)
	cupsURI := "https://" + e.h.url[len("https://"):len(e.h.url)-len(UpdateInfoPath)]
	st := stationsim.State{
		EUI:      0x001122FFFE334455,
		CUPSURI:  cupsURI,
		CUPSCred: stationsim.CredSet{Trust: e.serverCA.cert.Raw, Cert: certA.certDER, Key: certA.keyDER},
		Package:  "v1",
		SigKeys:  [][]byte{e.sigKey},
	}
	e.station = stationsim.New(st, stationsim.WithTimeout(10*time.Second))
	e.twin = &twin.Twin{
		DeviceID: stationA,
		CUPS: twin.CUPS{
			CupsURI:     cupsURI,
			CupsCredCRC: u32(st.CUPSCred.CRC()), TcCredCRC: u32(st.TCCred.CRC()),
			Firmware: twin.Firmware{Package: "v1"},
		},
		ClientThumbprints: []string{certA.thumbprint},
		Ownership:         &twin.Ownership{Rollout: "fleet/spring", UID: "u1"},
	}
	if adjust != nil {
		adjust(e)
	}
	store.put(e.twin)
	return e
}

// signedFirmware stores an update script that installs version, signed with
// the vector key, and points the twin at it.
func (e *simEnv) signedFirmware(t *testing.T, version string, keyPEM []byte, keyCRC uint32) {
	t.Helper()
	fw, err := stationsim.UpdateScript(version, 0)
	must(t, err)
	priv, err := signing.ParsePrivateKeyPEM(keyPEM)
	must(t, err)
	sig, err := signing.Sign(priv, bytes.NewReader(fw))
	must(t, err)
	url := "mem://fw/" + version
	e.blobs.put(url, fw)
	e.twin.CUPS.Firmware = twin.Firmware{Package: version, URL: url, Signature: signing.EncodeSignature(sig), KeyChecksum: u32(keyCRC)}
}

func (e *simEnv) poll(t *testing.T) stationsim.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := e.station.Poll(ctx)
	if res.Malformed() {
		t.Fatalf("malformed response: %v %v", res.Err, res.Violations)
	}
	return res
}

func TestSimulatorNothingToChange(t *testing.T) {
	g := NewWithT(t)
	e := newSimEnv(t, nil)
	for range 3 {
		res := e.poll(t)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.StatusCode).To(Equal(200))
		g.Expect(res.Response.NothingToChange()).To(BeTrue())
		g.Expect(res.BytesRead).To(BeEquivalentTo(14))
	}
	settle(t, e.h.srv)
	g.Expect(e.h.store.writes.Load()).To(BeEquivalentTo(1), "first sight recorded, then no write per poll")
	obs := e.h.store.observation(t, e.h.srv, stationA)
	g.Expect(obs.Package).To(Equal("v1"))
	g.Expect(obs.Keys).To(Equal([]uint32{vectorKeyCRC}))
	g.Expect(obs.Station).To(Equal(stationsim.DefaultStation))
}

func TestSimulatorURIChange(t *testing.T) {
	g := NewWithT(t)
	e := newSimEnv(t, func(e *simEnv) { e.twin.CUPS.TcURI = "wss://lns.example:8887" })
	res := e.poll(t)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.TCURIChanged).To(BeTrue())
	g.Expect(res.CUPSURIChanged).To(BeFalse())
	g.Expect(e.station.State().TCURI).To(Equal("wss://lns.example:8887"))
	res = e.poll(t)
	g.Expect(res.Response.NothingToChange()).To(BeTrue(), "the station now reports the new tc.uri")
}

func TestSimulatorCredentialChange(t *testing.T) {
	g := NewWithT(t)
	var newCUPS, newTC stationsim.CredSet
	var certA2 *issued
	e := newSimEnv(t, func(e *simEnv) {
		// Rotate the station's CUPS client certificate, and give it LNS
		// credentials (trust plus a token).
		certA2 = e.stCA.issue(t, "0011:22ff:fe33:4455", false)
		newCUPS = stationsim.CredSet{Trust: e.serverCA.cert.Raw, Cert: certA2.certDER, Key: certA2.keyDER}
		newTC = stationsim.CredSet{Trust: e.serverCA.cert.Raw, Key: []byte("Authorization: Bearer lns-token\r\n")}
		e.blobs.put("mem://cred/cups", credBlob(newCUPS.Trust, newCUPS.Cert, newCUPS.Key))
		e.blobs.put("mem://cred/tc", credBlob(newTC.Trust, nil, newTC.Key))
		e.twin.CUPS.CupsCredCRC, e.twin.CUPS.CupsCredentialURL = u32(newCUPS.CRC()), "mem://cred/cups"
		e.twin.CUPS.TcCredCRC, e.twin.CUPS.TcCredentialURL = u32(newTC.CRC()), "mem://cred/tc"
		// Both certificates may speak for the station while it rotates.
		e.twin.ClientThumbprints = append(e.twin.ClientThumbprints, certA2.thumbprint)
	})
	res := e.poll(t)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.CUPSCredChanged).To(BeTrue())
	g.Expect(res.TCCredChanged).To(BeTrue())
	g.Expect(e.station.State().CUPSCred.CRC()).To(Equal(newCUPS.CRC()))
	g.Expect(e.station.State().TCCred.CRC()).To(Equal(newTC.CRC()))

	// The next poll authenticates with the new certificate and reports the
	// new CRCs: nothing more to send.
	res = e.poll(t)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Response.NothingToChange()).To(BeTrue())
	g.Expect(e.h.logs.String()).NotTo(ContainSubstring("lns-token"))
	g.Expect(counterValue(t, e.h.reg, "stationfleet_cups_credentials_served_total", map[string]string{"set": "cups"})).To(BeEquivalentTo(1))
	g.Expect(counterValue(t, e.h.reg, "stationfleet_cups_credentials_served_total", map[string]string{"set": "tc"})).To(BeEquivalentTo(1))
}

func TestSimulatorSignedUpdateApplied(t *testing.T) {
	g := NewWithT(t)
	e := newSimEnv(t, func(e *simEnv) { e.signedFirmware(t, "2.0.7", readVector(t, "sig-0.pem"), vectorKeyCRC) })
	res := e.poll(t)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Update).To(Equal(stationsim.UpdateApplied), res.UpdateReason)
	g.Expect(res.VerifiedKey).To(Equal(0))
	g.Expect(res.PackageAfter).To(Equal("2.0.7"))
	settle(t, e.h.srv)
	g.Expect(e.h.notified).To(Receive(Equal("fleet/spring")))

	res = e.poll(t)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Response.NothingToChange()).To(BeTrue(), "the station reports 2.0.7: nothing more to send")
	obs := e.h.store.observation(t, e.h.srv, stationA)
	g.Expect(obs.Package).To(Equal("2.0.7"), "the new package is recorded for the controller")
	g.Expect(obs.ServedPackage).To(Equal("2.0.7"))
	g.Expect(obs.UpdatesServed).To(Equal(1))
	g.Expect(e.h.notified).To(Receive(Equal("fleet/spring")), "the new package wakes the controller")
}

func TestSimulatorRefusesWrongSigningKey(t *testing.T) {
	g := NewWithT(t)
	other, err := signing.GenerateKey()
	must(t, err)
	otherPEM, err := signing.MarshalPrivateKeyPEM(other, signing.PEMFormat(0))
	must(t, err)
	// The twin names the station's key CRC, but the signature was made with
	// another key: the server sends it, the station must refuse it.
	e := newSimEnv(t, func(e *simEnv) { e.signedFirmware(t, "2.0.7", otherPEM, vectorKeyCRC) })
	res := e.poll(t)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Update).To(Equal(stationsim.UpdateRefused))
	g.Expect(res.PackageAfter).To(Equal("v1"))
	obs := e.h.store.observation(t, e.h.srv, stationA)
	g.Expect(obs.UpdatesServed).To(Equal(1), "served, yet never applied: the controller's NotApplied count grows")
	g.Expect(obs.Package).To(Equal("v1"))
}

func TestSimulatorKeyMismatchRecorded(t *testing.T) {
	g := NewWithT(t)
	other, err := signing.GenerateKey()
	must(t, err)
	otherPEM, err := signing.MarshalPrivateKeyPEM(other, signing.PEMFormat(0))
	must(t, err)
	otherCRC, err := signing.PublicKeyCRC(&other.PublicKey)
	must(t, err)
	e := newSimEnv(t, func(e *simEnv) { e.signedFirmware(t, "2.0.7", otherPEM, otherCRC) })
	for range 3 {
		res := e.poll(t)
		g.Expect(res.Err).NotTo(HaveOccurred(), "a refusal is a 200, never an error status")
		g.Expect(res.StatusCode).To(Equal(200))
		g.Expect(res.Response.NothingToChange()).To(BeTrue())
		g.Expect(res.Update).To(Equal(stationsim.UpdateNone))
	}
	obs := e.h.store.observation(t, e.h.srv, stationA)
	g.Expect(obs.Refusal).To(Equal(twin.RefusalKeyMismatch))
	g.Expect(obs.RefusedPackage).To(Equal("2.0.7"))
	g.Expect(obs.UpdatesServed).To(BeZero())
	g.Expect(e.h.store.writes.Load()).To(BeEquivalentTo(1), "the refusal is written once, not per poll")
	g.Expect(e.h.notified).To(Receive(Equal("fleet/spring")))
}

func TestSimulatorModelMismatch(t *testing.T) {
	g := NewWithT(t)
	e := newSimEnv(t, func(e *simEnv) {
		e.signedFirmware(t, "2.0.7", readVector(t, "sig-0.pem"), vectorKeyCRC)
		e.twin.Ownership.Model = "corecell"
	})
	res := e.poll(t)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Response.NothingToChange()).To(BeTrue())
	g.Expect(res.PackageAfter).To(Equal("v1"))
	obs := e.h.store.observation(t, e.h.srv, stationA)
	g.Expect(obs.Refusal).To(Equal(twin.RefusalModelMismatch))
	g.Expect(obs.Model).To(Equal("linux"))
}

func TestSimulatorTokenStation(t *testing.T) {
	g := NewWithT(t)
	e := newSimEnv(t, func(e *simEnv) {
		e.twin.TokenSHA256 = []string{sha256Hex(tokenA)}
		e.signedFirmware(t, "2.0.7", readVector(t, "sig-0.pem"), vectorKeyCRC)
	})
	st := e.station.State()
	st.CUPSCred = stationsim.CredSet{Trust: e.serverCA.cert.Raw, Key: []byte("Authorization: Bearer " + tokenA + "\r\n")}
	e.station.SetState(st)
	// The twin's CUPS credential CRC no longer matches, but no credential
	// URL is set: only the update is sent.
	res := e.poll(t)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Update).To(Equal(stationsim.UpdateApplied))

	st = e.station.State()
	st.CUPSCred.Key = []byte("Authorization: Bearer wrong\r\n")
	e.station.SetState(st)
	res = e.poll(t)
	g.Expect(res.Err).To(HaveOccurred())
	g.Expect(res.StatusCode).To(Equal(403))
}
