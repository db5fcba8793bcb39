package cups

import (
	"encoding/base64"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/twin"
)

func u32(v uint32) *uint32 { return &v }

// stationRequest is what the real station sends with package v1 and sig-0.key.
func stationRequest() *Request {
	return &Request{
		Router: 0x001122FFFE334455, CupsURI: "https://cups:5002", TcURI: "wss://lns:8887",
		CupsCredCRC: 111, TcCredCRC: 222,
		Station: "2.0.6(linux/std) 2026-11-27 18:19:31", Model: "linux", Package: "v1",
		Keys: []uint32{4101823099},
	}
}

var testSignature = base64.StdEncoding.EncodeToString(make([]byte, 71))

// matchingTwin holds exactly what stationRequest reports, and the firmware
// signed by sig-0.key.
func matchingTwin() *twin.Twin {
	return &twin.Twin{
		DeviceID: "001122FFFE334455",
		CUPS: twin.CUPS{
			CupsURI: "https://cups:5002", TcURI: "wss://lns:8887",
			CupsCredCRC: u32(111), TcCredCRC: u32(222),
			CupsCredentialURL: "blob://cups-cred", TcCredentialURL: "blob://tc-cred",
			Firmware: twin.Firmware{Package: "v1", URL: "blob://fw-v1", Signature: testSignature, KeyChecksum: u32(4101823099)},
		},
	}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	fresh := &twin.Observation{LastSeen: now.Add(-time.Minute), Station: "2.0.6(linux/std) 2026-11-27 18:19:31",
		Model: "linux", Package: "v1", Keys: []uint32{4101823099}, CupsCredCRC: u32(111)}
	owned := &twin.Ownership{Rollout: "fleet/spring", UID: "u1"}
	type want struct {
		cupsURI, tcURI, cupsCred, tcCred string
		update                           string // package sent
		refusal                          string
		record, notify                   bool
	}
	tests := []struct {
		name    string
		req     func(*Request)
		twin    func(*twin.Twin)
		unauth  bool
		want    want
		wantErr string
	}{
		{name: "everything the same: nothing to send, nothing to write",
			twin: func(t *twin.Twin) { t.Observation = fresh }},
		{name: "never seen: observation written",
			want: want{record: true}},
		{name: "cupsUri differs",
			twin: func(t *twin.Twin) { t.CUPS.CupsURI = "https://cups2:5002"; t.Observation = fresh },
			want: want{cupsURI: "https://cups2:5002"}},
		{name: "tcUri differs",
			twin: func(t *twin.Twin) { t.CUPS.TcURI = "wss://lns2:8887"; t.Observation = fresh },
			want: want{tcURI: "wss://lns2:8887"}},
		{name: "station has no tc.uri (null)",
			req:  func(r *Request) { r.TcURI = "" },
			twin: func(t *twin.Twin) { t.Observation = fresh },
			want: want{tcURI: "wss://lns:8887"}},
		{name: "twin without URIs sends none",
			twin: func(t *twin.Twin) { t.CUPS.CupsURI, t.CUPS.TcURI = "", ""; t.Observation = fresh }},
		{name: "cups credential CRC differs with URL",
			twin: func(t *twin.Twin) { t.CUPS.CupsCredCRC = u32(112); t.Observation = fresh },
			want: want{cupsCred: "blob://cups-cred"}},
		{name: "tc credential CRC differs with URL",
			twin: func(t *twin.Twin) { t.CUPS.TcCredCRC = u32(223); t.Observation = fresh },
			want: want{tcCred: "blob://tc-cred"}},
		{name: "credential CRC differs without URL: nothing",
			twin: func(t *twin.Twin) {
				t.CUPS.CupsCredCRC, t.CUPS.CupsCredentialURL = u32(112), ""
				t.CUPS.TcCredCRC, t.CUPS.TcCredentialURL = u32(223), ""
				t.Observation = fresh
			}},
		{name: "credential CRC unset in twin: nothing",
			twin: func(t *twin.Twin) { t.CUPS.CupsCredCRC, t.CUPS.TcCredCRC = nil, nil; t.Observation = fresh }},
		{name: "never credentials to an unauthenticated caller",
			twin:   func(t *twin.Twin) { t.CUPS.CupsCredCRC, t.CUPS.TcCredCRC = u32(112), u32(223); t.Observation = fresh },
			unauth: true},
		{name: "unauthenticated caller still gets URIs",
			twin:   func(t *twin.Twin) { t.CUPS.CupsURI = "https://cups2:5002"; t.Observation = fresh },
			unauth: true, want: want{cupsURI: "https://cups2:5002"}},
		{name: "package differs, key among the station's keys: update",
			twin: func(t *twin.Twin) { t.CUPS.Package = "v2"; t.Observation = fresh },
			want: want{update: "v2", record: true}},
		{name: "update to a station owned by a rollout wakes the controller",
			twin: func(t *twin.Twin) { t.CUPS.Package = "v2"; t.Observation = fresh; t.Ownership = owned },
			want: want{update: "v2", record: true, notify: true}},
		// maxUpdateAttempts is the number of sends (issue 13 item 1).
		{name: "served maxUpdateAttempts-1 times: sent the last attempt",
			twin: servedTwin(fresh, owned, "v2", "u1", 2, 3),
			want: want{update: "v2", record: true, notify: true}},
		{name: "served maxUpdateAttempts times and asking again: not sent, NotApplied recorded once",
			twin: servedTwin(fresh, owned, "v2", "u1", 3, 3),
			want: want{refusal: twin.RefusalNotApplied, record: true, notify: true}},
		{name: "NotApplied already recorded: not sent, nothing written",
			twin: func(t *twin.Twin) {
				servedTwin(fresh, owned, "v2", "u1", 3, 3)(t)
				t.Observation.Refusal, t.Observation.RefusedPackage, t.Observation.RefusedRollout = twin.RefusalNotApplied, "v2", "u1"
			},
			want: want{refusal: twin.RefusalNotApplied}},
		{name: "maxUpdateAttempts 1: the second ask is NotApplied",
			twin: servedTwin(fresh, owned, "v2", "u1", 1, 1),
			want: want{refusal: twin.RefusalNotApplied, record: true, notify: true}},
		{name: "sends counted for another rollout of the same package do not count",
			twin: servedTwin(fresh, owned, "v2", "u0", 3, 3),
			want: want{update: "v2", record: true, notify: true}},
		{name: "the rollout counted the station Failed (TimedOut): not sent again, nothing written",
			twin: func(t *twin.Twin) {
				t.CUPS.Package = "v2"
				t.Observation = fresh
				own := *owned
				own.Failed = "TimedOut"
				t.Ownership = &own
			},
			want: want{}},
		{name: "the rollout counted the station Failed (KeyMismatch): nothing new recorded",
			twin: func(t *twin.Twin) {
				t.CUPS.Package = "v2"
				t.CUPS.KeyChecksum = u32(42)
				o := *fresh
				o.Refusal, o.RefusedPackage, o.RefusedRollout = twin.RefusalKeyMismatch, "v2", "u1"
				t.Observation = &o
				own := *owned
				own.Failed = "KeyMismatch"
				t.Ownership = &own
			},
			want: want{}},
		{name: "package differs, key not among the station's keys: KeyMismatch, no update",
			twin: func(t *twin.Twin) {
				t.CUPS.Package = "v2"
				t.CUPS.KeyChecksum = u32(42)
				t.Observation = fresh
				t.Ownership = owned
			},
			want: want{refusal: twin.RefusalKeyMismatch, record: true, notify: true}},
		{name: "KeyMismatch already recorded: no second write",
			twin: func(t *twin.Twin) {
				t.CUPS.Package = "v2"
				t.CUPS.KeyChecksum = u32(42)
				o := *fresh
				o.Refusal, o.RefusedPackage = twin.RefusalKeyMismatch, "v2"
				t.Observation = &o
			},
			want: want{refusal: twin.RefusalKeyMismatch}},
		{name: "station without keys cannot verify a signed update: KeyMismatch",
			req:  func(r *Request) { r.Keys = nil },
			twin: func(t *twin.Twin) { t.CUPS.Package = "v2" },
			want: want{refusal: twin.RefusalKeyMismatch, record: true}},
		{name: "unsigned update to a station without keys: sent",
			req:  func(r *Request) { r.Keys = []uint32{} },
			twin: func(t *twin.Twin) { t.CUPS.Package = "v2"; t.CUPS.Signature, t.CUPS.KeyChecksum = "", nil },
			want: want{update: "v2", record: true}},
		{name: "unsigned update to a station with keys: KeyMismatch",
			twin: func(t *twin.Twin) { t.CUPS.Package = "v2"; t.CUPS.Signature, t.CUPS.KeyChecksum = "", nil },
			want: want{refusal: twin.RefusalKeyMismatch, record: true}},
		{name: "model constraint differs: ModelMismatch",
			twin: func(t *twin.Twin) {
				t.CUPS.Package = "v2"
				t.Observation = fresh
				o := *owned
				o.Model = "corecell"
				t.Ownership = &o
			},
			want: want{refusal: twin.RefusalModelMismatch, record: true, notify: true}},
		{name: "model constraint matches: update",
			twin: func(t *twin.Twin) {
				t.CUPS.Package = "v2"
				t.Observation = fresh
				o := *owned
				o.Model = "linux"
				t.Ownership = &o
			},
			want: want{update: "v2", record: true, notify: true}},
		{name: "same package: nothing, even with the wrong key",
			twin: func(t *twin.Twin) { t.CUPS.KeyChecksum = u32(42); t.Observation = fresh }},
		{name: "package differs but no firmware URL: nothing",
			twin: func(t *twin.Twin) { t.CUPS.Package = "v2"; t.CUPS.URL = ""; t.Observation = fresh }},
		{name: "station reports the new package: written and controller woken",
			req:  func(r *Request) { r.Package = "v2" },
			twin: func(t *twin.Twin) { t.CUPS.Package = "v2"; t.Observation = fresh; t.Ownership = owned },
			want: want{record: true, notify: true}},
		{name: "unowned station reports: written, controller not woken",
			req:  func(r *Request) { r.Package = "v2" },
			twin: func(t *twin.Twin) { t.CUPS.Package = "v2"; t.Observation = fresh; t.Ownership = nil },
			want: want{record: true}},
		{name: "stale LastSeen refreshed without waking anyone",
			twin: func(t *twin.Twin) {
				o := *fresh
				o.LastSeen = now.Add(-2 * time.Hour)
				t.Observation = &o
				t.Ownership = owned
			},
			want: want{record: true}},
		{name: "new key list recorded",
			req:  func(r *Request) { r.Keys = []uint32{4101823099, 7} },
			twin: func(t *twin.Twin) { t.Observation = fresh },
			want: want{record: true}},
		{name: "signature not base64: error",
			twin:    func(t *twin.Twin) { t.CUPS.Package = "v2"; t.CUPS.Signature = "%%%" },
			wantErr: "not base64"},
		{name: "signature of impossible length: error",
			twin: func(t *twin.Twin) {
				t.CUPS.Package = "v2"
				t.CUPS.Signature = base64.StdEncoding.EncodeToString(make([]byte, 200))
			},
			wantErr: "200 bytes"},
		{name: "signature without key checksum: error",
			twin:    func(t *twin.Twin) { t.CUPS.Package = "v2"; t.CUPS.KeyChecksum = nil },
			wantErr: "no fwKeyChecksum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			req, tw := stationRequest(), matchingTwin()
			if tt.req != nil {
				tt.req(req)
			}
			if tt.twin != nil {
				tt.twin(tw)
			}
			d, err := Decide(Input{Request: req, Twin: tw, Authenticated: !tt.unauth, Now: now})
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			got := want{cupsURI: d.CupsURI, tcURI: d.TcURI, cupsCred: d.CupsCredURL, tcCred: d.TcCredURL,
				refusal: d.Outcome.Refusal, record: d.Record, notify: d.Notify}
			if d.Update != nil {
				got.update = d.Update.Package
				g.Expect(d.Update.URL).To(Equal(tw.CUPS.URL))
				if tw.CUPS.KeyChecksum != nil {
					g.Expect(d.Update.KeyCRC).To(Equal(*tw.CUPS.KeyChecksum))
					g.Expect(d.Update.Signature).To(HaveLen(71))
				} else {
					g.Expect(d.Update.Signature).To(BeNil())
				}
			}
			g.Expect(got).To(Equal(tt.want))
			g.Expect(d.Observation.Package).To(Equal(req.Package))
			g.Expect(d.Observation.Model).To(Equal(req.Model))
			if d.Record {
				g.Expect(d.Observation.LastSeen).To(Equal(now))
			}
		})
	}
}

