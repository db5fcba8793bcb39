package stationsim

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/signing"
)

// The vectors in testdata were captured from a real Basics Station 2.0.6
// (copied from shared/testdata/basicstation-2.0.6).
const vectorEUI = 0x001122FFFE334455

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vectorState(t testing.TB) State {
	return State{
		EUI:     vectorEUI,
		CUPSURI: "http://127.0.0.1:7171",
		Package: "v1\n", // version.txt as written by echo; the request trims it
		SigKeys: [][]byte{readTestdata(t, "sig-0.key")},
	}
}

func TestFormatID6(t *testing.T) {
	tests := []struct {
		eui  uint64
		want string
	}{
		{0x001122FFFE334455, "11:22ff:fe33:4455"},
		{0x0000000000000000, "::0"},
		{0x0000000000000001, "::1"},
		{0x00000000000a000b, "::a:b"},
		{0x0001000000000000, "1::"},
		{0x000f000000000001, "f::1"},
		{0x0001000200000000, "1:2::"},
		{0x1000000000000000, "1000::"},
		{0x0000000100000000, "0:1::"}, // encId6 tries the leading-zero rule first
		{0x0000000100020000, "0:1:2:0"},
		{0xFFFFFFFFFFFFFFFF, "ffff:ffff:ffff:ffff"},
		{0x0001000000020003, "1:0:2:3"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			NewWithT(t).Expect(FormatID6(tt.eui)).To(Equal(tt.want))
		})
	}
}

func TestCredCRC(t *testing.T) {
	tests := []struct {
		name string
		set  CredSet
		want uint32
	}{
		{name: "no files at all", set: CredSet{}, want: 2077607535},
		{name: "empty files count as missing", set: CredSet{Trust: []byte{}, Cert: []byte{}, Key: []byte{}}, want: 2077607535},
		{name: "twelve zero bytes, the station's stand-in", set: CredSet{Trust: []byte{0, 0, 0, 0}, Cert: []byte{0, 0, 0, 0}, Key: []byte{0, 0, 0, 0}}, want: 2077607535},
		{name: "a trust file changes it", set: CredSet{Trust: []byte("x")}, want: crcOf([]byte("x\x00\x00\x00\x00\x00\x00\x00\x00"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(tt.set.CRC()).To(Equal(tt.want))
		})
	}
}

func TestRequestBodyGolden(t *testing.T) {
	g := NewWithT(t)
	st := vectorState(t)
	g.Expect(string(st.RequestBody())).To(Equal(string(readTestdata(t, "request-package-v1.json"))))
	st.Package = "2.0.7\n"
	g.Expect(string(st.RequestBody())).To(Equal(string(readTestdata(t, "request-package-2.0.7.json"))))

	// No keys: "keys":[]; a tc.uri: a string; a missing sig-1.key ends the list.
	st.SigKeys = nil
	st.TCURI = "ws://127.0.0.1:6090"
	g.Expect(string(st.RequestBody())).To(HaveSuffix(`"package":"2.0.7","keys":[]}`))
	g.Expect(string(st.RequestBody())).To(ContainSubstring(`"tcUri":"ws://127.0.0.1:6090",`))
	st.SigKeys = [][]byte{readTestdata(t, "sig-0.key"), nil, []byte("unreachable")}
	g.Expect(st.KeyCRCs()).To(Equal([]uint32{4101823099}))
	st.Package = "quote\" back\\ tab\t"
	g.Expect(string(st.RequestBody())).To(ContainSubstring(`"package":"quote\" back\\ tab"`))
}

func TestUpdateScript(t *testing.T) {
	g := NewWithT(t)
	fw, err := UpdateScript("2.0.7", 0)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fw).To(Equal(readTestdata(t, "update.bin")))

	base, err := UpdateScript("3.1.4-rc1", 0)
	g.Expect(err).NotTo(HaveOccurred())
	for _, size := range []int64{int64(len(base)) + 1, int64(len(base)) + 2, 1000, 100_000} {
		fw, err := UpdateScript("3.1.4-rc1", size)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(int64(len(fw))).To(Equal(size))
		vs := &versionScanner{}
		// Feed in odd-sized pieces to exercise line assembly.
		for i := 0; i < len(fw); i += 7 {
			_, _ = vs.Write(fw[i:min(i+7, len(fw))])
		}
		vs.endLine()
		g.Expect(vs.found).To(BeTrue())
		g.Expect(vs.version).To(Equal("3.1.4-rc1"))
	}
	_, err = UpdateScript(`1"; rm -rf /`, 0)
	g.Expect(err).To(MatchError(ContainSubstring("free of quotes")))
}

