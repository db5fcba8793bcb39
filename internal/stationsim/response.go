package stationsim

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Station limits, from basicstation 2.0.6.
const (
	// BufferSize is CUPS_BUFSZ (src/s2conf.h, default "8KB"): the station's
	// HTTP buffer. It holds "host:port\0", the response header and the first
	// chunk of the body, so both URI segments must fit in what is left.
	BufferSize = 8 * 1024
	// MinSignatureSegment and MaxSignatureSegment bound the signature
	// segment (4-byte key CRC + DER): cups.c refuses lengths outside 8 to
	// sizeof(signature)+4 = 128+4.
	MinSignatureSegment = 8
	MaxSignatureSegment = 128 + 4
	// maxSegment: cups.c refuses 4-byte segment lengths that are negative as
	// an int (2 GiB and more).
	maxSegment = 1<<31 - 1
	// maxURILen is MAX_URI_LEN (src/s2conf.h): the station later refuses to
	// read back a saved URI of this length or more.
	maxURILen = 128
)

// ProtocolError is a response the station would refuse as malformed: it
// logs "CUPS Protocol error" (or fails the HTTP exchange) and counts a
// failure. Use errors.As to detect it.
type ProtocolError struct {
	// Msg says what was wrong, in the terms of the wire format.
	Msg string
}

func (e *ProtocolError) Error() string { return "CUPS protocol violation: " + e.Msg }

