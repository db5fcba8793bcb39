package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	kerrors "k8s.io/apimachinery/pkg/util/errors"
	ctrl "sigs.k8s.io/controller-runtime"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// progressInterval is how often at most a batch being written patches its
// progress into status from the side (progressPatcher): every second, or
// progressSpacing times what computing the status took, when longer (the
// status is counted over the whole view: a million stations).
const (
	progressInterval = time.Second
	progressSpacing  = 10
)

// passSpacing bounds what a streamed batch's passes spend on anything but
// writing: a pass takes stations for StatusResync, or passSpacing times
// what it spent before its first write (reading and classifying the
// rollout's stations), when longer. A pass's set-up grows with the
// rollout; with a fixed pass length, a rollout's passes would grow in
// number with it too, and its cost with the square of the fleet. A long
// pass is as safe as a short one: every progressInterval it lays the CUPS
// server's reports over its view (applyReports), and it stops within about
// a second of a change to the rollout's spec (a pause, an abort, an edit),
// its deletion, or its failures passing maxFailures (checkStop).
const passSpacing = 9

// maxReportsPerApply bounds the twins one applyReports reads, so that the
// hand-over to the writers never waits long; the rest wait for the next.
const maxReportsPerApply = 256

// streamQueue is how many page twins wait for a writer at most: about a
// page, so that the next page is read while the last one is written, and
// no more than two pages of twins are held at once.
const streamQueue = 1024

// errStreamStop ends the selection query of a streamed batch early.
var errStreamStop = errors.New("stream stopped")

// streamBatch writes a batch that takes every station still unwritten (a
// 100% batch, or one whose count covers the rest) as the selection's
// pages arrive: each page twin that is one of the view's unwritten
// stations is claimed with the twin and ETag the page gave (one ETag-
// conditional write, no read; a stale ETag reads the twin again and decides
// anew, TwinRegistry.UpdateKnown), while the next page is read. Stations
// the query no longer returns are claimed as writeBatch does (read, then
// write), so the batch is exactly the view's unwritten stations, whatever
// the query returns besides. Progress is patched into status from the side
// at most every progressInterval while the writes go on; the pass's own
// status patch stays the authoritative one. A pass stops taking new
// stations after StatusResync (or passSpacing times its set-up, when
// longer), so that the owned stations are read in full again between
// passes of a long batch (a real hub writes 40 twins a second), and at
// once when the rollout's spec changes, it is deleted or its failures pass
// maxFailures (checkStop); the next pass goes on with the stations left.
// That time runs from the pass's first write. The query leaves out the
// stations this rollout owns (twin.Selector.NotOwnerUID), so a later pass
// does not page through those written before it; a pass that read the
// selection itself (a rollout's first, when it has at most keepTwins
// stations) writes from the twins that read gave instead of querying again.
func (r *FirmwareRolloutReconciler) streamBatch(ctx context.Context, s *rolloutScope, step, size int) (time.Duration, error) {
	b := &batchStream{r: r, s: s, step: step, size: size, own: newOwnership(s, step),
		batch: s.view.unwritten, sent: make([]bool, len(s.view.unwritten)),
		jobs: make(chan streamJob, streamQueue), seen: map[string]string{}, skipped: map[string][2]string{},
		tick: time.NewTicker(progressInterval / 4), lastProgress: time.Now()}
	defer b.tick.Stop()
	b.startWriters(ctx)
	b.prog = r.startProgress(ctx, s)
	start := time.Now()
	stopped, qerr := b.query(ctx)
	b.wait(ctx)
	r.stopProgress(s, b.prog)
	r.noteReported(s.obj, b.seen)
	r.noteSkipped(s.obj, b.skipped)
	b.leftover()
	ctrl.LoggerFrom(ctx).V(1).Info("streamed batch", "step", step, "written", b.written, "left", len(s.view.unwritten),
		"seconds", time.Since(start).Seconds())
	if qerr != nil {
		b.errs = append(b.errs, fmt.Errorf("query stations selected by %s: %w", s.key(), qerr))
	}
	if len(b.errs) > 0 {
		return 0, kerrors.NewAggregate(b.errs)
	}
	if stopped || b.stop.Load() {
		return time.Millisecond, nil // more of this batch to write, or the halt to decide
	}
	return r.requeueWhileInFlight(s), nil
}

