package cups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Limits of the response segments, from the length prefixes Basics Station
// reads (src/cups.c): 1 byte for each URI, 2 bytes for each credential blob,
// 4 bytes for the signature and the update; the station refuses a signature
// segment outside 8..132 bytes (4-byte key CRC plus a DER ECDSA P-256
// signature of at most 128 bytes).
const (
	MaxURILen        = math.MaxUint8
	MaxCredLen       = math.MaxUint16
	MaxUpdateLen     = math.MaxUint32
	MinSignatureLen  = 8 - 4
	MaxSignatureLen  = 132 - 4
	noChangeBodySize = 1 + 1 + 2 + 2 + 4 + 4
)

// noChangeBody is the response for "nothing to change": six empty segments.
var noChangeBody = make([]byte, noChangeBodySize)

// Blob is a segment whose bytes are streamed: Size is exact and known before
// the first byte is written.
type Blob struct {
	// R yields exactly Size bytes.
	R io.Reader
	// Size is the number of bytes R yields.
	Size int64
}

// Response is an update-info answer: the six segments of DESIGN.md section 3.
// The zero value is "nothing to change".
type Response struct {
	// CupsURI is the new cups.uri, empty for none.
	CupsURI string
	// TcURI is the new tc.uri, empty for none.
	TcURI string
	// CupsCred is the new CUPS credential blob, Size 0 for none.
	CupsCred Blob
	// TcCred is the new LNS credential blob, Size 0 for none.
	TcCred Blob
	// KeyCRC is the CRC32 of the sig-N.key that verifies Signature; the
	// station only logs it.
	KeyCRC uint32
	// Signature is the DER ECDSA signature of Update, nil for none.
	Signature []byte
	// Update is the update data, Size 0 for none.
	Update Blob
}

// ErrShortBlob is returned by WriteTo when a blob reader ends before its
// declared size; the response is then cut short and must be aborted.
var ErrShortBlob = errors.New("blob shorter than its declared size")

// Len validates the segments against the station's limits and returns the
// exact length of the encoded body, the Content-Length.
func (r *Response) Len() (int64, error) {
	if len(r.CupsURI) > MaxURILen {
		return 0, fmt.Errorf("cupsUri is %d bytes, the station reads at most %d", len(r.CupsURI), MaxURILen)
	}
	if len(r.TcURI) > MaxURILen {
		return 0, fmt.Errorf("tcUri is %d bytes, the station reads at most %d", len(r.TcURI), MaxURILen)
	}
	for _, c := range []struct {
		name string
		b    Blob
	}{{"cupsCred", r.CupsCred}, {"tcCred", r.TcCred}} {
		if c.b.Size < 0 || c.b.Size > MaxCredLen {
			return 0, fmt.Errorf("%s is %d bytes, the station reads at most %d", c.name, c.b.Size, MaxCredLen)
		}
		if c.b.Size > 0 && c.b.R == nil {
			return 0, fmt.Errorf("%s has a size but no reader", c.name)
		}
	}
	if r.Signature != nil && (len(r.Signature) < MinSignatureLen || len(r.Signature) > MaxSignatureLen) {
		return 0, fmt.Errorf("signature is %d bytes, the station accepts %d to %d", len(r.Signature), MinSignatureLen, MaxSignatureLen)
	}
	if r.Update.Size < 0 || r.Update.Size > MaxUpdateLen {
		return 0, fmt.Errorf("update is %d bytes, the station reads at most %d", r.Update.Size, int64(MaxUpdateLen))
	}
	if r.Update.Size > 0 && r.Update.R == nil {
		return 0, errors.New("update has a size but no reader")
	}
	if r.Signature != nil && r.Update.Size == 0 {
		return 0, errors.New("signature without update")
	}
	n := int64(noChangeBodySize + len(r.CupsURI) + len(r.TcURI))
	n += r.CupsCred.Size + r.TcCred.Size + r.Update.Size
	if r.Signature != nil {
		n += 4 + int64(len(r.Signature))
	}
	return n, nil
}

// IsNoChange reports whether r is "nothing to change".
func (r *Response) IsNoChange() bool {
	return r.CupsURI == "" && r.TcURI == "" && r.CupsCred.Size == 0 && r.TcCred.Size == 0 &&
		r.Signature == nil && r.Update.Size == 0
}

// WriteTo writes the encoded body to w: the small parts from memory, the
// blobs streamed from their readers. It returns ErrShortBlob (wrapped) when
// a reader yields fewer bytes than its Size, having then written less than
// Len; callers must abort the connection rather than finish the response.
func (r *Response) WriteTo(w io.Writer) (int64, error) {
	if _, err := r.Len(); err != nil {
		return 0, err
	}
	if r.IsNoChange() {
		n, err := w.Write(noChangeBody)
		return int64(n), err
	}
	cw := &countWriter{w: w}
	// cupsUri and tcUri go out in one write: the station wants both in its
	// first read.
	head := make([]byte, 0, 2+len(r.CupsURI)+len(r.TcURI)+2)
	head = append(head, byte(len(r.CupsURI)))
	head = append(head, r.CupsURI...)
	head = append(head, byte(len(r.TcURI)))
	head = append(head, r.TcURI...)
	head = binary.LittleEndian.AppendUint16(head, uint16(r.CupsCred.Size))
	if err := cw.write(head); err != nil {
		return cw.n, err
	}
	if err := cw.stream("cupsCred", r.CupsCred); err != nil {
		return cw.n, err
	}
	if err := cw.write(binary.LittleEndian.AppendUint16(nil, uint16(r.TcCred.Size))); err != nil {
		return cw.n, err
	}
	if err := cw.stream("tcCred", r.TcCred); err != nil {
		return cw.n, err
	}
	var sig []byte
	if r.Signature != nil {
		sig = make([]byte, 0, 8+len(r.Signature)+4)
		sig = binary.LittleEndian.AppendUint32(sig, uint32(4+len(r.Signature)))
		sig = binary.LittleEndian.AppendUint32(sig, r.KeyCRC)
		sig = append(sig, r.Signature...)
	} else {
		sig = binary.LittleEndian.AppendUint32(make([]byte, 0, 8), 0)
	}
	sig = binary.LittleEndian.AppendUint32(sig, uint32(r.Update.Size))
	if err := cw.write(sig); err != nil {
		return cw.n, err
	}
	if err := cw.stream("update", r.Update); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return err
}

func (c *countWriter) stream(name string, b Blob) error {
	if b.Size == 0 {
		return nil
	}
	n, err := io.Copy(c.w, io.LimitReader(b.R, b.Size))
	c.n += n
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	if n != b.Size {
		return fmt.Errorf("stream %s: %w (%d of %d bytes)", name, ErrShortBlob, n, b.Size)
	}
	return nil
}