func TestParseResponseGolden(t *testing.T) {
	g := NewWithT(t)
	body := readTestdata(t, "response-update.bin")
	g.Expect(body).To(HaveLen(219))
	resp, err := ParseResponse(body)
	g.Expect(err).NotTo(HaveOccurred())
	update := readTestdata(t, "update.bin")
	sum := sha512.Sum512(update)
	g.Expect(resp.CUPSURI).To(BeEmpty())
	g.Expect(resp.TCURI).To(BeEmpty())
	g.Expect(resp.CUPSCred).To(BeNil())
	g.Expect(resp.TCCred).To(BeNil())
	g.Expect(resp.SigKeyCRC).To(Equal(uint32(4101823099)))
	g.Expect(resp.Signature).To(Equal(readTestdata(t, "signature.der")))
	g.Expect(resp.UpdateSize).To(Equal(int64(len(update))))
	g.Expect(resp.UpdateSHA512).To(Equal(sum[:]))
	g.Expect(resp.UpdateVersion).To(Equal("2.0.7"))
	g.Expect(resp.Complete).To(BeTrue())
	g.Expect(resp.TrailingBytes).To(BeZero())
	g.Expect(resp.BytesRead).To(Equal(int64(219)))
	g.Expect(resp.NothingToChange()).To(BeFalse())
	pub, err := signing.ParseSigKey(readTestdata(t, "sig-0.key"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(signing.VerifyDigest(pub, resp.UpdateSHA512, resp.Signature)).To(Succeed())

	resp, err = ParseResponse(readTestdata(t, "response-nochange.bin"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.NothingToChange()).To(BeTrue())
	g.Expect(resp.BytesRead).To(Equal(int64(14)))
}

// body builds a response body from its parts (the test's own encoder).
func body(cupsURI, tcURI string, cupsCred, tcCred []byte, sig []byte, update []byte) []byte {
	var b bytes.Buffer
	b.WriteByte(byte(len(cupsURI)))
	b.WriteString(cupsURI)
	b.WriteByte(byte(len(tcURI)))
	b.WriteString(tcURI)
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(cupsCred)))
	b.Write(cupsCred)
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(tcCred)))
	b.Write(tcCred)
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(sig)))
	b.Write(sig)
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(update)))
	b.Write(update)
	return b.Bytes()
}

func TestParseResponseViolations(t *testing.T) {
	nochange := make([]byte, 14)
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	tests := []struct {
		name       string
		body       []byte
		firstChunk int // 0: whole body
		wantErr    string
		check      func(g Gomega, r *Response)
	}{
		{name: "empty body", body: nil, wantErr: "first read holds 0 bytes"},
		{name: "13 of 14 zero bytes", body: nochange[:13], wantErr: "unexpected end of data in update segment length"},
		{name: "two bytes only", body: nochange[:2], wantErr: "one more byte"},
		{name: "URIs split from the first read", body: body("http://127.0.0.1:1", "ws://x:1", nil, nil, nil, nil), firstChunk: 12, wantErr: "do not fit in the station's first read"},
		{name: "URIs fit but the next byte does not", body: body("http://a:1", "", nil, nil, nil, nil), firstChunk: 12, wantErr: "one more byte"},
		{name: "URIs and one byte in the first read are enough", body: body("http://a:1", "ws://b:2", nil, nil, nil, nil), firstChunk: 21,
			check: func(g Gomega, r *Response) {
				g.Expect(r.CUPSURI).To(Equal("http://a:1"))
				g.Expect(r.TCURI).To(Equal("ws://b:2"))
			}},
		{name: "signature segment of 7 bytes", body: append(append(make([]byte, 6), le32(7)...), make([]byte, 11)...), wantErr: "outside the station's 8..132"},
		{name: "signature segment of 133 bytes", body: append(append(make([]byte, 6), le32(133)...), make([]byte, 137)...), wantErr: "outside the station's 8..132"},
		{name: "signature segment of 132 bytes is accepted", body: body("", "", nil, nil, make([]byte, 132), nil),
			check: func(g Gomega, r *Response) { g.Expect(r.Signature).To(HaveLen(128)) }},
		{name: "update length of 2 GiB", body: append(make([]byte, 10), le32(1<<31)...), wantErr: "not allowed"},
		{name: "update cut short", body: body("", "", nil, nil, nil, []byte("abcdef"))[:17], wantErr: "got 3 of 6 bytes",
			check: func(g Gomega, r *Response) { g.Expect(r.ConfigCommitted).To(BeTrue()) }},
		{name: "cred segment cut short", body: append([]byte{0, 0, 10, 0}, 1, 2), wantErr: "cupsCred segment: got 2 of 10",
			check: func(g Gomega, r *Response) { g.Expect(r.ConfigCommitted).To(BeFalse()) }},
		{name: "trailing bytes after the update are counted", body: append(body("", "", nil, nil, nil, []byte("x")), 9, 9),
			check: func(g Gomega, r *Response) {
				g.Expect(r.Complete).To(BeTrue())
				g.Expect(r.TrailingBytes).To(Equal(int64(2)))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			first := len(tt.body)
			if tt.firstChunk > 0 {
				first = tt.firstChunk
			}
			r, err := readResponse(tt.body[:first], bytes.NewReader(tt.body[first:]), nil)
			if tt.wantErr != "" {
				var pe *ProtocolError
				g.Expect(errors.As(err, &pe)).To(BeTrue(), "err = %v", err)
				g.Expect(err.Error()).To(ContainSubstring(tt.wantErr))
			} else {
				g.Expect(err).NotTo(HaveOccurred())
			}
			if tt.check != nil {
				tt.check(g, r)
			}
		})
	}
}

