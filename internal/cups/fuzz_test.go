package cups

import (
	"encoding/json"
	"os"
	"testing"
)

// FuzzParseRequest: any body either parses or gives a *RequestError, never a
// panic; what parses survives a round trip through its JSON form.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(realRequest))
	for _, name := range []string{"request-package-v1.json", "request-package-2.0.7.json"} {
		if b, err := os.ReadFile("testdata/" + name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"router":"::1","cupsCredCrc":0,"tcCredCrc":4294967295,"keys":[]}`))
	f.Add([]byte(`{"router":1,"cupsCredCrc":-1,"tcCredCrc":1e3,"keys":null,"tcUri":null}`))
	f.Add([]byte(`{"router":"00-11-22-FF-FE-33-44-55","cupsCredCrc":1,"tcCredCrc":2,"keys":["x"]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"router":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseRequest(body)
		if err != nil {
			if !IsRequestError(err) {
				t.Fatalf("error %v is not a *RequestError", err)
			}
			return
		}
		again, err := ParseRequest(encodeRequest(req))
		if err != nil {
			t.Fatalf("re-encoded request does not parse: %v", err)
		}
		if again.Router != req.Router || again.CupsCredCRC != req.CupsCredCRC || again.TcCredCRC != req.TcCredCRC ||
			again.Package != req.Package || len(again.Keys) != len(req.Keys) {
			t.Fatalf("round trip changed the request: %+v -> %+v", req, again)
		}
	})
}

// encodeRequest writes req as a station would.
func encodeRequest(r *Request) []byte {
	var tc any
	if r.TcURI != "" {
		tc = r.TcURI
	}
	b, _ := json.Marshal(map[string]any{
		"router": r.Router.String(), "cupsUri": r.CupsURI, "tcUri": tc,
		"cupsCredCrc": r.CupsCredCRC, "tcCredCrc": r.TcCredCRC,
		"station": r.Station, "model": r.Model, "package": r.Package, "keys": r.Keys,
	})
	return b
}

// FuzzParseEUI: every accepted form names the same EUI as its ID6 and
// plain-hex renderings.
func FuzzParseEUI(f *testing.F) {
	for _, s := range []string{"11:22ff:fe33:4455", "::", "::1", "1::", "1::2", "a:b:c:d", "001122FFFE334455",
		"00-11-22-FF-FE-33-44-55", "00:11:22:ff:fe:33:44:55", "1:2::3:4", ":::", "-", "0-0-0-0-0-0-0-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEUI(s)
		if err != nil {
			return
		}
		for _, form := range []string{e.String(), e.DeviceID()} {
			back, err := ParseEUI(form)
			if err != nil || back != e {
				t.Fatalf("%q -> %016X, but its form %q -> %016X, %v", s, uint64(e), form, uint64(back), err)
			}
		}
	})
}

// FuzzFastPaths: the parser's fast paths for plain strings and CRC lists
// agree with encoding/json wherever they accept an input.
func FuzzFastPaths(f *testing.F) {
	for _, s := range []string{`"linux"`, `"a\"b"`, `"\u00e9"`, `[]`, `[1, 2,3]`, `[4294967295]`, `[4294967296]`, `[ ]`, `[01]`, `[-1]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return // the fast paths only ever see validated JSON
		}
		if s, ok := plainString(raw); ok {
			var want string
			if err := json.Unmarshal(raw, &want); err != nil || want != s {
				t.Fatalf("plainString(%q) = %q, encoding/json says %q, %v", raw, s, want, err)
			}
		}
		if keys, ok := plainUintList(raw); ok {
			var want []uint32
			if err := json.Unmarshal(raw, &want); err != nil || len(want) != len(keys) {
				t.Fatalf("plainUintList(%q) = %v, encoding/json says %v, %v", raw, keys, want, err)
			}
			for i := range keys {
				if keys[i] != want[i] {
					t.Fatalf("plainUintList(%q) = %v, encoding/json says %v", raw, keys, want)
				}
			}
		}
	})
}
