package iothub

import (
	"strings"
	"testing"
	"unicode/utf8"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

func TestBuildQueries(t *testing.T) {
	cases := []struct {
		name    string
		sel     twin.Selector
		want    []string
		wantErr string
	}{
		{"everything", twin.Selector{}, []string{"SELECT * FROM devices"}, ""},
		{"tags sorted, owner last",
			twin.Selector{Tags: map[string]string{"ring": "b", "region": "eu"}, OwnerUID: "u-1"},
			[]string{"SELECT * FROM devices WHERE tags.region = 'eu' AND tags.ring = 'b' AND tags.stationfleet.rollout.uid = 'u-1'"}, ""},
		{"not owned by",
			twin.Selector{Tags: map[string]string{"ring": "b"}, NotOwnerUID: "u-1"},
			[]string{"SELECT * FROM devices WHERE tags.ring = 'b' AND (NOT IS_DEFINED(tags.stationfleet.rollout.uid) OR tags.stationfleet.rollout.uid != 'u-1')"}, ""},
		{"ids sorted and deduplicated",
			twin.Selector{DeviceIDs: []string{"B", "A", "B"}, Tags: map[string]string{"site.city": "Oslo"}},
			[]string{"SELECT * FROM devices WHERE deviceId IN ['A', 'B'] AND tags.site.city = 'Oslo'"}, ""},
		{"quotes escaped", twin.Selector{Tags: map[string]string{"site": `O'Br\ien` + "\n"}},
			[]string{`SELECT * FROM devices WHERE tags.site = 'O\'Br\\ien\u000a'`}, ""},
		{"key with a quote refused", twin.Selector{Tags: map[string]string{"a'": "b"}}, nil, "tag key"},
		{"key with a space refused", twin.Selector{Tags: map[string]string{"a b": "b"}}, nil, "tag key"},
		{"key with brackets refused", twin.Selector{Tags: map[string]string{"a[0]": "b"}}, nil, "tag key"},
		{"empty key segment refused", twin.Selector{Tags: map[string]string{"a..b": "b"}}, nil, "tag key"},
		{"invalid device id refused", twin.Selector{DeviceIDs: []string{"A B"}}, nil, "device id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := BuildQueries(tc.sel)
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
			for _, q := range got {
				_, err := hubsim.ParseQuery(q)
				g.Expect(err).NotTo(HaveOccurred(), q)
			}
		})
	}
}

// nested builds {"a": {"b": v}} for the key "a.b".
func nested(key string, v any) map[string]any {
	segs := strings.Split(key, ".")
	var cur any = v
	for i := len(segs) - 1; i >= 0; i-- {
		cur = map[string]any{segs[i]: cur}
	}
	return cur.(map[string]any)
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if am, ok := out[k].(map[string]any); ok {
			if bm, ok := v.(map[string]any); ok {
				out[k] = merge(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// FuzzBuildQueries checks the selector-to-query builder against the
// emulator's parser: the queries it builds, parsed and evaluated exactly as
// the emulator evaluates them, match precisely the devices the selector
// describes, whatever the tag value, owner uid or device ids hold.
func FuzzBuildQueries(f *testing.F) {
	f.Add("region", "eu", "A,B", "")
	f.Add("site", "O'Brien", "", "uid-1")
	f.Add("site.city", `x' OR tags.site != 'y`, "O'Neil,A", `\'`)
	f.Add("a", `\`, "A", "' OR deviceId != '")
	f.Fuzz(func(t *testing.T, key, value, idList, owner string) {
		if key == twin.TagRoot || strings.HasPrefix(key, twin.TagRoot+".") {
			return // the tag would overlap the ownership record; the model below keeps them apart
		}
		var ids []string
		if idList != "" {
			ids = strings.Split(idList, ",")
		}
		sel := twin.Selector{Tags: map[string]string{key: value}, DeviceIDs: ids, OwnerUID: owner}
		queries, err := BuildQueries(sel)
		if err != nil {
			ok := validTagKey(key) && utf8.ValidString(value) && utf8.ValidString(owner)
			for _, id := range ids {
				ok = ok && validDeviceID(id)
			}
			if ok {
				t.Fatalf("valid selector refused: %v", err)
			}
			return
		}
		parsed := make([]*hubsim.Query, len(queries))
		for i, q := range queries {
			if len(q) > hubsim.MaxQueryLength {
				t.Fatalf("query of %d characters", len(q))
			}
			if parsed[i], err = hubsim.ParseQuery(q); err != nil {
				t.Fatalf("emulator refused built query %q: %v", q, err)
			}
		}
		// Candidate devices: every listed id and two others, each with the
		// exact value, a near miss and nothing; owned by the uid or not.
		cands := append([]string{"ZZZ-NOT-LISTED", "A"}, ids...)
		values := []any{value, value + "'", strings.ReplaceAll(value, "'", ""), nil}
		owners := []string{owner, owner + "x", ""}
		for _, id := range cands {
			for _, v := range values {
				for _, o := range owners {
					tags := map[string]any{}
					if v != nil {
						tags = nested(key, v)
					}
					if o != "" {
						tags = merge(tags, map[string]any{"stationfleet": map[string]any{"rollout": map[string]any{"uid": o}}})
					}
					want := v == value
					if len(ids) > 0 {
						listed := false
						for _, x := range ids {
							listed = listed || x == id
						}
						want = want && listed
					}
					if owner != "" {
						want = want && o == owner
					}
					got := false
					for _, q := range parsed {
						got = got || q.Matches(id, tags, nil, nil)
					}
					if got != want {
						t.Fatalf("device %q tags %v: matched=%v want %v (queries %q)", id, tags, got, want, queries)
					}
				}
			}
		}
	})
}
