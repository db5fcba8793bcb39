package hubsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"testing"

	. "github.com/onsi/gomega"
)

// fleetDocs are a station's seeded documents as the bench and the demo
// write them: a region and ring, and the firmware every station desires.
func fleetDocs(i int) (tags, desired map[string]any) {
	tags = map[string]any{"region": fmt.Sprintf("region-%d", i%4), "ring": fmt.Sprintf("ring-%d", i%3)}
	desired = map[string]any{"cups": map[string]any{"package": "2.0.6",
		"fwUrl":         "http://127.0.0.1:8080/firmware/2.0.6/station-2.0.6.bin",
		"fwSignature":   "MEUCIQD3m1yZ2u2b0sSFe2zJmPp2l2mSxN0r8lY2q0xJ0b3Y7gIgT4y3Hh5b6Q1cJ8x0b2Z3v7Yk1d9sA0b4r6cT2e8f9g0=",
		"fwKeyChecksum": json.Number("3735928559")}}
	return tags, desired
}

// TestHeapPerSeededTwin (issue 18 item 3): the emulator holds a fleet's
// twins in a few hundred bytes each (it held 2.1 to 2.4 KB before their
// repeated documents were shared), so that a million of them fit in the
// bench's process beside everything else. Heap is measured after a
// collection, so the figure does not depend on the machine's load.
func TestHeapPerSeededTwin(t *testing.T) {
	const n = 20_000
	hub := startHub(t)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	for i := range n {
		tags, desired := fleetDocs(i)
		if err := hub.Seed(devID(i), tags, desired); err != nil {
			t.Fatal(err)
		}
	}
	hub.store.ids() // the sorted index a query builds
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	per := int64(ms1.HeapAlloc-ms0.HeapAlloc) / n
	t.Logf("%d bytes of heap per seeded twin", per)
	if per > 700 {
		t.Errorf("%d bytes of heap per seeded twin, want at most 700", per)
	}
	runtime.KeepAlive(hub)
}

// TestSharedDocumentsStayPerTwin: twins that share their documents are
// still written one at a time: a patch to one changes no other, and every
// twin reads back as it was written.
func TestSharedDocumentsStayPerTwin(t *testing.T) {
	hub := startHub(t)
	g := NewWithT(t)
	for i := range 3 {
		tags, desired := fleetDocs(0)
		tags["site"] = map[string]any{"city": "Oslo", "racks": []any{json.Number("1"), "b"}}
		g.Expect(hub.Seed(devID(i), tags, desired)).To(Succeed())
	}
	before, _ := hub.TwinDocument(devID(2))
	c := newRaw(hub)
	code, _, body := c.do(t, http.MethodPatch, "/twins/"+devID(1), "2020-09-30", c.token(t), nil, map[string]any{
		"tags":       map[string]any{"ring": "ring-9", "site": map[string]any{"city": "Bergen"}},
		"properties": map[string]any{"desired": map[string]any{"cups": map[string]any{"package": "2.0.7"}}},
	})
	g.Expect(code).To(Equal(http.StatusOK), string(body))
	after, _ := hub.TwinDocument(devID(2))
	g.Expect(after).To(Equal(before))
	one, _ := hub.TwinDocument(devID(1))
	g.Expect(one["tags"]).To(Equal(map[string]any{"region": "region-0", "ring": "ring-9",
		"site": map[string]any{"city": "Bergen", "racks": []any{1.0, "b"}}}))
	cups := one["properties"].(map[string]any)["desired"].(map[string]any)["cups"].(map[string]any)
	g.Expect(cups["package"]).To(Equal("2.0.7"))
	g.Expect(cups["fwKeyChecksum"]).To(Equal(3735928559.0))
	// The same documents are one copy.
	d0, d2 := hub.store.get(devID(0)), hub.store.get(devID(2))
	g.Expect(fmt.Sprintf("%p", d0.Desired)).To(Equal(fmt.Sprintf("%p", d2.Desired)))
}
