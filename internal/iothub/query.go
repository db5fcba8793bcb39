package iothub

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// maxQueryLength bounds each query the adapter sends; the emulator enforces
// the same bound, so a long device id list is split rather than refused.
const maxQueryLength = 8192

// tagKeySegment is what one dot-separated segment of a selector tag key may
// be. Keys are validated, never quoted: a key outside this charset is an
// error, so it cannot change the query's structure.
var tagKeySegment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// validTagKey reports whether key ("region", "site.city") is safe to put
// after "tags." in a query.
func validTagKey(key string) bool {
	if key == "" || len(key) > 512 {
		return false
	}
	for _, seg := range strings.Split(key, ".") {
		if !tagKeySegment.MatchString(seg) {
			return false
		}
	}
	return true
}

// validDeviceID reports whether id is a device id IoT Hub accepts.
func validDeviceID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.%_*?!(),:=@$'", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Quote returns s as an IoT Hub query string literal: single-quoted, with
// backslash escapes for the quote, the backslash and control characters, so
// that no value can end the literal early.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r == '\'':
			b.WriteString(`\'`)
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// BuildQueries turns a selector into IoT Hub queries whose results, taken
// together, are exactly the twins the selector describes:
//
//	SELECT * FROM devices WHERE deviceId IN ['A', 'B'] AND tags.region = 'eu' AND tags.stationfleet.rollout.uid = '...'
//
// Device ids are sorted, deduplicated and split over several queries when
// one would exceed the query size. A selector with no criteria selects every
// device. Tag keys outside [A-Za-z_][A-Za-z0-9_]* (dot-separated) and
// invalid device ids are refused.
func BuildQueries(sel twin.Selector) ([]string, error) {
	var conds []string
	keys := make([]string, 0, len(sel.Tags))
	for k := range sel.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !validTagKey(k) {
			return nil, fmt.Errorf("selector tag key %q: only letters, digits and '_' (dot-separated) are allowed", k)
		}
		if !utf8.ValidString(sel.Tags[k]) {
			return nil, fmt.Errorf("selector tag %q: value is not valid UTF-8", k)
		}
		conds = append(conds, "tags."+k+" = "+Quote(sel.Tags[k]))
	}
	if !utf8.ValidString(sel.OwnerUID) || !utf8.ValidString(sel.NotOwnerUID) {
		return nil, fmt.Errorf("selector owner uid is not valid UTF-8")
	}
	const ownerPath = "tags." + twin.TagRoot + "." + twin.TagRollout + ".uid"
	if sel.OwnerUID != "" {
		conds = append(conds, ownerPath+" = "+Quote(sel.OwnerUID))
	}
	if sel.NotOwnerUID != "" {
		// A comparison with an undefined property is undefined, never
		// true, in IoT Hub's query language: unowned twins need IS_DEFINED.
		conds = append(conds, "(NOT IS_DEFINED("+ownerPath+") OR "+ownerPath+" != "+Quote(sel.NotOwnerUID)+")")
	}
	const head = "SELECT * FROM devices"
	rest := strings.Join(conds, " AND ")
	if len(sel.DeviceIDs) == 0 {
		q := head
		if rest != "" {
			q += " WHERE " + rest
		}
		if len(q) > maxQueryLength {
			return nil, fmt.Errorf("selector makes a query of %d characters, more than %d", len(q), maxQueryLength)
		}
		return []string{q}, nil
	}

	ids := append([]string(nil), sel.DeviceIDs...)
	sort.Strings(ids)
	ids = compact(ids)
	for _, id := range ids {
		if !validDeviceID(id) {
			return nil, fmt.Errorf("selector device id %q is not a valid IoT Hub device id", id)
		}
	}
	tail := ""
	if rest != "" {
		tail = " AND " + rest
	}
	fixed := len(head) + len(" WHERE deviceId IN []") + len(tail)
	var out []string
	var cur []string
	size := fixed
	flush := func() {
		out = append(out, head+" WHERE deviceId IN ["+strings.Join(cur, ", ")+"]"+tail)
		cur, size = nil, fixed
	}
	for _, id := range ids {
		lit := Quote(id)
		add := len(lit)
		if len(cur) > 0 {
			add += 2 // ", "
		}
		if fixed+len(lit) > maxQueryLength {
			return nil, fmt.Errorf("selector tags make a query longer than %d characters", maxQueryLength)
		}
		if size+add > maxQueryLength {
			flush()
			add = len(lit)
		}
		cur = append(cur, lit)
		size += add
	}
	flush()
	return out, nil
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
