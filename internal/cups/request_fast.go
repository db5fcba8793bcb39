package cups

import (
	"hash/maphash"
	"sync/atomic"
)

// The fast path of ParseRequest: the body a Basics Station writes (a flat
// JSON object of the nine known fields, plain strings, unsigned integers,
// a list of them) parsed in one pass without encoding/json. Under a poll
// storm the general decoder was the largest cost of the no-change answer
// after the socket itself (issue 18: 14% of the manager's CPU with 256
// stations in flight, and a third of its allocated bytes). Anything else
// (escapes, non-ASCII, unknown or repeated fields, other types, invalid
// JSON) returns nil and takes the general path, which also words every
// error; FuzzParseStationMatchesGeneral checks that the fast path never
// accepts what the general one would refuse, or reads it differently.

// internSlots and internMaxLen size the table of strings stations repeat in
// every poll: a fleet runs a few versions, models and packages and names
// one or two CUPS URIs, so 1,024 slots of at most 96 bytes (about 100 KiB)
// hold them all; longer or rarer strings are simply allocated.
const (
	internSlots  = 1024
	internMaxLen = 96
)

// interned holds one copy of each string recently parsed, by hash: a poll
// whose station, model, package and cupsUri were seen before allocates none
// of them. Slots are replaced freely (a colliding string takes the slot);
// strings are immutable, so sharing them is safe.
var (
	interned   [internSlots]atomic.Pointer[string]
	internSeed = maphash.MakeSeed()
)

// intern returns b as a string, from the table when it holds it.
func intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > internMaxLen {
		return string(b)
	}
	slot := &interned[maphash.Bytes(internSeed, b)%internSlots]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	slot.Store(&s)
	return s
}

// Fields of the update-info body, as bit positions.
const (
	fRouter = iota
	fCupsURI
	fTcURI
	fCupsCredCrc
	fTcCredCrc
	fStation
	fModel
	fPackage
	fKeys
)

// fieldOf returns the field a key names exactly, or -1.
func fieldOf(key []byte) int {
	switch string(key) { // no allocation: the compiler compares in place
	case "router":
		return fRouter
	case "cupsUri":
		return fCupsURI
	case "tcUri":
		return fTcURI
	case "cupsCredCrc":
		return fCupsCredCrc
	case "tcCredCrc":
		return fTcCredCrc
	case "station":
		return fStation
	case "model":
		return fModel
	case "package":
		return fPackage
	case "keys":
		return fKeys
	}
	return -1
}

// stationScanner walks a body byte by byte.
type stationScanner struct {
	b []byte
	i int
}

// ws skips JSON white space.
func (s *stationScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// eat consumes c if it is next.
func (s *stationScanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// null consumes the literal null if it is next.
func (s *stationScanner) null() bool {
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// plainString consumes a string literal of printable ASCII without escapes
// and returns its content (the bytes plainString of the general path
// accepts).
func (s *stationScanner) plainString() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// uint32 consumes a JSON number that is an unsigned 32-bit integer written
// without sign, fraction, exponent or leading zero.
func (s *stationScanner) uint32() (uint32, bool) {
	start := s.i
	var v uint64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		v = v*10 + uint64(s.b[s.i]-'0')
		s.i++
		if s.i-start > 10 {
			return 0, false
		}
	}
	n := s.i - start
	if n == 0 || n > 1 && s.b[start] == '0' || v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}

// keys consumes a list of unsigned 32-bit integers.
func (s *stationScanner) keys() ([]uint32, bool) {
	if !s.eat('[') {
		return nil, false
	}
	keys := make([]uint32, 0, 2) // a station holds one or two sig-N.key files
	s.ws()
	if s.eat(']') {
		return keys, true
	}
	for {
		s.ws()
		v, ok := s.uint32()
		if !ok {
			return nil, false
		}
		keys = append(keys, v)
		s.ws()
		if s.eat(']') {
			return keys, true
		}
		if !s.eat(',') {
			return nil, false
		}
	}
}

// parseStation parses body when it has the form a station writes, and
// returns nil for the general path otherwise (including every body the
// general path refuses).
func parseStation(body []byte) *Request {
	s := stationScanner{b: body}
	s.ws()
	if !s.eat('{') {
		return nil
	}
	req := &Request{}
	var seen uint16
	for {
		s.ws()
		key, ok := s.plainString()
		if !ok {
			return nil
		}
		f := fieldOf(key)
		if f < 0 || seen&(1<<f) != 0 {
			return nil // unknown (maybe a case variant encoding/json matches) or repeated
		}
		seen |= 1 << f
		s.ws()
		if !s.eat(':') {
			return nil
		}
		s.ws()
		if !s.value(f, req) {
			return nil
		}
		s.ws()
		if s.eat('}') {
			break
		}
		if !s.eat(',') {
			return nil
		}
	}
	s.ws()
	const required = 1<<fRouter | 1<<fCupsCredCrc | 1<<fTcCredCrc
	if s.i != len(s.b) || seen&required != required {
		return nil
	}
	if req.Keys == nil {
		req.Keys = []uint32{}
	}
	return req
}

// value consumes field f's value into req.
func (s *stationScanner) value(f int, req *Request) bool {
	switch f {
	case fRouter:
		raw, ok := s.plainString()
		if !ok {
			return false
		}
		e, err := ParseEUI(string(raw))
		if err != nil {
			return false
		}
		req.Router = e
	case fCupsCredCrc, fTcCredCrc:
		v, ok := s.uint32()
		if !ok {
			return false
		}
		if f == fCupsCredCrc {
			req.CupsCredCRC = v
		} else {
			req.TcCredCRC = v
		}
	case fKeys:
		if s.null() {
			return true
		}
		keys, ok := s.keys()
		if !ok {
			return false
		}
		req.Keys = keys
	default:
		if s.null() {
			return true
		}
		raw, ok := s.plainString()
		if !ok {
			return false
		}
		v := intern(raw)
		switch f {
		case fCupsURI:
			req.CupsURI = v
		case fTcURI:
			req.TcURI = v
		case fStation:
			req.Station = v
		case fModel:
			req.Model = v
		case fPackage:
			req.Package = v
		}
	}
	return true
}
