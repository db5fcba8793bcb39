package cups

import (
	"os"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// realRequest is the body a real Basics Station 2.0.6 sent (issue 3).
const realRequest = `{"router":"11:22ff:fe33:4455","cupsUri":"http://127.0.0.1:7070","tcUri":null,"cupsCredCrc":2077607535,"tcCredCrc":2077607535,"station":"2.0.6(linux/std) 2026-11-27 18:19:31","model":"linux","package":"v1","keys":[3847268180]}`

func TestParseRequestRealStation(t *testing.T) {
	g := NewWithT(t)
	req, err := ParseRequest([]byte(realRequest))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(req.Router.DeviceID()).To(Equal("001122FFFE334455"))
	g.Expect(*req).To(Equal(Request{
		Router:      0x001122FFFE334455,
		CupsURI:     "http://127.0.0.1:7070",
		TcURI:       "",
		CupsCredCRC: 2077607535,
		TcCredCRC:   2077607535,
		Station:     "2.0.6(linux/std) 2026-11-27 18:19:31",
		Model:       "linux",
		Package:     "v1",
		Keys:        []uint32{3847268180},
	}))
}

func TestParseRequestVectors(t *testing.T) {
	for file, pkg := range map[string]string{"request-package-v1.json": "v1", "request-package-2.0.7.json": "2.0.7"} {
		t.Run(file, func(t *testing.T) {
			g := NewWithT(t)
			body, err := os.ReadFile("testdata/" + file)
			g.Expect(err).NotTo(HaveOccurred())
			req, err := ParseRequest(body)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(req.Router.DeviceID()).To(Equal("001122FFFE334455"))
			g.Expect(req.Package).To(Equal(pkg))
			g.Expect(req.Keys).To(Equal([]uint32{4101823099}))
			g.Expect(req.CupsURI).To(Equal("http://127.0.0.1:7171"))
		})
	}
}

func TestParseRequest(t *testing.T) {
	base := func(repl ...string) string { return strings.NewReplacer(repl...).Replace(realRequest) }
	tests := []struct {
		name    string
		body    string
		wantErr string // substring of the error; empty means success
		check   func(g Gomega, r *Request)
	}{
		{name: "unknown fields ignored", body: base(`"model":`, `"extra":{"a":[1,2]},"other":null,"model":`),
			check: func(g Gomega, r *Request) { g.Expect(r.Model).To(Equal("linux")) }},
		{name: "tcUri as string", body: base(`"tcUri":null`, `"tcUri":"wss://lns:8887"`),
			check: func(g Gomega, r *Request) { g.Expect(r.TcURI).To(Equal("wss://lns:8887")) }},
		{name: "empty keys", body: base(`[3847268180]`, `[]`),
			check: func(g Gomega, r *Request) { g.Expect(r.Keys).To(BeEmpty()) }},
		{name: "several keys", body: base(`[3847268180]`, `[0,1,4294967295]`),
			check: func(g Gomega, r *Request) { g.Expect(r.Keys).To(Equal([]uint32{0, 1, 4294967295})) }},
		{name: "keys absent", body: base(`,"keys":[3847268180]`, ``),
			check: func(g Gomega, r *Request) { g.Expect(r.Keys).To(BeEmpty()) }},
		{name: "largest CRC", body: base(`"cupsCredCrc":2077607535`, `"cupsCredCrc":4294967295`),
			check: func(g Gomega, r *Request) { g.Expect(r.CupsCredCRC).To(Equal(uint32(4294967295))) }},
		{name: "router as plain hex", body: base(`11:22ff:fe33:4455`, `001122fffe334455`),
			check: func(g Gomega, r *Request) { g.Expect(r.Router.DeviceID()).To(Equal("001122FFFE334455")) }},
		{name: "router as dashed bytes", body: base(`11:22ff:fe33:4455`, `00-11-22-FF-FE-33-44-55`),
			check: func(g Gomega, r *Request) { g.Expect(r.Router.DeviceID()).To(Equal("001122FFFE334455")) }},
		{name: "router as integer", body: base(`"11:22ff:fe33:4455"`, `4823557480858709`),
			check: func(g Gomega, r *Request) { g.Expect(r.Router.DeviceID()).To(Equal("001122FFFE334455")) }},
		{name: "package absent", body: base(`"package":"v1",`, ``),
			check: func(g Gomega, r *Request) { g.Expect(r.Package).To(BeEmpty()) }},

		{name: "CRC above 32 bits", body: base(`"cupsCredCrc":2077607535`, `"cupsCredCrc":4294967296`), wantErr: `field "cupsCredCrc": want an unsigned 32-bit integer`},
		{name: "negative CRC", body: base(`"tcCredCrc":2077607535`, `"tcCredCrc":-1`), wantErr: `field "tcCredCrc": want an unsigned 32-bit integer, got a negative number`},
		{name: "fractional CRC", body: base(`"tcCredCrc":2077607535`, `"tcCredCrc":1.5`), wantErr: `field "tcCredCrc"`},
		{name: "CRC as string", body: base(`"cupsCredCrc":2077607535`, `"cupsCredCrc":"2077607535"`), wantErr: `field "cupsCredCrc": want an unsigned 32-bit integer, got a string`},
		{name: "CRC missing", body: base(`"cupsCredCrc":2077607535,`, ``), wantErr: `field "cupsCredCrc": required`},
		{name: "key above 32 bits", body: base(`[3847268180]`, `[1,4294967296]`), wantErr: `field "keys": item 1`},
		{name: "keys not a list", body: base(`[3847268180]`, `3847268180`), wantErr: `field "keys": want a list of 32-bit CRCs, got a number`},
		{name: "key as string", body: base(`[3847268180]`, `["x"]`), wantErr: `field "keys": item 0: want an unsigned 32-bit integer, got a string`},
		{name: "router missing", body: base(`"router":"11:22ff:fe33:4455",`, ``), wantErr: `field "router": required`},
		{name: "router not an EUI", body: base(`11:22ff:fe33:4455`, `station-7`), wantErr: `field "router": not an EUI`},
		{name: "router as object", body: base(`"11:22ff:fe33:4455"`, `{}`), wantErr: `field "router": want an EUI string`},
		{name: "model as number", body: base(`"linux"`, `7`), wantErr: `field "model": want a string or null, got a number`},
		{name: "cupsUri as list", body: base(`"http://127.0.0.1:7070"`, `[]`), wantErr: `field "cupsUri": want a string or null, got a list`},
		{name: "malformed JSON", body: realRequest[:40], wantErr: "malformed JSON"},
		{name: "not an object", body: `[1,2,3]`, wantErr: "the body must be a JSON object"},
		{name: "empty body", body: ``, wantErr: "malformed JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			req, err := ParseRequest([]byte(tt.body))
			if tt.wantErr != "" {
				g.Expect(err).To(HaveOccurred())
				g.Expect(IsRequestError(err)).To(BeTrue())
				g.Expect(err.Error()).To(ContainSubstring(tt.wantErr))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			tt.check(g, req)
		})
	}
}
