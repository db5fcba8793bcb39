package cups

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// DefaultBodyLimit is the largest request body accepted by default: the Azure
// LoRaWAN starter kit refuses bodies over 2048 bytes, and a real station's
// request is about 230 bytes.
const DefaultBodyLimit = 2048

// Request is a parsed POST /update-info body (DESIGN.md section 3).
type Request struct {
	// Router is the station's EUI.
	Router EUI
	// CupsURI is the station's current cups.uri.
	CupsURI string
	// TcURI is the station's current tc.uri; empty when the station sent null
	// (it has no tc.uri).
	TcURI string
	// CupsCredCRC is the CRC32 of the station's current CUPS credential set.
	CupsCredCRC uint32
	// TcCredCRC is the CRC32 of the station's current LNS credential set.
	TcCredCRC uint32
	// Station is the station's version string ("2.0.6(linux/std) ...").
	Station string
	// Model is the station's platform ("linux").
	Model string
	// Package is the station's version.txt, trailing white space trimmed.
	Package string
	// Keys are the CRC32s of the station's sig-N.key files, in file order.
	Keys []uint32
}

// RequestError is a request the server refuses with 400 Bad Request. Its
// message says what is wrong in words a station operator understands and
// never echoes more than a short excerpt of the input.
type RequestError struct {
	// Field is the JSON field at fault, empty for the body as a whole.
	Field string
	// Msg says what is wrong.
	Msg string
}

// Error implements error.
func (e *RequestError) Error() string {
	if e.Field == "" {
		return "bad update-info request: " + e.Msg
	}
	return fmt.Sprintf("bad update-info request: field %q: %s", e.Field, e.Msg)
}

// IsRequestError reports whether err is (or wraps) a *RequestError.
func IsRequestError(err error) bool {
	var re *RequestError
	return errors.As(err, &re)
}

// wireRequest holds the raw JSON of each known field; unknown fields are
// ignored by encoding/json. A field that is absent stays nil; JSON null is
// the 4 bytes "null".
type wireRequest struct {
	Router      json.RawMessage `json:"router"`
	CupsURI     json.RawMessage `json:"cupsUri"`
	TcURI       json.RawMessage `json:"tcUri"`
	CupsCredCrc json.RawMessage `json:"cupsCredCrc"`
	TcCredCrc   json.RawMessage `json:"tcCredCrc"`
	Station     json.RawMessage `json:"station"`
	Model       json.RawMessage `json:"model"`
	Package     json.RawMessage `json:"package"`
	Keys        json.RawMessage `json:"keys"`
}

var jsonNull = []byte("null")

// ParseRequest parses an update-info body. router, cupsCredCrc and tcCredCrc
// are required; the string fields may be absent or null (read as empty);
// keys may be absent or null (no keys). Unknown fields are ignored. Every
// error is a *RequestError.
//
// A body of the form a station writes takes a one-pass fast path
// (request_fast.go); everything else the general decoder below.
func ParseRequest(body []byte) (*Request, error) {
	if req := parseStation(body); req != nil {
		return req, nil
	}
	return parseGeneral(body)
}

// parseGeneral is ParseRequest through encoding/json: every JSON form, and
// the precise error messages.
func parseGeneral(body []byte) (*Request, error) {
	var w wireRequest
	if err := json.Unmarshal(body, &w); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, &RequestError{Msg: fmt.Sprintf("malformed JSON at offset %d: %v", se.Offset, se)}
		case errors.As(err, &te):
			return nil, &RequestError{Msg: "the body must be a JSON object"}
		default:
			return nil, &RequestError{Msg: "malformed JSON: " + err.Error()}
		}
	}
	req := &Request{}
	var err error
	if w.Router == nil || bytes.Equal(w.Router, jsonNull) {
		return nil, &RequestError{Field: "router", Msg: "required"}
	}
	if req.Router, err = parseRouter(w.Router); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{
		{"cupsUri", w.CupsURI, &req.CupsURI},
		{"tcUri", w.TcURI, &req.TcURI},
		{"station", w.Station, &req.Station},
		{"model", w.Model, &req.Model},
		{"package", w.Package, &req.Package},
	} {
		if *f.dst, err = parseOptString(f.name, f.raw); err != nil {
			return nil, err
		}
	}
	if req.CupsCredCRC, err = parseRequiredCRC("cupsCredCrc", w.CupsCredCrc); err != nil {
		return nil, err
	}
	if req.TcCredCRC, err = parseRequiredCRC("tcCredCrc", w.TcCredCrc); err != nil {
		return nil, err
	}
	if req.Keys, err = parseKeys(w.Keys); err != nil {
		return nil, err
	}
	return req, nil
}