func protoErr(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// Response is an update-info response body as the station parsed it.
type Response struct {
	// CUPSURI and TCURI are the new URIs; "" when the segment was empty
	// (no change).
	CUPSURI, TCURI string
	// CUPSCred and TCCred are the credential blobs; nil when empty.
	CUPSCred, TCCred []byte
	// SigKeyCRC is the key CRC in the signature segment (only logged by the
	// station); Signature the DER signature, nil when no signature came.
	SigKeyCRC uint32
	Signature []byte
	// UpdateSize is the length of the update segment; UpdateSHA512 the
	// SHA-512 of its data (nil when UpdateSize is 0).
	UpdateSize   int64
	UpdateSHA512 []byte
	// UpdateVersion is the version the update script writes to version.txt
	// ("" when it has no such line); HasVersionLine tells them apart.
	UpdateVersion  string
	HasVersionLine bool
	// ConfigCommitted is whether the station committed URI and credential
	// changes: it does so when the update segment starts (non-empty) or
	// when the body is complete, so a body cut short inside the update
	// still changes URIs and credentials.
	ConfigCommitted bool
	// Complete is whether all six segments were read.
	Complete bool
	// TrailingBytes counts bytes after the update segment within the
	// Content-Length. The station stops reading there; they are a server bug.
	TrailingBytes int64
	// BytesRead is the number of body bytes read.
	BytesRead int64
}

// NothingToChange reports whether the response asks for no change at all
// (the 14 zero bytes).
func (r *Response) NothingToChange() bool {
	return r.Complete && r.CUPSURI == "" && r.TCURI == "" && r.CUPSCred == nil && r.TCCred == nil &&
		r.Signature == nil && r.UpdateSize == 0
}

// ParseResponse parses a complete response body as the station does, the
// first min(len(body), BufferSize) bytes forming its first read. It holds
// the update data only long enough to hash it. For tests, fuzzing and tools;
// Station.Poll parses the HTTP stream itself.
func ParseResponse(body []byte) (*Response, error) {
	first := min(len(body), BufferSize)
	return readResponse(body[:first], bytes.NewReader(body[first:]), nil)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readResponse is the station's response state machine (cups_update_info in
// basicstation src/cups.c). first is the first chunk the station reads; rest
// the remainder of the body, ending at the Content-Length. Update data is
// hashed, scanned for the version line and copied to openSink's writer.
func readResponse(first []byte, rest io.Reader, openSink func(size int64) io.Writer) (*Response, error) {
	resp := &Response{}
	// Both URI segments and one more byte must be in the first chunk: the
	// station indexes the buffer directly and needs a byte for a '\0'.
	if len(first) < 2 {
		resp.BytesRead = int64(len(first))
		return resp, protoErr("first read holds %d bytes; the station needs both URI length bytes in it (\"nothing to change\" is 14 zero bytes)", len(first))
	}
	cupsLen := int(first[0])
	if 1+cupsLen >= len(first) {
		resp.BytesRead = int64(len(first))
		return resp, protoErr("cupsUri segment (%d bytes) and the tcUri length do not fit in the station's first read of %d bytes", cupsLen, len(first))
	}
	tcLen := int(first[1+cupsLen])
	pos := 2 + cupsLen + tcLen
	if pos+1 > len(first) {
		resp.BytesRead = int64(len(first))
		return resp, protoErr("both URI segments (%d bytes) and one more byte must arrive in the station's first read, which held %d bytes", pos, len(first))
	}
	resp.CUPSURI = string(first[1 : 1+cupsLen])
	resp.TCURI = string(first[2+cupsLen : pos])

	cr := &countingReader{r: io.MultiReader(bytes.NewReader(first[pos:]), rest)}
	defer func() { resp.BytesRead = int64(pos) + cr.n }()

	readFull := func(what string, b []byte) error {
		n, err := io.ReadFull(cr, b)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return protoErr("unexpected end of data in %s: got %d of %d bytes", what, n, len(b))
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", what, err)
		}
		return nil
	}
	var lenBuf [4]byte
	readLen := func(what string, width int) (int64, error) {
		if err := readFull(what+" length", lenBuf[:width]); err != nil {
			return 0, err
		}
		var v uint32
		if width == 2 {
			v = uint32(binary.LittleEndian.Uint16(lenBuf[:2]))
		} else {
			v = binary.LittleEndian.Uint32(lenBuf[:4])
		}
		if v > maxSegment {
			return 0, protoErr("%s length 0x%08x not allowed (must be < 2 GiB)", what, v)
		}
		return int64(v), nil
	}

	for _, seg := range []struct {
		name string
		dst  *[]byte
	}{{"cupsCred segment", &resp.CUPSCred}, {"tcCred segment", &resp.TCCred}} {
		n, err := readLen(seg.name, 2)
		if err != nil {
			return resp, err
		}
		if n > 0 {
			b := make([]byte, n)
			if err := readFull(seg.name, b); err != nil {
				return resp, err
			}
			*seg.dst = b
		}
	}

	n, err := readLen("signature segment", 4)
	if err != nil {
		return resp, err
	}
	if n > 0 {
		if n < MinSignatureSegment || n > MaxSignatureSegment {
			return resp, protoErr("signature segment length %d outside the station's %d..%d (4-byte key CRC + DER signature)", n, MinSignatureSegment, MaxSignatureSegment)
		}
		b := make([]byte, n)
		if err := readFull("signature segment", b); err != nil {
			return resp, err
		}
		resp.SigKeyCRC = binary.LittleEndian.Uint32(b[:4])
		resp.Signature = b[4:]
	}

	n, err = readLen("update segment", 4)
	if err != nil {
		return resp, err
	}
	resp.ConfigCommitted = true // sys_commitConfigUpdate: at update start or at the end
	if n > 0 {
		h := sha512.New()
		vs := &versionScanner{}
		w := io.MultiWriter(h, vs)
		if openSink != nil {
			if sink := openSink(n); sink != nil {
				w = io.MultiWriter(h, vs, sink)
			}
		}
		got, err := io.CopyN(w, cr, n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return resp, protoErr("unexpected end of data in update segment: got %d of %d bytes", got, n)
			}
			return resp, fmt.Errorf("read update segment (%d of %d bytes): %w", got, n, err)
		}
		vs.endLine()
		resp.UpdateSize = n
		resp.UpdateSHA512 = h.Sum(nil)
		resp.UpdateVersion, resp.HasVersionLine = vs.version, vs.found
	}
	resp.Complete = true
	trailing, err := io.Copy(io.Discard, cr)
	resp.TrailingBytes = trailing
	if err != nil {
		return resp, fmt.Errorf("read past update segment: %w", err)
	}
	return resp, nil
}