// batchStream is one pass of streamBatch. Everything that touches the
// view runs in the pass's goroutine; the writers only claim.
type batchStream struct {
	r          *FirmwareRolloutReconciler
	s          *rolloutScope
	step, size int
	own        twin.Ownership
	// batch are the batch's stations (positions in the view) in spread
	// order, the view's; sent marks those handed to a writer.
	batch []int
	sent  []bool
	jobs  chan streamJob
	wg    sync.WaitGroup

	mu      sync.Mutex
	results []claim // finished claims not yet laid over the view

	prog         *progressPatcher
	lastProgress time.Time
	progressTook time.Duration // what the last progress snapshot took
	// lastCheck is when the pass last looked at the CUPS server's reports
	// and at the cached rollout; stop says the rollout changed or failed
	// too much (checkStop): the pass takes no more stations, and the
	// writers drop those queued (they stay unwritten, for the next pass
	// to decide on).
	lastCheck time.Time
	stop      atomic.Bool
	tick      *time.Ticker
	errs      []error
	written   int
	seen      map[string]string    // stations found off the upgrade path: their package
	skipped   map[string][2]string // stations another active rollout owns: its UID and name
}

// streamJob is one station for a writer: batch[k], with its page twin (nil:
// read it first).
type streamJob struct {
	k int
	t *twin.Twin
}

// find is the position in b.batch of the station id, -1 when it is not in
// the batch: its position in the view (stationView.find), then in the
// batch, whose positions are ascending (the view's unwritten, in spread
// order); so no map of the batch is built (v.all does not move while the
// batch is written).
func (b *batchStream) find(id string) int {
	i := b.s.view.find(b.s.uid(), id)
	if i < 0 {
		return -1
	}
	if k, ok := slices.BinarySearch(b.batch, i); ok {
		return k
	}
	return -1
}

// startWriters starts WriteConcurrency writers on b.jobs.
func (b *batchStream) startWriters(ctx context.Context) {
	for range max(b.r.Options.WriteConcurrency, 1) {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for j := range b.jobs {
				if b.stop.Load() {
					continue // left for the next pass (leftover)
				}
				i := b.batch[j.k]
				c := b.r.claim(ctx, b.s, i, b.s.view.station(i), j.t, b.own)
				b.mu.Lock()
				b.results = append(b.results, c)
				b.mu.Unlock()
			}
		}()
	}
}

// query reads the selection and hands each of the batch's stations to a
// writer with its page twin, then those the query did not return without
// one. It reports whether it stopped at the pass's time limit.
func (b *batchStream) query(ctx context.Context) (bool, error) {
	var (
		stopped bool
		writing time.Time     // the pass's first hand-over to a writer
		length  time.Duration // how long the pass takes stations
	)
	take := func(page []*twin.Twin) error {
		b.apply(ctx)
		for _, t := range page {
			k := b.find(t.DeviceID)
			if k < 0 || b.sent[k] {
				continue // not in the batch
			}
			// The pass's time runs from its first write, not from the
			// query's start: on a big fleet or a slow hub the query's
			// first pages alone can outlast StatusResync (counted from
			// the start, such a pass would write nothing and the batch
			// never end).
			if writing.IsZero() {
				writing = time.Now()
				length = max(b.r.Options.StatusResync, passSpacing*writing.Sub(b.s.began))
			} else if b.stop.Load() || time.Since(writing) >= length {
				stopped = true
				return errStreamStop
			}
			b.sent[k] = true
			if err := b.send(ctx, streamJob{k: k, t: t}); err != nil {
				return err
			}
		}
		return nil
	}
	err := b.pages(ctx, take)
	if errors.Is(err, errStreamStop) {
		err = nil
	}
	if err == nil && !stopped {
		// Stations the query did not return (deleted, or no longer
		// selected since the view's selection was read): claimed as
		// writeBatch would, from a fresh read.
		for k := range b.batch {
			if !b.sent[k] {
				b.sent[k] = true
				if err = b.send(ctx, streamJob{k: k}); err != nil {
					break
				}
			}
		}
	}
	close(b.jobs)
	return stopped, err
}

