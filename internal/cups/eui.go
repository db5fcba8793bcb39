package cups

import (
	"errors"
	"fmt"
	"strings"
)

// EUI is a 64-bit station EUI (the Basics Station "routerid").
type EUI uint64

// DeviceID returns the IoT Hub device id of the station: its EUI as 16
// upper-case hex digits (DESIGN.md section 2).
func (e EUI) DeviceID() string {
	const hexDigits = "0123456789ABCDEF"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hexDigits[e&0xF]
		e >>= 4
	}
	return string(b[:])
}

// String returns the EUI in ID6 form, as the station writes it
// (0011:22ff:fe33:4455 is "11:22ff:fe33:4455").
func (e EUI) String() string {
	return fmt.Sprintf("%x:%x:%x:%x", uint16(e>>48), uint16(e>>32), uint16(e>>16), uint16(e))
}

// errEUI is wrapped by every EUI parse error.
var errEUI = errors.New("not an EUI")

// ParseEUI parses every form in which a Basics Station writes or accepts an
// EUI:
//
//   - 16 plain hex digits: "001122FFFE334455";
//   - eight bytes of one or two hex digits separated by '-' or ':':
//     "00-11-22-FF-FE-33-44-55", "00:11:22:ff:fe:33:44:55";
//   - ID6, four groups of one to four hex digits separated by ':', each
//     group 16 bits of the EUI, with at most one "::" standing for one or
//     more zero groups: "11:22ff:fe33:4455", "::1", "1::", "::".
//
// Hex digits are case-insensitive. Anything else is an error.
//
// A station writes its router id on every poll, almost always as four
// uncompressed ID6 groups; that form is read in one pass (id6Plain) and
// everything else, errors included, by parseEUI.
func ParseEUI(s string) (EUI, error) {
	if e, ok := id6Plain(s); ok {
		return e, nil
	}
	return parseEUI(s)
}

// id6Plain reads the ID6 form without "::": four groups of one to four hex
// digits separated by single colons. ok is false for anything else, which
// parseEUI then reads or refuses with its reason.
func id6Plain(s string) (e EUI, ok bool) {
	var v, g uint64
	groups, digits := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ':' {
			if digits == 0 || groups == 3 {
				return 0, false
			}
			v, g, groups, digits = v<<16|g, 0, groups+1, 0
			continue
		}
		d, ok := hexDigit(c)
		if !ok || digits == 4 {
			return 0, false
		}
		g, digits = g<<4|uint64(d), digits+1
	}
	if groups != 3 || digits == 0 {
		return 0, false
	}
	return EUI(v<<16 | g), true
}

// parseEUI is ParseEUI for every form, with the reason for a refusal.
func parseEUI(s string) (EUI, error) {
	if s == "" {
		return 0, fmt.Errorf("%w: empty", errEUI)
	}
	if len(s) > 23 { // the longest form, eight 2-digit bytes and 7 separators
		return 0, fmt.Errorf("%w: %d characters is too long", errEUI, len(s))
	}
	if len(s) == 16 && !strings.ContainsAny(s, ":-") {
		v, ok := parseHex(s)
		if !ok {
			return 0, fmt.Errorf("%w: %q has a non-hex digit", errEUI, s)
		}
		return EUI(v), nil
	}
	if strings.Contains(s, "-") {
		return parseBytes(s, '-')
	}
	if !strings.Contains(s, "::") && strings.Count(s, ":") == 7 {
		return parseBytes(s, ':')
	}
	return parseID6(s)
}

// parseBytes parses eight 1-2 digit hex bytes separated by sep.
func parseBytes(s string, sep byte) (EUI, error) {
	parts := strings.Split(s, string(sep))
	if len(parts) != 8 {
		return 0, fmt.Errorf("%w: %q needs 8 bytes separated by %q", errEUI, s, sep)
	}
	var v uint64
	for _, p := range parts {
		if len(p) < 1 || len(p) > 2 {
			return 0, fmt.Errorf("%w: %q: byte %q is not 1 or 2 hex digits", errEUI, s, p)
		}
		b, ok := parseHex(p)
		if !ok {
			return 0, fmt.Errorf("%w: %q has a non-hex digit", errEUI, s)
		}
		v = v<<8 | b
	}
	return EUI(v), nil
}

// parseID6 parses the ID6 form: up to four 16-bit groups, "::" compressing
// zero groups. It allocates only for an error (it runs on every poll).
func parseID6(s string) (EUI, error) {
	head, tail, compressed := strings.Cut(s, "::")
	if compressed && strings.Contains(tail, "::") {
		return 0, fmt.Errorf("%w: %q has more than one \"::\"", errEUI, s)
	}
	var hg, tg [4]uint64
	nh, err := id6Groups(s, head, &hg)
	if err != nil {
		return 0, err
	}
	nt := 0
	if compressed {
		if nt, err = id6Groups(s, tail, &tg); err != nil {
			return 0, err
		}
		if nh+nt > 3 { // "::" stands for at least one zero group
			return 0, fmt.Errorf("%w: %q has too many groups for ID6", errEUI, s)
		}
	} else if nh != 4 {
		return 0, fmt.Errorf("%w: %q is neither 16 hex digits, 8 bytes, nor ID6", errEUI, s)
	}
	var groups [4]uint64
	copy(groups[:], hg[:nh])
	copy(groups[4-nt:], tg[:nt])
	var v uint64
	for _, g := range groups {
		v = v<<16 | g
	}
	return EUI(v), nil
}

// id6Groups parses the ':'-separated groups of one side of an ID6 string
// into out and returns how many there are.
func id6Groups(whole, s string, out *[4]uint64) (int, error) {
	if s == "" {
		return 0, nil
	}
	n := 0
	for {
		p, rest, more := strings.Cut(s, ":")
		if n == 4 {
			return 0, fmt.Errorf("%w: %q has too many groups for ID6", errEUI, whole)
		}
		if len(p) < 1 || len(p) > 4 {
			return 0, fmt.Errorf("%w: %q: group %q is not 1 to 4 hex digits", errEUI, whole, p)
		}
		g, ok := parseHex(p)
		if !ok {
			return 0, fmt.Errorf("%w: %q has a non-hex digit", errEUI, whole)
		}
		out[n] = g
		n++
		if !more {
			return n, nil
		}
		s = rest
	}
}

// parseHex parses up to 16 hex digits; ok is false on any other character.
func parseHex(s string) (uint64, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		d, ok := hexDigit(s[i])
		if !ok {
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// hexDigit is the value of one hex digit, either case.
func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
