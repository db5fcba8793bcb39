package cups

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatalf("read vector: %v", err)
	}
	return b
}

func TestResponseGolden(t *testing.T) {
	sig := readVector(t, "signature.der")
	upd := readVector(t, "update.bin")
	tests := []struct {
		name string
		resp Response
		want []byte
	}{
		{"nothing to change is 14 zero bytes", Response{}, readVector(t, "response-nochange.bin")},
		{"signed update the real station verified", Response{
			KeyCRC: 4101823099, Signature: sig,
			Update: Blob{R: bytes.NewReader(upd), Size: int64(len(upd))},
		}, readVector(t, "response-update.bin")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			n, err := tt.resp.Len()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(n).To(BeEquivalentTo(len(tt.want)))
			var buf bytes.Buffer
			w, err := tt.resp.WriteTo(&buf)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(w).To(Equal(n))
			g.Expect(buf.Bytes()).To(Equal(tt.want))
		})
	}
}

func TestResponseSegments(t *testing.T) {
	g := NewWithT(t)
	cups, tc := "https://cups.example:443", "wss://lns.example:8887"
	cc, tcc := []byte("CUPS-CRED"), bytes.Repeat([]byte{0xAB}, 300)
	resp := Response{
		CupsURI: cups, TcURI: tc,
		CupsCred: Blob{R: bytes.NewReader(cc), Size: int64(len(cc))},
		TcCred:   Blob{R: bytes.NewReader(tcc), Size: int64(len(tcc))},
	}
	var buf bytes.Buffer
	_, err := resp.WriteTo(&buf)
	g.Expect(err).NotTo(HaveOccurred())
	var want []byte
	want = append(want, byte(len(cups)))
	want = append(want, cups...)
	want = append(want, byte(len(tc)))
	want = append(want, tc...)
	want = append(want, byte(len(cc)), 0)
	want = append(want, cc...)
	want = append(want, 300&0xFF, 300>>8) // little-endian
	want = append(want, tcc...)
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 0)
	g.Expect(buf.Bytes()).To(Equal(want))
	n, _ := resp.Len()
	g.Expect(n).To(BeEquivalentTo(len(want)))
}

// oneByteWriter records the size of each write.
type recordingWriter struct {
	bytes.Buffer
	writes []int
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.Buffer.Write(p)
}

func TestResponseURIsInFirstWrite(t *testing.T) {
	g := NewWithT(t)
	resp := Response{CupsURI: strings.Repeat("c", 255), TcURI: strings.Repeat("t", 255)}
	w := &recordingWriter{}
	_, err := resp.WriteTo(w)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.writes[0]).To(BeNumerically(">=", 1+255+1+255), "both URI segments must arrive in the station's first read")
}

func TestResponseLimits(t *testing.T) {
	tests := []struct {
		name string
		resp Response
		want string
	}{
		{"cupsUri too long", Response{CupsURI: strings.Repeat("x", 256)}, "cupsUri is 256 bytes"},
		{"tcUri too long", Response{TcURI: strings.Repeat("x", 256)}, "tcUri is 256 bytes"},
		{"credential too long", Response{CupsCred: Blob{R: strings.NewReader(""), Size: 65536}}, "cupsCred is 65536 bytes"},
		{"signature too short", Response{Signature: []byte{1, 2, 3}, Update: Blob{R: strings.NewReader("x"), Size: 1}}, "signature is 3 bytes"},
		{"signature too long", Response{Signature: make([]byte, 129), Update: Blob{R: strings.NewReader("x"), Size: 1}}, "signature is 129 bytes"},
		{"signature without update", Response{Signature: make([]byte, 70)}, "signature without update"},
		{"update too long", Response{Update: Blob{R: strings.NewReader(""), Size: 1 << 32}}, "update is 4294967296 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := tt.resp.Len()
			g.Expect(err).To(MatchError(ContainSubstring(tt.want)))
			var buf bytes.Buffer
			_, err = tt.resp.WriteTo(&buf)
			g.Expect(err).To(HaveOccurred())
			g.Expect(buf.Len()).To(BeZero(), "nothing is written for an invalid response")
		})
	}
}

func TestResponseShortBlob(t *testing.T) {
	g := NewWithT(t)
	resp := Response{Update: Blob{R: strings.NewReader("only 10 b."), Size: 100}}
	var buf bytes.Buffer
	n, err := resp.WriteTo(&buf)
	g.Expect(errors.Is(err, ErrShortBlob)).To(BeTrue())
	g.Expect(n).To(BeEquivalentTo(14 + 10))

	failing := Response{Update: Blob{R: io.MultiReader(strings.NewReader("abc"), iotestErrReader{}), Size: 100}}
	_, err = failing.WriteTo(&buf)
	g.Expect(err).To(MatchError(ContainSubstring("stream update")))
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("store connection reset") }
