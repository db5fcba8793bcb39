// Package rolloutmetrics exports the state of every FirmwareRollout the
// manager's cache holds as Prometheus metrics, read at scrape time (the
// kube-state-metrics pattern): each rollout's phase, its progress deadline,
// and when it last made progress. The Grafana dashboard's "rollouts by
// phase" and the alerts for a halted rollout and for a rollout that made no
// progress for its deadline (config/prometheus) are built on them.
//
// Every replica exports them from its own cache (non-leaders too), so
// queries aggregate with max by (namespace, name).
package rolloutmetrics

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// Metric names, also named by the alert rules and the dashboard.
const (
	PhaseMetric        = "stationfleet_rollout_phase"
	DeadlineMetric     = "stationfleet_rollout_progress_deadline_seconds"
	LastProgressMetric = "stationfleet_rollout_last_progress_timestamp_seconds"
)

// Phases are the values of the phase label: one series per rollout and
// phase, 1 for the rollout's current phase and 0 for the others, so that a
// phase no rollout is in still has series (sum by (phase) gives 0, not
// nothing).
var Phases = []fwv1.RolloutPhase{fwv1.PhasePending, fwv1.PhaseProgressing, fwv1.PhasePaused,
	fwv1.PhaseHalted, fwv1.PhaseCompleted, fwv1.PhaseAborting, fwv1.PhaseAborted}

// The API's defaults (api/v1alpha1: progressDeadline 26h, bakeTime none),
// for a rollout read before the API server defaulted it.
const defaultProgressDeadline = 26 * time.Hour

// listTimeout bounds one scrape's read of the cache (it waits for the
// cache's first sync after a start).
const listTimeout = 10 * time.Second

var (
	phaseDesc = prometheus.NewDesc(PhaseMetric,
		"The phase of each FirmwareRollout: 1 for its current phase, 0 for the others.",
		[]string{"namespace", "name", "phase"}, nil)
	deadlineDesc = prometheus.NewDesc(DeadlineMetric,
		"How long a written station may take to reach an outcome: strategy.progressDeadline plus strategy.bakeTime.",
		[]string{"namespace", "name"}, nil)
	lastProgressDesc = prometheus.NewDesc(LastProgressMetric,
		"When the rollout last made progress (Unix seconds): its phase, step, station counts or baking count changed, as this manager saw it (its start, for a rollout seen unchanged since).",
		[]string{"namespace", "name"}, nil)
)

// Collector is a prometheus.Collector over the FirmwareRollouts a
// client.Reader (the manager's cache) lists.
type Collector struct {
	reader client.Reader
	log    logr.Logger
	now    func() time.Time

	mu   sync.Mutex
	seen map[types.UID]progress
}

// progress is what a rollout looked like at its last change, and when.
type progress struct {
	fingerprint fingerprint
	since       time.Time
}

// fingerprint is the part of a rollout's status that changes when it makes
// progress.
type fingerprint struct {
	phase       fwv1.RolloutPhase
	currentStep int32
	counts      fwv1.StationCounts
	baking      int32
	batches     int
}

// Option customises a Collector.
type Option func(*Collector)

// WithClock sets the collector's clock (tests).
func WithClock(now func() time.Time) Option { return func(c *Collector) { c.now = now } }

// WithLogger sets where a failed read of the cache is logged.
func WithLogger(l logr.Logger) Option { return func(c *Collector) { c.log = l } }

// New returns a Collector reading rollouts from r.
func New(r client.Reader, opts ...Option) *Collector {
	c := &Collector{reader: r, log: logr.Discard(), now: time.Now, seen: map[types.UID]progress{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- phaseDesc
	ch <- deadlineDesc
	ch <- lastProgressDesc
}

// Collect implements prometheus.Collector. A failed read of the cache is
// logged and yields no rollout series (the scrape itself still succeeds).
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	var list fwv1.FirmwareRolloutList
	if err := c.reader.List(ctx, &list); err != nil {
		c.log.Error(err, "list FirmwareRollouts for the rollout metrics")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	alive := make(map[types.UID]bool, len(list.Items))
	for i := range list.Items {
		r := &list.Items[i]
		alive[r.UID] = true
		for _, p := range Phases {
			v := 0.0
			if r.Status.Phase == p {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(phaseDesc, prometheus.GaugeValue, v, r.Namespace, r.Name, string(p))
		}
		ch <- prometheus.MustNewConstMetric(deadlineDesc, prometheus.GaugeValue, deadline(r).Seconds(), r.Namespace, r.Name)
		ch <- prometheus.MustNewConstMetric(lastProgressDesc, prometheus.GaugeValue, c.lastProgress(r, now), r.Namespace, r.Name)
	}
	for uid := range c.seen {
		if !alive[uid] {
			delete(c.seen, uid)
		}
	}
}

// lastProgress records r's fingerprint and returns when it last changed,
// in Unix seconds. c.mu is held.
func (c *Collector) lastProgress(r *fwv1.FirmwareRollout, now time.Time) float64 {
	fp := fingerprint{phase: r.Status.Phase, currentStep: r.Status.CurrentStep, counts: r.Status.StationCounts,
		baking: r.Status.Baking, batches: len(r.Status.Batches)}
	p, ok := c.seen[r.UID]
	if !ok || p.fingerprint != fp {
		p = progress{fingerprint: fp, since: now}
		c.seen[r.UID] = p
	}
	return float64(p.since.UnixMilli()) / 1000
}

// deadline is how long a written station of r may take to reach an
// outcome: its progress deadline, and then its bake time.
func deadline(r *fwv1.FirmwareRollout) time.Duration {
	d := defaultProgressDeadline
	if pd := r.Spec.Strategy.ProgressDeadline; pd != nil {
		d = pd.Duration
	}
	if bt := r.Spec.Strategy.BakeTime; bt != nil {
		d += bt.Duration
	}
	return d
}
