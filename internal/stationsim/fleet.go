package stationsim

import (
	"container/heap"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// FleetOptions configures a Fleet.
type FleetOptions struct {
	// Interval between two polls of one station (default 5 s).
	Interval time.Duration
	// RetryInterval is the wait after a failed session or one that changed
	// the station's CUPS URI or credentials (CUPS_RESYNC_INTV); default
	// Interval.
	RetryInterval time.Duration
	// Jitter spreads polls by ±Jitter×Interval (default 0.1); the first
	// poll of each station is spread over one whole Interval so a fleet
	// does not start as a thundering herd.
	Jitter float64
	// Workers bounds the sessions in flight (default 64).
	Workers int
	// OnResult, when set, is called after every poll (from worker
	// goroutines, concurrently).
	OnResult func(*Station, Result)
}

// Fleet runs many stations in one process: a bounded pool of workers, one
// scheduler, a shared dialer and TLS session cache.
type Fleet struct {
	opts     FleetOptions
	stations []*Station
}

// NewFleet returns a fleet of the given stations. Each station gets the
// fleet's shared dialer and TLS session cache.
func NewFleet(stations []*Station, opts FleetOptions) *Fleet {
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.Jitter <= 0 {
		opts.Jitter = 0.1
	}
	if opts.Workers <= 0 {
		opts.Workers = 64
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: -1}
	sessions := tls.NewLRUClientSessionCache(len(stations) + 1)
	for _, s := range stations {
		s.mu.Lock()
		s.dial = dialer.DialContext
		s.sessions = sessions
		s.mu.Unlock()
	}
	return &Fleet{opts: opts, stations: stations}
}

// Stations returns the fleet's stations.
func (f *Fleet) Stations() []*Station { return f.stations }

// Stats sums the counters of all stations.
func (f *Fleet) Stats() Stats {
	var total Stats
	for _, s := range f.stations {
		total.add(s.Stats())
	}
	return total
}

type due struct {
	at time.Time
	s  *Station
}

type dueHeap []due

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// delay is the wait before s's next session.
func (f *Fleet) delay(s *Station) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retryNext && f.opts.RetryInterval > 0 {
		return f.opts.RetryInterval
	}
	return f.opts.Interval
}

// Run polls every station every Interval (jittered) until ctx ends, then
// waits for the sessions in flight and returns ctx.Err(). Stations with
// Behavior.StopPolling are skipped but stay scheduled.
func (f *Fleet) Run(ctx context.Context) error {
	now := time.Now()
	h := make(dueHeap, 0, len(f.stations))
	for i, s := range f.stations {
		offset := time.Duration(int64(f.opts.Interval) * int64(i) / int64(max(len(f.stations), 1)))
		h = append(h, due{at: now.Add(jitter(offset, f.opts.Jitter)), s: s})
	}
	heap.Init(&h)

	work := make(chan *Station)
	done := make(chan *Station, f.opts.Workers)
	var wg sync.WaitGroup
	for range f.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				if !s.Behavior().StopPolling {
					r := s.Poll(ctx)
					if f.opts.OnResult != nil && !ctxOver(ctx) {
						f.opts.OnResult(s, r)
					}
				}
				done <- s
			}
		}()
	}
	defer func() {
		close(work)
		go func() {
			for range done { // drain until workers exit
			}
		}()
		wg.Wait()
		close(done)
	}()

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// Reschedule finished stations.
		for drained := false; !drained; {
			select {
			case s := <-done:
				heap.Push(&h, due{at: time.Now().Add(jitter(f.delay(s), f.opts.Jitter)), s: s})
			default:
				drained = true
			}
		}
		var next chan<- *Station
		var nextS *Station
		if h.Len() > 0 {
			if wait := time.Until(h[0].at); wait <= 0 {
				next, nextS = work, h[0].s
			} else {
				timer.Reset(wait)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case next <- nextS:
			heap.Pop(&h)
		case s := <-done:
			heap.Push(&h, due{at: time.Now().Add(jitter(f.delay(s), f.opts.Jitter)), s: s})
		case <-timer.C:
		}
	}
}
