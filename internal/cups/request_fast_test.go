package cups

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// stationBodies returns request bodies as stations write them: the
// captured vectors and stationsim's writer over EUIs in every ID6
// compression form, with and without keys, URIs and credentials.
func stationBodies(t testing.TB) [][]byte {
	var out [][]byte
	for _, f := range []string{"request-package-v1.json", "request-package-2.0.7.json"} {
		b, err := os.ReadFile("testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	out = append(out, []byte(realRequest))
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i + 1)
	}
	for _, eui := range []uint64{0x001122FFFE334455, 1, 0x10000, 0x100000000, 0x1000000000000, 0x0001000000000001, 0xFFFFFFFFFFFFFFFF, 0x0016C001F0000000} {
		for _, st := range []stationsim.State{
			{EUI: eui, CUPSURI: "http://127.0.0.1:7171", Package: "2.0.6", SigKeys: [][]byte{key}},
			{EUI: eui, CUPSURI: "https://cups.example.net:443", TCURI: "wss://lns.example.net:8887", Package: "2.0.7 \n",
				SigKeys: [][]byte{key, key}, CUPSCred: stationsim.CredSet{Trust: []byte("trust"), Key: []byte("Authorization: Bearer x\r\n")}},
			{EUI: eui, Model: "kona", Station: "2.0.6(corecell/std) 2024-01-01 00:00:00"},
		} {
			out = append(out, st.RequestBody())
		}
	}
	return out
}

// TestParseStationTakesEveryStationBody: every body a station writes takes
// the fast path and reads as the general decoder reads it.
func TestParseStationTakesEveryStationBody(t *testing.T) {
	for _, body := range stationBodies(t) {
		g := NewWithT(t)
		fast := parseStation(body)
		g.Expect(fast).NotTo(BeNil(), "station body took the general path: %s", body)
		general, err := parseGeneral(body)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(fast).To(Equal(general), "body %s", body)
	}
}

// TestParseStationDefersToGeneral: bodies outside the station's form go to
// the general path, which accepts or refuses them with its own words.
func TestParseStationDefersToGeneral(t *testing.T) {
	for _, body := range []string{
		`{"router":"1::","cupsCredCrc":1,"tcCredCrc":2,"station":"caf\u00e9"}`, // escape
		`{"router":"1::","cupsCredCrc":1,"tcCredCrc":2,"station":"café"}`,      // non-ASCII
		`{"Router":"1::","cupsCredCrc":1,"tcCredCrc":2}`,                       // a case variant encoding/json matches
		`{"router":"1::","cupsCredCrc":1,"tcCredCrc":2,"extra":{}}`,            // unknown field
		`{"router":"1::","router":"2::","cupsCredCrc":1,"tcCredCrc":2}`,        // repeated
		`{"router":1,"cupsCredCrc":1,"tcCredCrc":2}`,                           // integer EUI
		`{"router":"1::","cupsCredCrc":01,"tcCredCrc":2}`,                      // leading zero
		`{"router":"1::","cupsCredCrc":1.0,"tcCredCrc":2}`,                     // fraction
		`{"router":"1::","cupsCredCrc":4294967296,"tcCredCrc":2}`,              // out of range
		`{"router":"1::","cupsCredCrc":1,"tcCredCrc":2,"keys":[1 2]}`,          // not JSON
		`{"router":"1::","cupsCredCrc":1,"tcCredCrc":2,"keys":[1,]}`,           // not JSON
		`{"router":"1::","cupsCredCrc":1,"tcCredCrc":2} x`,                     // trailing data
		`{"router":"1::","cupsCredCrc":1}`,                                     // missing field
		`{"router":"zz","cupsCredCrc":1,"tcCredCrc":2}`,                        // bad EUI
		`{}`, `[]`, ``,
	} {
		if r := parseStation([]byte(body)); r != nil {
			t.Errorf("fast path accepted %s as %+v", body, r)
		}
	}
}

