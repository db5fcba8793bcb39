package rolloutmetrics_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rolloutmetrics"
)

func rollout(name string, phase fwv1.RolloutPhase, updated int32) *fwv1.FirmwareRollout {
	return &fwv1.FirmwareRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name, UID: types.UID("uid-" + name)},
		Spec: fwv1.FirmwareRolloutSpec{Strategy: fwv1.RolloutStrategy{
			ProgressDeadline: &metav1.Duration{Duration: time.Hour},
			BakeTime:         &metav1.Duration{Duration: 30 * time.Minute},
		}},
		Status: fwv1.FirmwareRolloutStatus{Phase: phase, StationCounts: fwv1.StationCounts{WrittenCounts: fwv1.WrittenCounts{Updated: updated}}},
	}
}

func newClient(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := fwv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&fwv1.FirmwareRollout{}).Build()
}

// TestUnitPhaseAndDeadline: a dashboard counting rollouts by phase sees
// each rollout once, in its phase, and every phase has a series; the
// deadline the no-progress alert compares with is progressDeadline plus
// bakeTime.
func TestUnitPhaseAndDeadline(t *testing.T) {
	g := NewWithT(t)
	c := rolloutmetrics.New(newClient(t, rollout("eu-west", fwv1.PhaseHalted, 3), rollout("us-east", fwv1.PhaseProgressing, 0)),
		rolloutmetrics.WithClock(func() time.Time { return time.Unix(1000, 0) }))
	reg := prometheus.NewPedanticRegistry()
	g.Expect(reg.Register(c)).To(Succeed())

	g.Expect(testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP stationfleet_rollout_progress_deadline_seconds How long a written station may take to reach an outcome: strategy.progressDeadline plus strategy.bakeTime.
# TYPE stationfleet_rollout_progress_deadline_seconds gauge
stationfleet_rollout_progress_deadline_seconds{name="eu-west",namespace="fleet"} 5400
stationfleet_rollout_progress_deadline_seconds{name="us-east",namespace="fleet"} 5400
`), rolloutmetrics.DeadlineMetric)).To(Succeed())

	count, err := testutil.GatherAndCount(reg, rolloutmetrics.PhaseMetric)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(count).To(Equal(2 * len(rolloutmetrics.Phases)))
	mfs, err := reg.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	current := map[string]string{}
	for _, mf := range mfs {
		if mf.GetName() != rolloutmetrics.PhaseMetric {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetGauge().GetValue() != 1 {
				continue
			}
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			g.Expect(current).NotTo(HaveKey(labels["name"]), "two current phases")
			current[labels["name"]] = labels["phase"]
		}
	}
	g.Expect(current).To(Equal(map[string]string{"eu-west": "Halted", "us-east": "Progressing"}))
}

// TestUnitLastProgressMovesOnlyWithProgress: the timestamp the no-progress
// alert reads stays put while a rollout's status is unchanged and moves
// when its station counts change; a deleted rollout's series go.
func TestUnitLastProgressMovesOnlyWithProgress(t *testing.T) {
	g := NewWithT(t)
	now := time.Unix(1000, 0)
	r := rollout("eu-west", fwv1.PhaseProgressing, 0)
	cl := newClient(t, r)
	reg := prometheus.NewPedanticRegistry()
	g.Expect(reg.Register(rolloutmetrics.New(cl, rolloutmetrics.WithClock(func() time.Time { return now })))).To(Succeed())
	last := func() float64 {
		mfs, err := reg.Gather()
		g.Expect(err).NotTo(HaveOccurred())
		for _, mf := range mfs {
			if mf.GetName() == rolloutmetrics.LastProgressMetric {
				g.Expect(mf.GetMetric()).To(HaveLen(1))
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	g.Expect(last()).To(Equal(1000.0))
	now = now.Add(time.Hour)
	g.Expect(last()).To(Equal(1000.0), "nothing changed")

	r.Status.Updated = 5
	g.Expect(cl.Status().Update(t.Context(), r)).To(Succeed())
	now = now.Add(time.Minute)
	g.Expect(last()).To(Equal(4660.0), "five stations updated")
	now = now.Add(time.Hour)
	g.Expect(last()).To(Equal(4660.0))

	g.Expect(cl.Delete(t.Context(), r)).To(Succeed())
	g.Expect(last()).To(Equal(-1.0), "a deleted rollout has no series")
}

// TestUnitPhasesAreTheAPIs: the phase label takes every value of
// status.phase in the CRD (config/crd/bases, generated from the API's Enum
// marker), so that a phase added to the API gets its series.
func TestUnitPhasesAreTheAPIs(t *testing.T) {
	g := NewWithT(t)
	b, err := os.ReadFile("../../config/crd/bases/firmware.stationfleet.io_firmwarerollouts.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	var crd apiextensionsv1.CustomResourceDefinition
	g.Expect(yaml.Unmarshal(b, &crd)).To(Succeed())
	var enum []string
	for _, v := range crd.Spec.Versions {
		for _, e := range v.Schema.OpenAPIV3Schema.Properties["status"].Properties["phase"].Enum {
			var s string
			g.Expect(json.Unmarshal(e.Raw, &s)).To(Succeed())
			enum = append(enum, s)
		}
	}
	g.Expect(enum).NotTo(BeEmpty())
	var phases []string
	for _, p := range rolloutmetrics.Phases {
		phases = append(phases, string(p))
	}
	g.Expect(phases).To(ConsistOf(enum))
}
