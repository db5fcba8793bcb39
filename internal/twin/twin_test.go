package twin

import "testing"

// TestForgetRollout: a retried station's counts for the rollout are
// forgotten, another rollout's are kept.
func TestForgetRollout(t *testing.T) {
	o := &Observation{Package: "2.0.6", ServedPackage: "2.0.7", ServedRollout: "a", UpdatesServed: 3,
		Refusal: RefusalKeyMismatch, RefusedPackage: "2.0.8", RefusedRollout: "b"}
	if !o.ForgetRollout("a") {
		t.Fatal("nothing forgotten")
	}
	if o.UpdatesServed != 0 || o.ServedRollout != "" || o.ServedPackage != "" {
		t.Errorf("served counts kept: %+v", o)
	}
	if o.Refusal != RefusalKeyMismatch || o.RefusedRollout != "b" || o.Package != "2.0.6" {
		t.Errorf("another rollout's refusal or the package was forgotten: %+v", o)
	}
	o.Report = &Report{Rollout: "a", Package: "2.0.7"}
	if !o.ForgetRollout("a") || o.Report != nil {
		t.Errorf("the bake time's report of the retried rollout was kept: %+v", o.Report)
	}
	if o.ForgetRollout("a") || (*Observation)(nil).ForgetRollout("a") {
		t.Error("forgot twice")
	}
	p := RetryPatch(&Ownership{UID: "a", Failed: "NotApplied"}, Ownership{UID: "a"}, o)
	root := p.Tags[TagRoot].(map[string]any)
	if own := root[TagRollout].(map[string]any); own["failed"] != nil || len(own) < 2 {
		t.Errorf("the patch does not delete the failure mark: %v", own)
	}
	if obs := root[TagObserved].(map[string]any); obs["servedRollout"] != nil {
		t.Errorf("the patch does not delete the forgotten count: %v", obs)
	} else if _, ok := obs["servedRollout"]; !ok {
		t.Errorf("the patch does not name the forgotten key: %v", obs)
	}
}
