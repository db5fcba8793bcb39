package hubsim

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

var fuzzDevice = &device{
	ID: "001122FFFE334455", Status: "enabled", Version: 3, DesiredVersion: 2, ReportedVersion: 1,
	Tags:    map[string]any{"region": "eu", "n": json.Number("3"), "stationfleet": map[string]any{"rollout": map[string]any{"uid": "u1"}}},
	Desired: map[string]any{"cups": map[string]any{"package": "1.0"}},
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM devices",
		"SELECT * FROM devices WHERE deviceId IN ['A', 'B'] AND tags.region = 'eu'",
		"select * from devices where NOT (tags.n > 2 OR properties.desired.cups.package != '1.0')",
		"SELECT * FROM devices WHERE IS_DEFINED(tags.stationfleet.rollout) AND tags.x NIN [1, true, null]",
		`SELECT * FROM devices WHERE tags.site = 'O\'Brien\\' AND properties.reported.$version >= 1`,
		"SELECT * FROM devices WHERE tags.a <> 'b' AND devices.deviceId = 'x'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuery(s)
		if err != nil {
			return
		}
		_ = q.match(fuzzDevice) // must not panic
		_ = q.match(&device{ID: "X"})
	})
}

func FuzzMergePatch(f *testing.F) {
	f.Add(`{"a":1,"b":{"c":"x","d":[1,2]}}`, `{"a":null,"b":{"c":null,"e":{"f":true}}}`)
	f.Add(`{}`, `{"a":{"b":null}}`)
	f.Add(`{"a":"s"}`, `{"a":{"b":1}}`)
	f.Fuzz(func(t *testing.T, target, patch string) {
		tm, err1 := decodeObject([]byte(target))
		pm, err2 := decodeObject([]byte(patch))
		if err1 != nil || err2 != nil || validateDoc(tm, false) != nil || validateDoc(pm, true) != nil {
			return
		}
		orig, _ := json.Marshal(tm)
		once := mergePatch(tm, pm)
		again, _ := json.Marshal(tm)
		if string(orig) != string(again) {
			t.Fatalf("merge modified its target: %s -> %s", orig, again)
		}
		twice := mergePatch(once, pm)
		if !reflect.DeepEqual(once, twice) {
			t.Fatalf("merge patch not idempotent: %v vs %v", once, twice)
		}
		if err := validateDoc(once, false); err != nil {
			t.Fatalf("result holds a null or invalid value: %v", err)
		}
		for k, v := range pm {
			got, ok := once[k]
			switch v.(type) {
			case nil:
				if ok {
					t.Fatalf("key %q set to null survived", k)
				}
			case map[string]any:
				if !ok {
					t.Fatalf("object key %q missing", k)
				}
			default:
				if !reflect.DeepEqual(got, v) {
					t.Fatalf("key %q = %v, want %v", k, got, v)
				}
			}
		}
		for k, v := range tm {
			if _, touched := pm[k]; !touched && !reflect.DeepEqual(once[k], v) {
				t.Fatalf("untouched key %q changed", k)
			}
		}
	})
}

// FuzzCheckSAS feeds arbitrary Authorization headers to the SAS check: it
// never panics, and a token that verifies names this hub and has not
// expired.
func FuzzCheckSAS(f *testing.F) {
	key, _ := base64.StdEncoding.DecodeString(testKey)
	policies := map[string][]byte{DefaultPolicyName: key}
	now := time.Unix(1_800_000_000, 0)
	good, _ := SASToken("localhost", DefaultPolicyName, testKey, now.Add(time.Hour))
	if err := checkSAS(good, policies, "localhost", "/twins/DEV1", now); err != nil {
		f.Fatalf("a valid token is refused: %v", err)
	}
	f.Add(good)
	f.Add("SharedAccessSignature sr=localhost&sig=abc%3D&skn=iothubowner&se=1800003600")
	f.Add("SharedAccessSignature sr=localhost%3A443&sig=&se=x")
	f.Add("SharedAccessSignature sr=%zz&sig=a&se=1")
	f.Fuzz(func(t *testing.T, header string) {
		if checkSAS(header, policies, "localhost", "/twins/DEV1", now) != nil {
			return
		}
		// It verified: then it verifies for no other hub, and not later.
		if checkSAS(header, policies, "otherhub", "/twins/DEV1", now) == nil {
			t.Fatalf("%q verifies for another hub", header)
		}
		if checkSAS(header, policies, "localhost", "/twins/DEV1", now.Add(100*365*24*time.Hour)) == nil {
			t.Fatalf("%q never expires", header)
		}
	})
}