// parseRouter accepts the EUI as a JSON string in any form ParseEUI accepts,
// or as a plain JSON integer (Basics Station's own JSON decoder accepts both).
func parseRouter(raw json.RawMessage) (EUI, error) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, &RequestError{Field: "router", Msg: "malformed string"}
		}
		e, err := ParseEUI(s)
		if err != nil {
			return 0, &RequestError{Field: "router", Msg: err.Error()}
		}
		return e, nil
	}
	v, err := parseUint(raw, 64)
	if err != nil {
		return 0, &RequestError{Field: "router", Msg: "want an EUI string such as \"11:22ff:fe33:4455\", got " + jsonKind(raw)}
	}
	return EUI(v), nil
}

func parseOptString(name string, raw json.RawMessage) (string, error) {
	if raw == nil || bytes.Equal(raw, jsonNull) {
		return "", nil
	}
	if raw[0] != '"' {
		return "", &RequestError{Field: name, Msg: "want a string or null, got " + jsonKind(raw)}
	}
	if s, ok := plainString(raw); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &RequestError{Field: name, Msg: "malformed string"}
	}
	return s, nil
}

func parseRequiredCRC(name string, raw json.RawMessage) (uint32, error) {
	if raw == nil || bytes.Equal(raw, jsonNull) {
		return 0, &RequestError{Field: name, Msg: "required"}
	}
	v, err := parseUint(raw, 32)
	if err != nil {
		return 0, &RequestError{Field: name, Msg: err.Error()}
	}
	return uint32(v), nil
}

func parseKeys(raw json.RawMessage) ([]uint32, error) {
	if raw == nil || bytes.Equal(raw, jsonNull) {
		return []uint32{}, nil
	}
	if raw[0] != '[' {
		return nil, &RequestError{Field: "keys", Msg: "want a list of 32-bit CRCs, got " + jsonKind(raw)}
	}
	if keys, ok := plainUintList(raw); ok {
		return keys, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, &RequestError{Field: "keys", Msg: "malformed list"}
	}
	keys := make([]uint32, len(items))
	for i, it := range items {
		v, err := parseUint(it, 32)
		if err != nil {
			return nil, &RequestError{Field: "keys", Msg: fmt.Sprintf("item %d: %v", i, err)}
		}
		keys[i] = uint32(v)
	}
	return keys, nil
}

// parseUint parses a JSON number that must be a non-negative integer of at
// most bits bits, without fraction or exponent (the station writes CRCs as
// plain unsigned integers).
func parseUint(raw json.RawMessage, bits int) (uint64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || !(raw[0] >= '0' && raw[0] <= '9' || raw[0] == '-') {
		return 0, fmt.Errorf("want an unsigned %d-bit integer, got %s", bits, jsonKind(raw))
	}
	if raw[0] == '-' {
		return 0, fmt.Errorf("want an unsigned %d-bit integer, got a negative number", bits)
	}
	if bytes.ContainsAny(raw, ".eE") {
		return 0, fmt.Errorf("want an unsigned %d-bit integer, got a fraction or exponent", bits)
	}
	v, err := strconv.ParseUint(string(raw), 10, bits)
	if err != nil {
		return 0, fmt.Errorf("want an unsigned %d-bit integer, got %s out of range", bits, excerpt(raw))
	}
	return v, nil
}

// jsonKind names the JSON type of raw for error messages.
func jsonKind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// excerpt returns at most 24 bytes of b, quoted, so that error messages and
// logs never carry a whole attacker-chosen input.
func excerpt(b []byte) string {
	const max = 24
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

// plainString returns the content of a JSON string literal (already
// validated by the decoder) that needs no unescaping: printable ASCII
// without backslash. ok is false otherwise, and the caller decodes it fully.
// Station requests are all of this kind; the fast path keeps the no-change
// answer close to the cost of a bare handler.
func plainString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	for _, c := range body {
		if c < 0x20 || c >= 0x7f || c == '\\' || c == '"' {
			return "", false
		}
	}
	return string(body), true
}

// plainUintList parses a JSON list (already validated by the decoder) made
// only of digits, commas and white space. ok is false for anything else
// (a sign, a fraction, a string, a nested value, a number out of range),
// and the caller takes the general path with its precise error messages.
func plainUintList(raw json.RawMessage) ([]uint32, bool) {
	if len(raw) < 2 || raw[0] != '[' || raw[len(raw)-1] != ']' {
		return nil, false
	}
	body := raw[1 : len(raw)-1]
	keys := make([]uint32, 0, 4)
	var v uint64
	digits := 0
	flush := func() bool {
		if digits == 0 || digits > 10 || v > 1<<32-1 {
			return false
		}
		keys = append(keys, uint32(v))
		v, digits = 0, 0
		return true
	}
	seen := false
	for _, c := range body {
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 && v == 0 {
				return nil, false // leading zero: not valid JSON, let the decoder say so
			}
			v = v*10 + uint64(c-'0')
			digits++
			seen = true
			if digits > 10 {
				return nil, false
			}
		case c == ',':
			if !flush() {
				return nil, false
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			return nil, false
		}
	}
	if seen && !flush() {
		return nil, false
	}
	if !seen && len(bytes.TrimSpace(body)) != 0 {
		return nil, false
	}
	return keys, true
}
