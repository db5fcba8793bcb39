package stationsim

import (
	"math/rand/v2"
	"time"
)

// The real station's poll schedule (src/s2conf.h, src/cups.c, src/tc.c;
// measured with a 2.0.6 station, DESIGN.md section 3).
const (
	// DefaultStart: the station polls CUPS within 0.2 s of every start,
	// the restart after an applied update included.
	DefaultStart = 200 * time.Millisecond
	// DefaultOKSync is CUPS_OKSYNC_INTV: the next poll after a success, and
	// after any poll while the network-server (TC) connection is up.
	DefaultOKSync = 24 * time.Hour
	// DefaultResync is CUPS_RESYNC_INTV (R): the next poll after a failed
	// CUPS session or one that changed the CUPS URI or credentials (unless
	// TC is up), and the wait after TC invoked CUPS.
	DefaultResync = time.Minute
)

// defaultTCBackoff is tc_continue's wait before each of the 11 attempts a
// station makes to reach an unreachable network server (the INFOS backoff
// min(retries,6)×10 s, the first two attempts at once): 390 s in all. After
// the 11th fails it invokes CUPS, which polls R later: every 450 s.
var defaultTCBackoff = []time.Duration{
	0, 0, 10 * time.Second, 20 * time.Second, 30 * time.Second, 40 * time.Second,
	50 * time.Second, 60 * time.Second, 60 * time.Second, 60 * time.Second, 60 * time.Second,
}

// Schedule is when a station polls CUPS. DefaultSchedule is a real
// station's; tests and the demo scale it down (Scale) and usually set
// OKSync to a short check-in interval of their own.
type Schedule struct {
	// Start is the most a start poll comes after the station (re)starts
	// (DefaultStart).
	Start time.Duration
	// OKSync is CUPS_OKSYNC_INTV, the regular check-in (DefaultOKSync).
	OKSync time.Duration
	// Resync is CUPS_RESYNC_INTV, R (DefaultResync).
	Resync time.Duration
	// TCBackoff is the wait before each attempt to reach an unreachable
	// network server; when the last fails the station invokes CUPS, which
	// polls Resync later. Nil: the real station's 11 attempts (390 s),
	// scaled by Resync/DefaultResync.
	TCBackoff []time.Duration
}

// DefaultSchedule returns a real station's schedule.
func DefaultSchedule() Schedule {
	return Schedule{Start: DefaultStart, OKSync: DefaultOKSync, Resync: DefaultResync,
		TCBackoff: append([]time.Duration(nil), defaultTCBackoff...)}
}

// Scale returns the schedule with every duration multiplied by f, e.g.
// DefaultSchedule().Scale(1.0/600) polls R = 100 ms, unreachable
// stations every 750 ms.
func (sc Schedule) Scale(f float64) Schedule {
	mul := func(d time.Duration) time.Duration { return time.Duration(float64(d) * f) }
	out := Schedule{Start: mul(sc.Start), OKSync: mul(sc.OKSync), Resync: mul(sc.Resync)}
	for _, d := range sc.TCBackoff {
		out.TCBackoff = append(out.TCBackoff, mul(d))
	}
	return out
}

// withDefaults fills the zero fields with the real station's values.
func (sc Schedule) withDefaults() Schedule {
	if sc.Start <= 0 {
		sc.Start = DefaultStart
	}
	if sc.OKSync <= 0 {
		sc.OKSync = DefaultOKSync
	}
	if sc.Resync <= 0 {
		sc.Resync = DefaultResync
	}
	return sc
}

// TCGiveUp is how long after its TC engine starts a station whose network
// server is unreachable gives up and invokes CUPS (390 s by default).
func (sc Schedule) TCGiveUp() time.Duration {
	sc = sc.withDefaults()
	if sc.TCBackoff == nil {
		var total time.Duration
		for _, d := range defaultTCBackoff {
			total += d
		}
		return time.Duration(float64(total) * float64(sc.Resync) / float64(DefaultResync))
	}
	var total time.Duration
	for _, d := range sc.TCBackoff {
		total += d
	}
	return total
}