// FuzzParseStationMatchesGeneral: whatever the fast path accepts, the
// general decoder accepts too and reads the same.
func FuzzParseStationMatchesGeneral(f *testing.F) {
	for _, b := range stationBodies(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"router":"::1","cupsCredCrc":0,"tcCredCrc":4294967295,"keys":[],"tcUri":null}`))
	f.Add([]byte(` { "router" : "1:2:3:4" , "cupsCredCrc" : 7 , "tcCredCrc" : 8 , "keys" : [ 1 , 2 ] , "package" : null } `))
	f.Fuzz(func(t *testing.T, body []byte) {
		fast := parseStation(body)
		if fast == nil {
			return
		}
		general, err := parseGeneral(body)
		if err != nil {
			t.Fatalf("fast path accepted %q, the general one refuses it: %v", body, err)
		}
		if !reflect.DeepEqual(fast, general) {
			t.Fatalf("%q: fast %+v, general %+v", body, fast, general)
		}
	})
}

// BenchmarkParseRequest is the cost of parsing a real station's body
// (allocs/op shows a regression to the general decoder).
func BenchmarkParseRequest(b *testing.B) {
	body := []byte(realRequest)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRequestGeneral is the general decoder on the same body,
// for comparison.
func BenchmarkParseRequestGeneral(b *testing.B) {
	body := []byte(realRequest)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseGeneral(body); err != nil {
			b.Fatal(err)
		}
	}
}

// benchWriter is a reusable http.ResponseWriter for handler benchmarks.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.status = code }
func (w *benchWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// TestNoChangePollAllocations: a real station's no-change poll, its twin
// cached, costs the handler a handful of allocations (the parsed request
// and its strings, the device id), not the general JSON decoder's dozens:
// at 256 stations in flight every allocation is garbage to collect
// (issue 18). Measured without the socket and net/http.
func TestNoChangePollAllocations(t *testing.T) {
	srv, w, r, reset := noChangeHandler(t)
	allocs := testing.AllocsPerRun(200, func() {
		reset()
		srv.ServeHTTP(w, r)
	})
	if w.status != http.StatusOK || w.n != noChangeBodySize {
		t.Fatalf("status %d, %d bytes", w.status, w.n)
	}
	// 4 in the handler (the Request, its keys, the EUI's text, the device
	// id; the strings are interned) and one of this test (the body's
	// NopCloser); the general decoder made 33.
	if allocs > 5 {
		t.Errorf("a no-change poll allocates %.0f times, want at most 5", allocs)
	}
}

// noChangeHandler returns a server whose cached twin answers the returned
// request "nothing to change", and a reset for the request's body.
func noChangeHandler(t testing.TB) (*Server, *benchWriter, *http.Request, func()) {
	store := newMemStore()
	body := stationsim.State{EUI: 0x001122FFFE334455, CUPSURI: "http://127.0.0.1:7171", Package: "2.0.6", SigKeys: [][]byte{bytes.Repeat([]byte{7}, 64)}}.RequestBody()
	req, err := ParseRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	obs, _, _ := Observe(nil, req, Outcome{}, time.Now().Add(-time.Minute), 0)
	store.put(&twin.Twin{DeviceID: req.Router.DeviceID(), CUPS: twin.CUPS{Firmware: twin.Firmware{Package: "2.0.6"}}, Observation: &obs})
	srv, err := NewServer(Options{Insecure: true, CacheTTL: time.Hour}, store, nil,
		WithRegisterer(prometheus.NewRegistry()), WithLogger(logr.Discard()))
	if err != nil {
		t.Fatal(err)
	}
	rd := bytes.NewReader(body)
	r := httptest.NewRequest(http.MethodPost, UpdateInfoPath, rd)
	w := &benchWriter{h: http.Header{}}
	return srv, w, r, func() {
		rd.Reset(body)
		r.Body = io.NopCloser(rd)
		clear(w.h)
		w.n = 0
	}
}

// BenchmarkServeNoChange is the handler's own cost for a real station's
// no-change poll with its twin cached and its observation current (the
// demo's steady state): no socket, no net/http. allocs/op shows a
// regression on the hot path.
func BenchmarkServeNoChange(b *testing.B) {
	srv, w, r, reset := noChangeHandler(b)
	b.ReportAllocs()
	for b.Loop() {
		reset()
		srv.ServeHTTP(w, r)
		if w.status != http.StatusOK || w.n != noChangeBodySize {
			b.Fatalf("status %d, %d bytes", w.status, w.n)
		}
	}
	if srv.PendingObservations() != 0 {
		b.Fatal("the benchmark wrote observations")
	}
}

// TestInternKeepsContent: interned strings read as their bytes, whatever
// collides in the table, and a repeated string is shared.
func TestInternKeepsContent(t *testing.T) {
	g := NewWithT(t)
	for i := range 5000 {
		b := []byte(fmt.Sprintf("2.0.%d(linux/std)", i))
		g.Expect(intern(b)).To(Equal(string(b)))
	}
	long := bytes.Repeat([]byte("x"), internMaxLen+1)
	g.Expect(intern(long)).To(Equal(string(long)))
	g.Expect(intern(nil)).To(Equal(""))
	a, b := intern([]byte("linux")), intern([]byte("linux"))
	g.Expect(unsafe.StringData(a)).To(Equal(unsafe.StringData(b)), "one copy")
}