// pages calls take with the twins of the selection this rollout does not
// own yet: those the pass's own read of the selection kept (selTwins), or a
// query's pages (a later pass of a long batch does not page through the
// stations written before it).
func (b *batchStream) pages(ctx context.Context, take func([]*twin.Twin) error) error {
	if kept := b.s.selTwins; kept != nil {
		b.s.selTwins = nil
		return take(notOwnedBy(kept, b.s.uid()))
	}
	obj := b.s.obj
	sel := twin.Selector{DeviceIDs: obj.Spec.Selector.DeviceIDs, Tags: obj.Spec.Selector.Tags, NotOwnerUID: b.s.uid()}
	return b.r.Registry.Query(ctx, sel, take)
}

// send hands j to a writer, laying finished claims over the view while it
// waits.
func (b *batchStream) send(ctx context.Context, j streamJob) error {
	for {
		select {
		case b.jobs <- j:
			return nil
		case <-b.tick.C:
			b.apply(ctx)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wait waits for the writers, laying their claims over the view.
func (b *batchStream) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-b.tick.C:
			b.apply(ctx)
		}
	}
	b.apply(ctx)
}

// apply lays the finished claims over the view, and hands the progress
// patcher the status at most every progressInterval.
func (b *batchStream) apply(ctx context.Context) {
	b.mu.Lock()
	done := b.results
	b.results = nil
	b.mu.Unlock()
	for _, c := range done {
		if c.err != nil {
			b.errs = append(b.errs, fmt.Errorf("write twin %s: %w", c.s.ID, c.err))
			continue
		}
		if b.r.applyClaim(b.s, c) {
			b.written++
		}
		if c.offPath {
			b.seen[c.s.ID] = c.s.Package
		}
		if c.skipped != "" {
			b.skipped[c.s.ID] = [2]string{c.skippedUID, c.skipped}
		}
	}
	if len(done) > 0 && time.Since(b.lastProgress) >= max(progressInterval, progressSpacing*b.progressTook) {
		start := time.Now()
		b.prog.offer(b.r.progressSnapshot(ctx, b.s, b.step, b.size))
		b.lastProgress, b.progressTook = time.Now(), time.Since(start)
	}
	if time.Since(b.lastCheck) >= progressInterval {
		b.lastCheck = time.Now()
		b.applyReports(ctx)
		if !b.stop.Load() && b.r.checkStop(ctx, b.s) {
			b.stop.Store(true)
		}
	}
}

// leftover leaves in the view's unwritten the batch's stations not handed
// to a writer, those a writer dropped (the rollout changed) and those whose
// write failed.
func (b *batchStream) leftover() {
	v := b.s.view
	var left []int
	for k, i := range b.batch {
		if !b.sent[k] || v.state(i) == fwv1.OutcomePending {
			left = append(left, i)
		}
	}
	v.unwritten = left
}

// noteSkipped records, in the cached selection, the owner of each station
// a claim found owned by another active rollout (id -> UID, name), so that
// the next pass counts it Skipped instead of trying it again; the
// selection's refresh (TargetResync, or the next step) reads it anew.
func (r *FirmwareRolloutReconciler) noteSkipped(obj *fwv1.FirmwareRollout, skipped map[string][2]string) {
	if len(skipped) == 0 {
		return
	}
	r.amendTargets(obj, func(t *target) {
		if o, ok := skipped[t.id]; ok {
			info := t.get()
			info.ownerUID, info.ownerName = o[0], o[1]
			t.set(info)
		}
	})
}

// notOwnedBy are the twins of ts whose ownership record does not name the
// rollout uid, as twin.Selector.NotOwnerUID selects them.
func notOwnedBy(ts []*twin.Twin, uid string) []*twin.Twin {
	out := ts[:0:0]
	for _, t := range ts {
		if t.Ownership == nil || t.Ownership.UID != uid {
			out = append(out, t)
		}
	}
	return out
}