func TestParseCredBlob(t *testing.T) {
	trust := append([]byte{0x30, 0x03}, 1, 2, 3)
	cert := append([]byte{0x30, 0x82, 0x00, 0x02}, 7, 8)
	key := append([]byte{0x30, 0x01}, 9)
	token := []byte("Authorization: Bearer abc\r\n")
	tests := []struct {
		name    string
		blob    []byte
		want    CredSet
		wantErr string
	}{
		{name: "trust, cert, key", blob: concat(trust, cert, key), want: CredSet{Trust: trust, Cert: cert, Key: key}},
		{name: "trust, no cert, token", blob: concat(trust, []byte{0, 0, 0, 0}, token), want: CredSet{Trust: trust, Cert: []byte{}, Key: token}},
		{name: "trust only", blob: concat(trust, []byte{0, 0, 0, 0}), want: CredSet{Trust: trust, Cert: []byte{}, Key: []byte{}}},
		{name: "not a SEQUENCE", blob: []byte{1, 2, 3}, wantErr: "ASN.1 SEQUENCE expected"},
		{name: "key longer than blob", blob: concat(trust, cert, []byte{0x30, 0x10, 1}), wantErr: "do not align"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseCredBlob(tt.blob)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func crcOf(b []byte) uint32 { return crcCred(b[:1], b[1:5], b[5:]) }

// FuzzParseResponse: arbitrary bodies and first-read sizes never panic, and
// a complete parse accounts for every byte.
func FuzzParseResponse(f *testing.F) {
	f.Add(readTestdata(f, "response-update.bin"), uint16(0))
	f.Add(readTestdata(f, "response-nochange.bin"), uint16(3))
	f.Add(body("http://a:1", "ws://b:2", []byte{0x30, 0, 0, 0, 0, 0}, nil, make([]byte, 8), []byte(`echo "1" > "$STATION_HOME/version.txt"`)), uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, first uint16) {
		n := len(b)
		if first > 0 && int(first) < n {
			n = int(first)
		}
		r, err := readResponse(b[:n], bytes.NewReader(b[n:]), nil)
		if r == nil {
			t.Fatal("nil response")
		}
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("non-protocol error from an in-memory body: %v", err)
			}
			return
		}
		if r.BytesRead != int64(len(b)) {
			t.Fatalf("read %d of %d bytes", r.BytesRead, len(b))
		}
		if r.CUPSCred != nil {
			_, _ = ParseCredBlob(r.CUPSCred)
		}
		if strings.Contains(r.UpdateVersion, "\n") {
			t.Fatalf("version with newline: %q", r.UpdateVersion)
		}
	})
}