// UnreachableSpacing is the steady spacing of the polls of a station whose
// network server is unreachable: TCGiveUp + Resync (450 s by default).
func (sc Schedule) UnreachableSpacing() time.Duration {
	return sc.TCGiveUp() + sc.withDefaults().Resync
}

// TCState is the state of a station's connection to its network server
// (the TC engine, src/tc.c), as far as it changes when the station polls.
type TCState string

const (
	// TCUp: the connection is established (the zero value means the
	// same); the station polls every OKSync, even after a failed poll.
	TCUp TCState = "Up"
	// TCRejected: the network server rejects the router (/router-info
	// answers with an error): "Router rejected or retry limit reached.
	// Invoking CUPS." at once, then a poll every Resync.
	TCRejected TCState = "Rejected"
	// TCUnreachable: nothing listens, the connection is closed or the
	// websocket upgrade fails: the station gives up after TCGiveUp and
	// polls Resync later, every UnreachableSpacing.
	TCUnreachable TCState = "Unreachable"
)

func (t TCState) up() bool { return t == "" || t == TCUp }

// clock is a station's schedule state: its CUPS timer and its TC engine,
// kept with Station.mu held.
type clock struct {
	sched Schedule
	// okJitter spreads OKSync waits by ±okJitter×OKSync (a fleet does not
	// check in in lockstep); R and the TC backoff are exact, as on the
	// station.
	okJitter float64
	// resyncSet: Resync was given (WithRetryInterval, WithSchedule), so
	// Run's interval does not replace it.
	resyncSet bool

	// timer is the CUPS timer (cups_sync_tmr); next is when the station
	// polls next: the timer, or Resync after the TC engine invokes CUPS
	// (zero: at once).
	timer, next time.Time
	// started: a session ran since the last start (else the next one is
	// the start poll).
	started bool
	// tcConnected: the TC engine is connected; tcGiveUp: the running TC
	// engine gives up and invokes CUPS then (zero when it is not running
	// or is connected).
	tcConnected bool
	tcGiveUp    time.Time
	// lastFailed: the last CUPS session failed (sys_statusCUPS() < 0).
	lastFailed bool

	// fallback: after the start poll of an applied update, the firmware
	// falls back to fallbackTo (with its TC state fallbackTC) at
	// fallbackAt; armed until that start poll.
	fallbackArmed bool
	fallbackAt    time.Time
	fallbackAfter time.Duration
	fallbackTo    string
	fallbackTC    TCState

	// notify wakes the goroutine running the station (Run or a Fleet)
	// when the schedule changed out of turn.
	notify func()
}

// okWait is OKSync, jittered.
func (c *clock) okWait() time.Duration { return jitter(c.sched.OKSync, c.okJitter) }

// startWait is the delay of a start poll: within Start.
func (c *clock) startWait() time.Duration {
	return time.Duration(rand.Int64N(int64(c.sched.Start)) + 1)
}

// restart is a start of the station process at now (the home directory,
// State, stays): the start poll comes within Start, the TC engine starts
// after it.
func (s *Station) restart(now time.Time) {
	s.credSet, s.failCnt = 0, 0
	c := &s.clock
	c.started, c.tcConnected, c.tcGiveUp, c.lastFailed = false, false, time.Time{}, false
	c.next = now.Add(c.startWait())
	c.timer = c.next
}

// settle sets next from the CUPS timer and the TC engine, with s.mu held:
// an engine that gives up before the timer fires clears it
// (sys_triggerCUPS) and the poll comes Resync after.
func (s *Station) settle() {
	c := &s.clock
	c.next = c.timer
	if !c.tcGiveUp.IsZero() && !c.tcGiveUp.After(c.timer) {
		c.next = c.tcGiveUp.Add(c.sched.Resync)
	}
}