// servedTwin makes a twin owned by owned (with maxUpdateAttempts max) that
// desires pkg and was sent it n times while the rollout servedBy owned it.
func servedTwin(fresh *twin.Observation, owned *twin.Ownership, pkg, servedBy string, n, max int) func(*twin.Twin) {
	return func(t *twin.Twin) {
		t.CUPS.Package = pkg
		o := *fresh
		o.ServedPackage, o.ServedRollout, o.UpdatesServed = pkg, servedBy, n
		t.Observation = &o
		own := *owned
		own.MaxUpdateAttempts = max
		t.Ownership = &own
	}
}

func TestObserveCounts(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	req := stationRequest()
	var prev *twin.Observation
	for i := 1; i <= 3; i++ {
		obs, rec, changed := Observe(prev, req, Outcome{Served: "v2"}, now, 0)
		g.Expect(rec).To(BeTrue())
		g.Expect(changed).To(BeTrue())
		g.Expect(obs.ServedPackage).To(Equal("v2"))
		g.Expect(obs.UpdatesServed).To(Equal(i), "each served update counts")
		prev = &obs
	}
	obs, _, _ := Observe(prev, req, Outcome{Served: "v3"}, now, 0)
	g.Expect(obs.ServedPackage).To(Equal("v3"))
	g.Expect(obs.UpdatesServed).To(Equal(1), "a new package restarts the count")
	other, _, _ := Observe(&obs, req, Outcome{Served: "v3", Rollout: "u2"}, now, 0)
	g.Expect(other.UpdatesServed).To(Equal(1), "another rollout of the same package restarts the count")
	g.Expect(other.ServedRollout).To(Equal("u2"))

	refused, _, _ := Observe(&obs, req, Outcome{Refusal: twin.RefusalKeyMismatch, RefusedPackage: "v4"}, now, 0)
	g.Expect(refused.Refusal).To(Equal(twin.RefusalKeyMismatch))
	served, _, _ := Observe(&refused, req, Outcome{Served: "v4"}, now, 0)
	g.Expect(served.Refusal).To(BeEmpty(), "serving the refused package clears the refusal")

	// Unchanged within the refresh period: nothing to write.
	same, rec, changed := Observe(&served, req, Outcome{}, now.Add(59*time.Minute), 0)
	g.Expect(rec).To(BeFalse())
	g.Expect(changed).To(BeFalse())
	g.Expect(same.LastSeen).To(Equal(now))
	_, rec, changed = Observe(&served, req, Outcome{}, now.Add(time.Hour), 0)
	g.Expect(rec).To(BeTrue())
	g.Expect(changed).To(BeFalse())
	_, rec, _ = Observe(&served, req, Outcome{}, now.Add(10*time.Minute), 5*time.Minute)
	g.Expect(rec).To(BeTrue(), "the refresh period is configurable")
}

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
