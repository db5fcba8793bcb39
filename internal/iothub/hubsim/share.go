package hubsim

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// maxShared bounds each table of the sharer: when one is full both are
// emptied (what is already shared stays shared; only new values start
// over), so a registry of unique values costs no more than this.
const maxShared = 1 << 16

// sharer makes the twins of a large registry share their repeated parts.
// A fleet's twins hold the same few documents (every station desires the
// same firmware, carries the same region and ring tags, was written by the
// same rollout in the same second): stored once each, a million twins take
// a few hundred bytes each instead of a few kilobytes. Stored documents are
// immutable (a write builds new maps, see mergePatch), which is what makes
// sharing them safe. Callers hold store.mu for writing.
type sharer struct {
	strs map[string]any      // boxed string values, by value
	nums map[json.Number]any // boxed numbers, by text
	maps map[string]map[string]any
	keys []string // scratch
}

// doc returns a document equal to m whose values, and m itself where
// possible, are shared with the other documents stored.
func (sh *sharer) doc(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out, _ := sh.obj(m)
	return out
}

// obj returns a map equal to m built from shared values, and its key in
// the table ("" when it holds a value that is not shared, an array).
func (sh *sharer) obj(m map[string]any) (map[string]any, string) {
	if sh.maps == nil || len(sh.maps) >= maxShared || len(sh.strs) >= maxShared || len(sh.nums) >= maxShared {
		sh.strs, sh.nums, sh.maps = map[string]any{}, map[json.Number]any{}, map[string]map[string]any{}
	}
	out := make(map[string]any, len(m))
	shareable := true
	for k, v := range m {
		nv, ok := sh.value(v)
		shareable = shareable && ok
		out[sh.str(k)] = nv
	}
	if !shareable {
		return out, ""
	}
	var b strings.Builder
	keys := sh.keys[:0]
	for k := range out {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		b.WriteByte(':')
		writeValueKey(&b, out[k])
		b.WriteByte(',')
	}
	sh.keys = keys[:0]
	key := b.String()
	if shared, ok := sh.maps[key]; ok {
		return shared, key
	}
	sh.maps[key] = out
	return out, key
}

// value returns v built from shared values, and whether v can be named in a
// map's key (a scalar or a shared map; an array cannot).
func (sh *sharer) value(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		if b, ok := sh.strs[x]; ok {
			return b, true
		}
		var b any = x
		sh.strs[x] = b
		return b, true
	case json.Number:
		if b, ok := sh.nums[x]; ok {
			return b, true
		}
		var b any = x
		sh.nums[x] = b
		return b, true
	case map[string]any:
		m, key := sh.obj(x)
		return m, key != ""
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i], _ = sh.value(e)
		}
		return out, false
	}
	return v, true // bool, nil, float64: no allocation to share
}

// str returns the shared copy of a map key.
func (sh *sharer) str(s string) string {
	if b, ok := sh.strs[s]; ok {
		if bs, ok := b.(string); ok {
			return bs
		}
	}
	var b any = s
	sh.strs[s] = b
	return s
}

// writeValueKey writes what identifies a shared value: scalars by value, a
// shared map by its address (it stays in the table, so alive and unique, for
// as long as any key naming it does).
func writeValueKey(b *strings.Builder, v any) {
	switch x := v.(type) {
	case string:
		b.WriteString(strconv.Quote(x))
	case json.Number:
		b.WriteByte('n')
		b.WriteString(string(x))
	case map[string]any:
		fmt.Fprintf(b, "m%x", reflect.ValueOf(x).Pointer())
	default:
		fmt.Fprintf(b, "%T:%v", x, x)
	}
}
