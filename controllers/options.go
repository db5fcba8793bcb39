package controllers

import (
	"flag"
	"time"
)

// Options are the reconciler's tunables.
type Options struct {
	// TargetResync is how long the selector's result is reused before the
	// registry is queried again (it is also refreshed at every step).
	TargetResync time.Duration
	// StatusResync is how often an active rollout re-reads its stations
	// when no CUPS report woke it (reports from other replicas arrive so).
	StatusResync time.Duration
	// PreflightRetry is how often a rollout stalled on its firmware checks
	// again (a blob uploaded late, a Secret fixed).
	PreflightRetry time.Duration
	// WriteConcurrency is how many twin writes run at once; the registry's
	// own rate limit still applies.
	WriteConcurrency int
	// MaxWritesPerReconcile bounds one reconcile's writes of a partial
	// batch (and of a retry), so status shows progress during it. A batch
	// that takes every station left is streamed instead (streamBatch): one
	// pass writes for up to StatusResync, patching its progress into
	// status from the side.
	MaxWritesPerReconcile int
	// MaxConcurrentReconciles is how many rollouts reconcile at once.
	MaxConcurrentReconciles int
	// ReportRelayInterval is how often at most this process writes one
	// rollout's ReportedStationsAnnotation (see ReportRelay).
	ReportRelayInterval time.Duration
}

// DefaultOptions returns the defaults used by the manager.
func DefaultOptions() Options {
	return Options{
		TargetResync:            time.Minute,
		StatusResync:            30 * time.Second,
		PreflightRetry:          5 * time.Minute,
		WriteConcurrency:        16,
		MaxWritesPerReconcile:   2000,
		MaxConcurrentReconciles: 4,
		ReportRelayInterval:     DefaultReportRelayInterval,
	}
}

// BindFlags registers the options on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.DurationVar(&o.TargetResync, "rollout-target-resync", o.TargetResync, "How long a rollout reuses its selector's result before querying IoT Hub again.")
	fs.DurationVar(&o.StatusResync, "rollout-status-resync", o.StatusResync, "How often an active rollout re-reads its stations' twins when no CUPS report woke it.")
	fs.DurationVar(&o.PreflightRetry, "rollout-preflight-retry", o.PreflightRetry, "How often a rollout stalled on its firmware checks it again.")
	fs.IntVar(&o.WriteConcurrency, "rollout-write-concurrency", o.WriteConcurrency, "Twin writes in flight at once per rollout (the IoT Hub rate limit still applies).")
	fs.IntVar(&o.MaxWritesPerReconcile, "rollout-max-writes-per-reconcile", o.MaxWritesPerReconcile, "Twin writes per reconcile of a batch that leaves stations for later steps (and of a retry) before status is updated and the rollout goes on; a batch that takes every station left is written in passes of up to --rollout-status-resync, with its progress patched into status every second.")
	fs.IntVar(&o.MaxConcurrentReconciles, "rollout-max-concurrent-reconciles", o.MaxConcurrentReconciles, "Rollouts reconciled at once.")
	fs.DurationVar(&o.ReportRelayInterval, "rollout-report-relay-interval", o.ReportRelayInterval, "How often at most this process tells another process's controller, through a rollout's annotation, which of its stations reported to this CUPS server.")
}

// withDefaults returns o with every zero value replaced by its default.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	pick := func(v, def time.Duration) time.Duration {
		if v <= 0 {
			return def
		}
		return v
	}
	pickN := func(v, def int) int {
		if v <= 0 {
			return def
		}
		return v
	}
	o.TargetResync = pick(o.TargetResync, d.TargetResync)
	o.StatusResync = pick(o.StatusResync, d.StatusResync)
	o.PreflightRetry = pick(o.PreflightRetry, d.PreflightRetry)
	o.ReportRelayInterval = pick(o.ReportRelayInterval, d.ReportRelayInterval)
	o.WriteConcurrency = pickN(o.WriteConcurrency, d.WriteConcurrency)
	o.MaxWritesPerReconcile = pickN(o.MaxWritesPerReconcile, d.MaxWritesPerReconcile)
	o.MaxConcurrentReconciles = pickN(o.MaxConcurrentReconciles, d.MaxConcurrentReconciles)
	return o
}