// due is when the station next does something: its next poll, or a
// firmware fallback.
func (s *Station) due() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.clock
	if !c.fallbackAt.IsZero() && c.fallbackAt.Before(c.next) {
		return c.fallbackAt
	}
	return c.next
}

// fallBackIfDue restarts the station on its previous package when its
// firmware's fallback time has come. With s.mu held.
func (s *Station) fallBackIfDue(now time.Time) {
	c := &s.clock
	if c.fallbackAt.IsZero() || now.Before(c.fallbackAt) {
		return
	}
	c.fallbackAt = time.Time{}
	s.st.Package = c.fallbackTo
	s.behavior.TC = c.fallbackTC
	s.stats.FallBacks++
	s.restart(now)
}

// beginSession is the schedule's part of the start of a session at now,
// with s.mu held: a TC engine whose give-up time passed has stopped (it
// invoked CUPS, which is this session). It returns whether this is the
// start poll.
func (s *Station) beginSession(now time.Time) bool {
	c := &s.clock
	if !c.tcGiveUp.IsZero() && !now.Before(c.tcGiveUp) {
		c.tcGiveUp = time.Time{}
	}
	return !c.started
}

// scheduleAfter sets the CUPS timer after a session that ended at now, as
// cups_ondone, sys_startTC and tc_continue do, with s.mu held. An applied
// update restarts the station (update.bin restarts it on the new
// firmware).
func (s *Station) scheduleAfter(res *Result, sessionStart, now time.Time) {
	c := &s.clock
	if res.Update == UpdateApplied {
		b := &s.behavior
		tcBefore := b.TC
		if b.TCAfterUpdate != "" {
			b.TC, b.TCAfterUpdate = b.TCAfterUpdate, ""
		}
		if b.FallBackAfter > 0 {
			c.fallbackArmed, c.fallbackAfter = true, b.FallBackAfter
			c.fallbackTo, c.fallbackTC = res.PackageBefore, tcBefore
		}
		c.fallbackAt = time.Time{}
		s.restart(now)
		res.NextPoll = c.next.Sub(now)
		return
	}
	if res.StartPoll && c.fallbackArmed {
		c.fallbackArmed = false
		c.fallbackAt = sessionStart.Add(c.fallbackAfter)
	}
	c.started = true
	c.lastFailed = res.Err != nil
	ahead := c.okWait()
	if res.Err != nil || res.CUPSURIChanged || res.CUPSCredChanged {
		ahead = c.sched.Resync
	}
	if c.tcConnected {
		ahead = c.okWait()
	}
	c.timer = now.Add(ahead)
	if !c.tcConnected && c.tcGiveUp.IsZero() {
		s.startTC(now)
	}
	s.settle()
	res.NextPoll = c.next.Sub(now)
}

// startTC starts the TC engine at now, with s.mu held: it connects (and a
// failed last session is pushed to OKSync, sys_delayCUPS), is rejected at
// once, or gives up after TCGiveUp; giving up invokes CUPS, which polls
// Resync later instead of at the CUPS timer (see settle).
func (s *Station) startTC(now time.Time) {
	c := &s.clock
	switch s.behavior.TC {
	case TCRejected:
		c.tcGiveUp = now
	case TCUnreachable:
		c.tcGiveUp = now.Add(c.sched.TCGiveUp())
	default:
		c.tcConnected = true
		if c.lastFailed {
			c.timer = now.Add(c.okWait())
		}
	}
}

// tcChanged applies a change of Behavior.TC made at now, with s.mu held.
// A connected engine loses its connection and starts over; a running one
// connects (at once, where a real one connects at its next attempt). Before
// the first session, or while the CUPS session TC invoked is pending,
// nothing changes until that session.
func (s *Station) tcChanged(now time.Time) {
	c := &s.clock
	running := !c.tcGiveUp.IsZero() && now.Before(c.tcGiveUp)
	if !c.tcConnected && !running {
		return
	}
	c.tcConnected, c.tcGiveUp = false, time.Time{}
	s.startTC(now)
	s.settle()
}
