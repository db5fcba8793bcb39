package cups

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// Sizing of the observation writer. The registry adapter rate-limits
// writes; the queue absorbs a poll storm's first sightings (each station's
// first poll is a write) without making stations wait on IoT Hub.
const (
	recorderWorkers  = 8
	recorderQueueLen = 8192
	// recorderDrainTimeout bounds how long shutdown waits for queued writes.
	recorderDrainTimeout = 10 * time.Second
)

// pendingObs is what is waiting to be written for one station: the latest
// request and every decision outcome since the last write (so that two
// updates served before one write still count twice).
type pendingObs struct {
	req      *Request
	now      time.Time
	outcomes []Outcome
	notify   string // rollout to wake after the write, empty for none
	log      logr.Logger
}

// recorder writes observations durably off the request path, coalescing
// the writes queued for one station. When it is not running (a Server used
// only as an http.Handler) or its queue is full, writes happen in the
// caller, so that nothing is dropped.
type recorder struct {
	store    TwinStore
	cache    *TwinCache
	notifier Notifier
	m        *metrics
	refresh  time.Duration

	running atomic.Bool
	busy    atomic.Int64 // stations queued or being written (tests wait on it)
	done    chan struct{}
	mu      sync.Mutex
	pending map[string]*pendingObs
	// writing holds the stations whose write is under way: a station's
	// next write waits for it (write queues it at its end), so that two
	// writes of one station never overlap and the cache keeps its twin.
	writing map[string]bool
	// latest is, for each station with a write queued or under way, the
	// observation of its latest decision: until the writes are in the
	// twin, the cache holds an older one, and the next poll is decided on
	// this one (a station that fell back seconds after it reported the
	// package must not be sent the update again).
	latest map[string]twin.Observation
	queue  chan string
	wg     sync.WaitGroup
}

func newRecorder(s *Server) *recorder {
	return &recorder{
		store: s.store, cache: s.cache, notifier: s.notifier, m: s.m, refresh: s.opts.ObservationRefresh,
		pending: map[string]*pendingObs{}, writing: map[string]bool{}, latest: map[string]twin.Observation{}, queue: make(chan string, recorderQueueLen), done: make(chan struct{}),
	}
}

// start runs the workers until stop.
func (r *recorder) start() {
	r.running.Store(true)
	for range recorderWorkers {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for {
				select {
				case id := <-r.queue:
					ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
					r.write(ctx, id)
					cancel()
				case <-r.done:
					return
				}
			}
		}()
	}
}

// stop ends the workers, then writes what is still queued, within
// recorderDrainTimeout.
func (r *recorder) stop() {
	r.running.Store(false)
	close(r.done)
	r.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), recorderDrainTimeout)
	defer cancel()
	for {
		select {
		case id := <-r.queue:
			r.write(ctx, id)
		default:
			return
		}
	}
}

// record queues (or, when not running or full, makes) the write of an
// observation decided for a request.
func (r *recorder) record(ctx context.Context, deviceID string, req *Request, d Decision, now time.Time, cached *twin.Twin, log logr.Logger) {
	notify := ""
	if d.Notify && cached.Ownership != nil {
		notify = cached.Ownership.Rollout
	}
	r.mu.Lock()
	p, queued := r.pending[deviceID]
	if !queued {
		p = &pendingObs{}
		r.pending[deviceID] = p
		r.busy.Add(1)
	}
	p.req, p.now, p.log = req, now, log
	p.outcomes = append(p.outcomes, d.Outcome)
	r.latest[deviceID] = d.Observation
	if notify != "" {
		p.notify = notify
	}
	r.mu.Unlock()
	if d.Outcome.Served != "" {
		// Until the write returns, the cached twin would still hold the
		// count before this update: a station polling again at once would
		// be sent one update more than maxUpdateAttempts.
		next := *cached
		obs := d.Observation
		next.Observation = &obs
		r.cache.Replace(cached, &next)
	}
	if queued {
		return // coalesced into the write already queued
	}
	r.mu.Lock()
	busy := r.writing[deviceID]
	r.mu.Unlock()
	if busy {
		return // the write under way queues this one when it ends
	}
	r.schedule(ctx, deviceID)
}

// schedule queues the station's pending write, or makes it in the caller
// when the workers are not running or the queue is full.
func (r *recorder) schedule(ctx context.Context, deviceID string) {
	if r.running.Load() {
		select {
		case r.queue <- deviceID:
			return
		default:
			r.m.obsWrites.WithLabelValues("queueFull").Inc()
		}
	}
	r.write(ctx, deviceID)
}

// write takes the station's pending observation and writes it, recomputed
// on the registry's current twin so that concurrent replicas count right.
func (r *recorder) write(ctx context.Context, deviceID string) {
	r.mu.Lock()
	p := r.pending[deviceID]
	if p == nil || r.writing[deviceID] {
		r.mu.Unlock()
		return // nothing to write, or the write under way queues it at its end
	}
	delete(r.pending, deviceID)
	r.writing[deviceID] = true
	r.mu.Unlock()
	defer r.busy.Add(-1)
	defer r.next(ctx, deviceID)
	var changed bool // something besides LastSeen changed in the twin as written
	start := r.cache.BeginWrite(deviceID)
	written, err := r.store.Update(ctx, deviceID, func(t *twin.Twin) (*twin.Patch, error) {
		prev, record := t.Observation, false
		changed = false
		for _, out := range p.outcomes {
			obs, rec, ch := Observe(prev, p.req, out, p.now, r.refresh)
			prev, record, changed = &obs, record || rec, changed || ch
		}
		if !record {
			return nil, nil
		}
		return twin.ObservationPatch(*prev), nil
	})
	if err != nil {
		r.cache.EndWrite(deviceID, nil, start)
		r.m.obsWrites.WithLabelValues("error").Inc()
		p.log.Error(err, "record station observation")
		return
	}
	r.m.obsWrites.WithLabelValues("ok").Inc()
	r.cache.EndWrite(deviceID, written, start)
	// Wake the controller only for news: a request decided on a stale
	// cached twin may find the registry already up to date.
	if changed && p.notify != "" && r.notifier != nil {
		r.notifier.Notify(p.notify, deviceID)
	}
}

// overlay returns t with the observation of the station's latest
// decision whose write is not yet in the twin, or t itself when there is
// none. t is not modified.
func (r *recorder) overlay(t *twin.Twin) *twin.Twin {
	if r.busy.Load() == 0 {
		// Nothing queued or being written: no latest observation (record
		// counts a station busy before it sets its latest, next drops it
		// before the count falls). The common case of a poll, without a
		// lock every poll would take.
		return t
	}
	r.mu.Lock()
	obs, ok := r.latest[t.DeviceID]
	r.mu.Unlock()
	if !ok {
		return t
	}
	c := *t
	c.Observation = new(obs)
	return &c
}

// next ends the station's write and schedules the one that was recorded
// while it was under way, if any.
func (r *recorder) next(ctx context.Context, deviceID string) {
	r.mu.Lock()
	delete(r.writing, deviceID)
	_, more := r.pending[deviceID]
	if !more {
		delete(r.latest, deviceID) // the twin (and the cache) hold it now, or the write failed
	}
	r.mu.Unlock()
	if more {
		r.schedule(ctx, deviceID)
	}
}

// PendingObservations returns how many stations have an observation queued
// or being written. It is zero once the observation of every answered
// request is in its twin (or failed to be written), so a caller that has
// its answer can wait for its record: the count rises before the answer is
// sent.
func (s *Server) PendingObservations() int { return int(s.rec.busy.Load()) }
