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
	// Interval is the stations' regular check-in, Schedule.OKSync
	// (CUPS_OKSYNC_INTV, 24 h on a real station; default 5 s). It
	// replaces Schedule.OKSync when set.
	Interval time.Duration
	// RetryInterval is Schedule.Resync (CUPS_RESYNC_INTV, R): the wait
	// after a failed session or one that changed the station's CUPS URI or
	// credentials while TC is not up, and after TC invoked CUPS. It
	// replaces Schedule.Resync when set; default Schedule.Resync, or
	// Interval when that is not set either.
	RetryInterval time.Duration
	// Schedule is the rest of the stations' schedule: Start (default
	// 0.2 s) and the TC backoff (default the real one scaled by
	// Resync/60 s), e.g. DefaultSchedule().Scale(1.0/300) with an Interval
	// of a few seconds.
	Schedule Schedule
	// Jitter spreads OKSync waits by ±Jitter×OKSync (default 0.1); the
	// first poll of each station is spread over one whole OKSync so a
	// fleet does not start as a thundering herd. R, the TC backoff and
	// start polls are exact, as on a real station.
	Jitter float64
	// Workers bounds the sessions in flight (default 64).
	Workers int
	// OnResult, when set, is called after every poll (from worker
	// goroutines, concurrently).
	OnResult func(*Station, Result)
}

// schedule is the stations' schedule the options make.
func (o FleetOptions) schedule() Schedule {
	sc := o.Schedule
	if o.Interval > 0 {
		sc.OKSync = o.Interval
	}
	if sc.OKSync <= 0 {
		sc.OKSync = 5 * time.Second
	}
	switch {
	case o.RetryInterval > 0:
		sc.Resync = o.RetryInterval
	case sc.Resync <= 0:
		sc.Resync = sc.OKSync
	}
	return sc.withDefaults()
}

// Fleet runs many stations in one process: a bounded pool of workers, one
// scheduler, a shared dialer and TLS session cache.
type Fleet struct {
	opts     FleetOptions
	stations []*Station
}

// NewFleet returns a fleet of the given stations. Each station gets the
// fleet's schedule, shared dialer and TLS session cache.
func NewFleet(stations []*Station, opts FleetOptions) *Fleet {
	sched := opts.schedule()
	opts.Interval = sched.OKSync
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
		s.clock.sched, s.clock.okJitter, s.clock.resyncSet = sched, opts.Jitter, true
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

// due is a station's next turn in the scheduler; gen tells a current
// entry from one replaced when the station was woken.
type due struct {
	at  time.Time
	i   int
	gen uint64
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

// wakeups collects the stations whose schedule changed out of turn
// (SetBehavior, Restart, a poll made by someone else).
type wakeups struct {
	mu      sync.Mutex
	pending []int
	signal  chan struct{}
}

func (w *wakeups) add(i int) {
	w.mu.Lock()
	w.pending = append(w.pending, i)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *wakeups) take() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending
	w.pending = nil
	return p
}

// Run polls every station on its schedule until ctx ends, then waits for
// the sessions in flight and returns ctx.Err(). The stations start spread
// over one OKSync interval (jittered): each one's first poll is its start
// poll. Stations with Behavior.StopPolling are skipped but stay scheduled
// (OKSync later).
func (f *Fleet) Run(ctx context.Context) error {
	now := time.Now()
	n := len(f.stations)
	h := make(dueHeap, 0, n)
	gen := make([]uint64, n)
	busy := make([]bool, n)
	wakes := &wakeups{signal: make(chan struct{}, 1)}
	push := func(i int) {
		gen[i]++
		heap.Push(&h, due{at: f.stations[i].due(), i: i, gen: gen[i]})
	}
	for i, s := range f.stations {
		offset := time.Duration(int64(f.opts.Interval) * int64(i) / int64(max(n, 1)))
		s.mu.Lock()
		s.clock.next = now.Add(jitter(offset, f.opts.Jitter))
		s.clock.timer = s.clock.next
		s.clock.notify = func() { wakes.add(i) }
		s.mu.Unlock()
		push(i)
	}
	defer func() {
		for _, s := range f.stations {
			s.mu.Lock()
			s.clock.notify = nil
			s.mu.Unlock()
		}
	}()

	work := make(chan int)
	done := make(chan int, f.opts.Workers)
	var wg sync.WaitGroup
	for range f.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				s := f.stations[i]
				if r, polled := s.fire(ctx); polled && f.opts.OnResult != nil && !ctxOver(ctx) {
					f.opts.OnResult(s, r)
				}
				done <- i
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

	finished := func(i int) { busy[i] = false; push(i) }
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// Reschedule finished and woken stations.
		for drained := false; !drained; {
			select {
			case i := <-done:
				finished(i)
			default:
				drained = true
			}
		}
		for _, i := range wakes.take() {
			if !busy[i] { // a busy one is rescheduled when it is done
				push(i)
			}
		}
		var next chan<- int
		nextI := -1
		for h.Len() > 0 && h[0].gen != gen[h[0].i] {
			heap.Pop(&h) // replaced by a later entry
		}
		if h.Len() > 0 {
			if wait := time.Until(h[0].at); wait <= 0 {
				next, nextI = work, h[0].i
			} else {
				timer.Reset(wait)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case next <- nextI:
			heap.Pop(&h)
			busy[nextI] = true
			gen[nextI]++ // no entry stays current while it is busy
		case i := <-done:
			finished(i)
		case <-wakes.signal:
		case <-timer.C:
		}
	}
}
