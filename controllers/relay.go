package controllers

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// The relay needs to read a rollout in any namespace and patch its
// annotations; the manager's ClusterRole already grants both.
// +kubebuilder:rbac:groups=firmware.stationfleet.io,resources=firmwarerollouts,verbs=get;patch

// Relay limits. A relay write costs the API server a write and the owner a
// reconcile, so one rollout gets at most one per interval from each
// process, and all rollouts together at most relayWriteRate per second.
const (
	// DefaultReportRelayInterval is how often at most one process writes
	// one rollout's annotation: a station's report reaches status within
	// about this long plus two API round trips (DESIGN.md: <= 1 s).
	DefaultReportRelayInterval = 200 * time.Millisecond
	relayWriteRate             = 20
	relayWriteBurst            = 40
	relayWorkers               = 2
	// relayMaxRetries bounds the retries of a write that failed for a
	// transient reason; past it the owner's periodic full read
	// (--rollout-status-resync) catches the reports.
	relayMaxRetries = 5
)

var (
	relayWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stationfleet_rollout_report_relay_writes_total",
		Help: "Writes of the reported-stations annotation on rollouts this process does not run, by result (ok, gone, forbidden, error).",
	}, []string{"result"})
	reportsTaken = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stationfleet_rollout_reports_taken_total",
		Help: "Reported-stations annotations the controller read and removed from the rollouts it runs.",
	})
)

func init() {
	metrics.Registry.MustRegister(relayWrites, reportsTaken)
}

// ReportRelay tells the manager that runs a rollout which of its stations
// reported news to a CUPS server in this process, when this process's own
// controller does not run the rollout (another namespace, or this replica
// is not the leader). The IoT Hub holds the observation already; the relay
// only adds the station to the rollout's ReportedStationsAnnotation, which
// the owner's informer sees at once. Reports are coalesced per rollout: at
// most one write per Interval, none when the annotation already names every
// reported station. It is a manager.Runnable that runs on every replica.
type ReportRelay struct {
	c        client.Client // writes
	reader   client.Reader // uncached reads: the cache holds the watched namespaces only
	interval time.Duration
	limiter  *rate.Limiter
	queue    workqueue.TypedRateLimitingInterface[string]
	log      logr.Logger

	mu      sync.Mutex
	pending map[string]*relayed // "ns/name" -> stations not yet written
	last    map[string]time.Time
}

// relayed is what waits to be written for one rollout.
type relayed struct {
	ids  map[string]struct{}
	more bool
}

var (
	_ manager.Runnable               = (*ReportRelay)(nil)
	_ manager.LeaderElectionRunnable = (*ReportRelay)(nil)
)

// NewReportRelay returns a relay that reads rollouts through reader (the
// manager's API reader) and patches them through c. interval <= 0 means
// DefaultReportRelayInterval.
func NewReportRelay(c client.Client, reader client.Reader, interval time.Duration) *ReportRelay {
	if interval <= 0 {
		interval = DefaultReportRelayInterval
	}
	return &ReportRelay{
		c: c, reader: reader, interval: interval,
		limiter: rate.NewLimiter(relayWriteRate, relayWriteBurst),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.NewTypedItemExponentialFailureRateLimiter[string](interval, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "stationfleet-report-relay"}),
		log:     ctrl.Log.WithName("report-relay"),
		pending: map[string]*relayed{},
		last:    map[string]time.Time{},
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica's CUPS server relays.
func (r *ReportRelay) NeedLeaderElection() bool { return false }

// Report queues the station deviceID of the rollout "namespace/name". It
// never blocks.
func (r *ReportRelay) Report(rollout, deviceID string) {
	if r == nil || deviceID == "" || !strings.Contains(rollout, "/") {
		return
	}
	r.mu.Lock()
	p := r.pending[rollout]
	if p == nil {
		p = &relayed{ids: map[string]struct{}{}}
		r.pending[rollout] = p
	}
	if len(p.ids) < maxReportedStations {
		p.ids[deviceID] = struct{}{}
	} else {
		p.more = true
	}
	// The first report after a quiet spell goes out at once; then at most
	// one write per interval.
	delay := time.Until(r.last[rollout].Add(r.interval))
	r.mu.Unlock()
	if delay > 0 {
		r.queue.AddAfter(rollout, delay)
	} else {
		r.queue.Add(rollout)
	}
}

// Start implements manager.Runnable.
func (r *ReportRelay) Start(ctx context.Context) error {
	r.log = ctrl.LoggerFrom(ctx).WithName("report-relay")
	var wg sync.WaitGroup
	for range relayWorkers {
		wg.Go(func() {
			for r.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	r.queue.ShutDown()
	wg.Wait()
	return nil
}

// next writes one rollout's reports; it returns false once the queue is
// shut down.
func (r *ReportRelay) next(ctx context.Context) bool {
	key, shutdown := r.queue.Get()
	if shutdown {
		return false
	}
	defer r.queue.Done(key)
	r.mu.Lock()
	p := r.pending[key]
	delete(r.pending, key)
	r.last[key] = time.Now()
	r.mu.Unlock()
	if p == nil {
		return true
	}
	if err := r.limiter.Wait(ctx); err != nil {
		return true // shutting down
	}
	result, err := r.write(ctx, key, p)
	relayWrites.WithLabelValues(result).Inc()
	switch {
	case err == nil:
		r.queue.Forget(key)
	case result == "error" && r.queue.NumRequeues(key) < relayMaxRetries:
		r.log.V(1).Info("relaying station reports failed; retrying", "rollout", key, "error", err.Error())
		r.requeue(key, p)
	default:
		r.queue.Forget(key)
		r.log.Info("could not relay station reports to the rollout; its controller reads them at its next full resync",
			"rollout", key, "stations", len(p.ids), "result", result, "error", err.Error())
	}
	return true
}

// requeue puts p back and retries the rollout with backoff.
func (r *ReportRelay) requeue(key string, p *relayed) {
	r.mu.Lock()
	if q := r.pending[key]; q != nil {
		for id := range q.ids {
			if len(p.ids) < maxReportedStations {
				p.ids[id] = struct{}{}
			} else {
				p.more = true
			}
		}
		p.more = p.more || q.more
	}
	r.pending[key] = p
	r.mu.Unlock()
	r.queue.AddRateLimited(key)
}

// write adds p's stations to the rollout's annotation, guarded by its
// resourceVersion (the owner removes the annotation concurrently). It
// returns the metric's result label.
func (r *ReportRelay) write(ctx context.Context, key string, p *relayed) (string, error) {
	ns, name, _ := strings.Cut(key, "/")
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj := &fwv1.FirmwareRollout{}
		if err := r.reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
			return err
		}
		switch obj.Status.Phase {
		case fwv1.PhaseCompleted, fwv1.PhaseAborted:
			return nil // its status is history: nothing to tell
		}
		if !obj.DeletionTimestamp.IsZero() {
			return nil
		}
		reports, err := parseReports(obj.Annotations[fwv1.ReportedStationsAnnotation])
		if err != nil {
			reports = stationReports{More: true}
		}
		if !reports.merge(p.ids, p.more) {
			return nil // already named: no write
		}
		base := obj.DeepCopy()
		if obj.Annotations == nil {
			obj.Annotations = map[string]string{}
		}
		obj.Annotations[fwv1.ReportedStationsAnnotation] = reports.String()
		return r.c.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	})
	switch {
	case err == nil:
		return "ok", nil
	case apierrors.IsNotFound(err):
		return "gone", nil
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err):
		return "forbidden", err
	default:
		return "error", err
	}
}
