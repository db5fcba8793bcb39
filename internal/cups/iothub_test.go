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

// The IoT Hub adapter satisfies the interface this package declares. The
// assertions for the controller's interfaces live where the adapters are
// wired, in internal/app.
var _ TwinStore = (*iothub.Client)(nil)

// TestThroughIoTHubEmulator runs a simulated station against the CUPS server
// reading and recording through the real IoT Hub adapter and the emulator:
// the signed update is applied, the observation lands in the twin's tags,
// and repeated polls cost neither reads (cache) nor writes (unchanged).
func TestThroughIoTHubEmulator(t *testing.T) {
	g := NewWithT(t)
	hub := hubsim.Start(t, hubsim.Options{})
	reg, err := iothub.New(hub.ConnectionString(), iothub.WithCAFile(hub.CAFile()), iothub.WithEndpoint(hub.Addr()), iothub.WithoutRateLimits())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = reg.Close() })

	serverCA, stCA := newTestCA(t, "server CA"), newTestCA(t, "station CA")
	certA := stCA.issue(t, "11:22ff:fe33:4455", false)
	blobs := newMemBlobs()
	fw, err := stationsim.UpdateScript("2.0.7", 0)
	g.Expect(err).NotTo(HaveOccurred())
	blobs.put("mem://fw/2.0.7", fw) // the captured update.bin, signed by signature.der

	opts := writeTLSFiles(t, serverCA.issue(t, "cups", true), stCA)
	opts.CacheTTL = time.Hour
	srv, err := NewServer(opts, reg, blobs, WithRegisterer(newRegistry()), WithLogger(discard()),
		WithNotifier(NotifierFunc(func(string, string) {})))
	g.Expect(err).NotTo(HaveOccurred())
	url := serveOnLoopback(t, srv)

	st := stationsim.State{
		EUI: 0x001122FFFE334455, CUPSURI: url, Package: "v1",
		CUPSCred: stationsim.CredSet{Trust: serverCA.cert.Raw, Cert: certA.certDER, Key: certA.keyDER},
		SigKeys:  [][]byte{readVector(t, "sig-0.key")},
	}
	g.Expect(hub.Seed(stationA,
		map[string]any{"region": "eu", twin.TagRoot: map[string]any{twin.TagRollout: map[string]any{"name": "fleet/spring", "uid": "u1", "batch": 0, "previous": map[string]any{}, "writtenAt": time.Now().UTC().Format(time.RFC3339)}}},
		map[string]any{
			twin.DesiredCUPS: map[string]any{
				"cupsUri": url, "cupsCredCrc": st.CUPSCred.CRC(), "tcCredCrc": st.TCCred.CRC(),
				"package": "2.0.7", "fwUrl": "mem://fw/2.0.7",
				"fwSignature": encodeB64(readVector(t, "signature.der")), "fwKeyChecksum": vectorKeyCRC,
			},
			twin.DesiredClientThumbprint: []any{certA.thumbprint},
		})).To(Succeed())

	station := stationsim.New(st, stationsim.WithTimeout(10*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := station.Poll(ctx)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Update).To(Equal(stationsim.UpdateApplied), res.UpdateReason)
	g.Expect(res.PackageAfter).To(Equal("2.0.7"))

	settle(t, srv)
	writes := hub.Writes()
	res = station.Poll(ctx) // reports 2.0.7: one write
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Response.NothingToChange()).To(BeTrue())
	settle(t, srv)
	g.Expect(hub.Writes()).To(Equal(writes + 1))

	reads, writes := hub.Reads(), hub.Writes()
	for range 5 {
		res = station.Poll(ctx)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.Response.NothingToChange()).To(BeTrue())
	}
	settle(t, srv)
	g.Expect(hub.Reads()).To(Equal(reads), "unchanged polls are served from the cache")
	g.Expect(hub.Writes()).To(Equal(writes), "unchanged polls write nothing")

	tw, err := reg.Get(ctx, stationA)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tw.Observation).NotTo(BeNil())
	g.Expect(tw.Observation.Package).To(Equal("2.0.7"))
	g.Expect(tw.Observation.ServedPackage).To(Equal("2.0.7"))
	g.Expect(tw.Observation.UpdatesServed).To(Equal(1))
	g.Expect(tw.Observation.Keys).To(Equal([]uint32{vectorKeyCRC}))
	g.Expect(tw.Tags).To(HaveKeyWithValue("region", "eu"), "the user's tags are untouched")
	g.Expect(tw.Ownership).NotTo(BeNil(), "the rollout's ownership record is untouched")
	g.Expect(tw.Ownership.Rollout).To(Equal("fleet/spring"))
}
