package twin

import (
	"testing"
	"time"
)

// TestObservationPatchDeletesWhatTheRecordNoLongerHolds: a merge patch
// leaves alone what it does not name, so a cleared refusal, a report's
// emptied fields and a dropped report must be sent as null.
func TestObservationPatchDeletesWhatTheRecordNoLongerHolds(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	obs := func(p *Patch) map[string]any {
		return p.Tags[TagRoot].(map[string]any)[TagObserved].(map[string]any)
	}
	m := obs(ObservationPatch(Observation{LastSeen: at, Package: "v2"}))
	for _, k := range []string{"refusal", "refusedPackage", "refusedRollout", "report"} {
		if v, ok := m[k]; !ok || v != nil {
			t.Errorf("patch key %q = %v, %v; want null", k, v, ok)
		}
	}
	if m["package"] != "v2" {
		t.Errorf("package = %v", m["package"])
	}
	m = obs(ObservationPatch(Observation{LastSeen: at, Report: &Report{Rollout: "u", Package: "v2", At: at, Polls: []time.Time{at}}}))
	r := m["report"].(map[string]any)
	for _, k := range []string{"restartNext", "restarts", "back", "backAt"} {
		if v, ok := r[k]; !ok || v != nil {
			t.Errorf("report patch key %q = %v, %v; want null", k, v, ok)
		}
	}
}
