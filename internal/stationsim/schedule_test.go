package stationsim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// pollLog is a small CUPS server for the schedule tests: it records when
// each request arrived and the package it reported, and offers an unsigned
// update to every station that reports from (once per station when once is
// set), "nothing to change" otherwise.
type pollLog struct {
	*httptest.Server
	from, to string
	fail     bool // answer 503 to everything

	mu      sync.Mutex
	polls   []poll
	offered map[string]bool
	once    bool
}

type poll struct {
	at      time.Time
	router  string
	pkg     string
	updated bool // this answer carried the update
}

func newPollLog(t *testing.T, from, to string) *pollLog {
	t.Helper()
	fw, err := UpdateScript(to, 0)
	if err != nil {
		t.Fatal(err)
	}
	update := body("", "", nil, nil, nil, fw)
	pl := &pollLog{from: from, to: to, offered: map[string]bool{}}
	pl.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		b, _ := io.ReadAll(r.Body)
		var req struct {
			Router  string `json:"router"`
			Package string `json:"package"`
		}
		_ = json.Unmarshal(b, &req)
		pl.mu.Lock()
		send := req.Package == pl.from && !(pl.once && pl.offered[req.Router])
		if send {
			pl.offered[req.Router] = true
		}
		pl.polls = append(pl.polls, poll{at: at, router: req.Router, pkg: req.Package, updated: send && !pl.fail})
		fail := pl.fail
		pl.mu.Unlock()
		if fail {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		resp := make([]byte, 14)
		if send {
			resp = update
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
		_, _ = w.Write(resp)
	}))
	t.Cleanup(pl.Close)
	return pl
}

// log returns the polls recorded so far.
func (pl *pollLog) log() []poll {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return append([]poll(nil), pl.polls...)
}

// spacings returns the time between consecutive polls from index i on.
func spacings(polls []poll, i int) []time.Duration {
	var out []time.Duration
	for j := i + 1; j < len(polls); j++ {
		out = append(out, polls[j].at.Sub(polls[j-1].at))
	}
	return out
}

// runFleet runs f until the test ends.
func runFleet(t *testing.T, f *Fleet) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestStartPollAfterUpdate: a station that applied an update restarts and
// polls again within Schedule.Start (0.2 s on a real station), reporting
// the new package; it does not wait for its regular check-in.
func TestStartPollAfterUpdate(t *testing.T) {
	g := NewWithT(t)
	pl := newPollLog(t, "v1", "2.0.7")
	s := New(State{EUI: 1, CUPSURI: pl.URL, Package: "v1"})
	runFleet(t, NewFleet([]*Station{s}, FleetOptions{Interval: time.Hour, Workers: 2}))
	g.Eventually(pl.log, 2*time.Second, 5*time.Millisecond).Should(HaveLen(2), "the start poll after the update")
	polls := pl.log()
	g.Expect(polls[0].updated).To(BeTrue())
	g.Expect(polls[1].pkg).To(Equal("2.0.7"))
	// Within 0.2 s of the end of the session that brought the update.
	g.Expect(polls[1].at.Sub(polls[0].at)).To(BeNumerically("<", DefaultStart+slack))
	g.Consistently(pl.log, 500*time.Millisecond, 50*time.Millisecond).Should(HaveLen(2), "then nothing until the regular check-in")
}

// TestTCUpPushesFailuresToOKSync: while its network-server connection is
// up, a station whose CUPS session failed does not come back R later: the
// TC connection pushes the next poll to CUPS_OKSYNC_INTV (DESIGN.md
// section 3). A station whose TC is down comes back R later.
func TestTCUpPushesFailuresToOKSync(t *testing.T) {
	g := NewWithT(t)
	down := statusServer(t, http.StatusServiceUnavailable)
	up := New(State{EUI: 1, CUPSURI: down})
	rejected := New(State{EUI: 2, CUPSURI: down}, WithBehavior(Behavior{TC: TCRejected}))
	// One fleet each: a fleet spreads its stations' first polls over
	// Interval.
	opts := FleetOptions{Interval: time.Hour, RetryInterval: 20 * time.Millisecond, Workers: 2}
	runFleet(t, NewFleet([]*Station{up}, opts))
	runFleet(t, NewFleet([]*Station{rejected}, opts))
	g.Eventually(func() int64 { return rejected.Stats().Polls }, 5*time.Second).Should(BeNumerically(">=", 5))
	g.Expect(up.Stats().Polls).To(BeNumerically("==", 1), "a failure with TC up is pushed to the regular check-in")
	g.Expect(up.Stats().Failures).To(BeNumerically("==", 1))
}

// testSchedule is the real schedule at 1/300 of its timings (R = 200 ms,
// an unreachable network server every 1.5 s) with a one-hour check-in.
func testSchedule() Schedule {
	sc := DefaultSchedule().Scale(1.0 / 300)
	sc.OKSync = time.Hour
	return sc
}

// slack is how much later than its schedule a poll may arrive on a loaded
// machine (the session itself is a millisecond or two on loopback).
const slack = 250 * time.Millisecond

// expectSpacing checks that every spacing is want or a little more (the
// session itself, a loaded machine), never less.
func expectSpacing(g Gomega, got []time.Duration, want time.Duration) {
	for i, d := range got {
		g.Expect(d).To(BeNumerically(">=", want-5*time.Millisecond), "spacing %d of %v", i, got)
		g.Expect(d).To(BeNumerically("<", want+slack), "spacing %d of %v", i, got)
	}
}

// TestTCBrokenByUpdate: a station whose update breaks its network-server
// connection (Behavior.TCAfterUpdate) reports the new package in its start
// poll, then comes back at a steady spacing: R when the network server
// rejects it, TCGiveUp+R (450 s scaled) when it cannot reach it.
func TestTCBrokenByUpdate(t *testing.T) {
	sc := testSchedule()
	for _, tc := range []struct {
		state TCState
		want  time.Duration
		polls int
	}{
		{TCRejected, sc.Resync, 6},
		{TCUnreachable, sc.UnreachableSpacing(), 4},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			g := NewWithT(t)
			pl := newPollLog(t, "v1", "2.0.7")
			s := New(State{EUI: 1, CUPSURI: pl.URL, Package: "v1"}, WithBehavior(Behavior{TCAfterUpdate: tc.state}))
			runFleet(t, NewFleet([]*Station{s}, FleetOptions{Schedule: sc, Workers: 2}))
			g.Eventually(pl.log, 10*time.Second, 5*time.Millisecond).Should(HaveLen(tc.polls))
			polls := pl.log()
			g.Expect(polls[0].updated).To(BeTrue())
			for _, p := range polls[1:] {
				g.Expect(p.pkg).To(Equal("2.0.7"))
			}
			g.Expect(polls[1].at.Sub(polls[0].at)).To(BeNumerically("<", sc.Start+slack), "the start poll")
			expectSpacing(g, spacings(polls, 1), tc.want)
			g.Expect(s.Behavior().TC).To(Equal(tc.state), "the update broke TC")
			g.Expect(s.Behavior().TCAfterUpdate).To(BeEmpty(), "once")
		})
	}
	g := NewWithT(t)
	g.Expect(sc.UnreachableSpacing()).To(BeNumerically("~", 1500*time.Millisecond, time.Microsecond), "450 s at 1/300")
	g.Expect(DefaultSchedule().UnreachableSpacing()).To(Equal(450 * time.Second))
	g.Expect(Schedule{Resync: 100 * time.Millisecond}.TCGiveUp()).To(Equal(650*time.Millisecond), "the default backoff scales with R")
}

// TestTCChangeAtAnyTime: Behavior.TC set while a station waits for its
// regular check-in takes effect at once (Run wakes up): rejected, it
// comes back every R; up again, it is quiet after the poll already due.
func TestTCChangeAtAnyTime(t *testing.T) {
	g := NewWithT(t)
	sc := testSchedule()
	pl := newPollLog(t, "none", "none")
	s := New(State{EUI: 1, CUPSURI: pl.URL, Package: "v1"}, WithSchedule(sc))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, 0) }()
	defer func() { cancel(); <-done }()
	g.Eventually(pl.log).Should(HaveLen(1), "the start poll")
	g.Consistently(pl.log, 400*time.Millisecond, 20*time.Millisecond).Should(HaveLen(1), "TC up: no early poll")

	changed := time.Now()
	s.SetBehavior(Behavior{TC: TCRejected})
	g.Eventually(pl.log, 5*time.Second, 5*time.Millisecond).Should(HaveLen(4))
	polls := pl.log()
	g.Expect(polls[1].at.Sub(changed)).To(And(BeNumerically(">=", sc.Resync-5*time.Millisecond), BeNumerically("<", sc.Resync+slack)))
	expectSpacing(g, spacings(polls, 1), sc.Resync)

	s.SetBehavior(Behavior{TC: TCUp})
	n := len(pl.log())
	count := func() int { return len(pl.log()) }
	g.Consistently(count, 800*time.Millisecond, 20*time.Millisecond).Should(BeNumerically("<=", n+1), "TC up again: at most the poll already due")
}

// TestFallBack: a station whose firmware falls back (Behavior.FallBackAfter)
// reports the new package in its start poll, then restarts on its previous
// package and reports that in the next start poll.
func TestFallBack(t *testing.T) {
	g := NewWithT(t)
	sc := testSchedule()
	pl := newPollLog(t, "v1", "2.0.7")
	pl.once = true
	const after = 300 * time.Millisecond
	s := New(State{EUI: 1, CUPSURI: pl.URL, Package: "v1"}, WithBehavior(Behavior{FallBackAfter: after}))
	runFleet(t, NewFleet([]*Station{s}, FleetOptions{Schedule: sc, Workers: 2}))
	g.Eventually(pl.log, 5*time.Second, 5*time.Millisecond).Should(HaveLen(3))
	polls := pl.log()
	g.Expect([]string{polls[0].pkg, polls[1].pkg, polls[2].pkg}).To(Equal([]string{"v1", "2.0.7", "v1"}))
	g.Expect(polls[1].at.Sub(polls[0].at)).To(BeNumerically("<", sc.Start+slack), "the start poll after the update")
	// The fallback is timed from the start of the station's start poll; the
	// server logs a poll when its request arrives, a connection and TLS
	// handshake later, so the spacing it sees may be short by the first
	// poll's set-up (1.1 ms short in a CI run). A fallback that did not
	// wait would come Schedule.Start (a few ms) after the update's poll.
	const arrival = 50 * time.Millisecond
	g.Expect(polls[2].at.Sub(polls[1].at)).To(BeNumerically(">=", after-arrival))
	g.Expect(polls[2].at.Sub(polls[1].at)).To(BeNumerically("<", after+sc.Start+slack), "the start poll after the fallback")
	g.Consistently(pl.log, 500*time.Millisecond, 20*time.Millisecond).Should(HaveLen(3), "then TC is up: quiet")
	g.Expect(s.Package()).To(Equal("v1"))
	g.Expect(s.Stats().FallBacks).To(BeEquivalentTo(1))
	g.Expect(s.Stats().UpdatesApplied).To(BeEquivalentTo(1))
}

// TestRestartPollsAtOnce: a restart (an operator's, a watchdog's) brings a
// start poll within Schedule.Start, also while the station waits for its
// regular check-in (Run wakes up).
func TestRestartPollsAtOnce(t *testing.T) {
	g := NewWithT(t)
	pl := newPollLog(t, "none", "none")
	s := New(State{EUI: 1, CUPSURI: pl.URL, Package: "v1"}, WithSchedule(testSchedule()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, 0) }()
	defer func() { cancel(); <-done }()
	g.Eventually(pl.log).Should(HaveLen(1), "the start poll")
	g.Consistently(pl.log, 300*time.Millisecond, 20*time.Millisecond).Should(HaveLen(1))
	restarted := time.Now()
	s.Restart()
	g.Eventually(pl.log, time.Second, 2*time.Millisecond).Should(HaveLen(2))
	g.Expect(pl.log()[1].at.Sub(restarted)).To(BeNumerically("<", DefaultStart/300+slack))
	res := pollOnce(t, s)
	g.Expect(res.StartPoll).To(BeFalse(), "only the first session after a start is its start poll")
	g.Expect(res.NextPoll).To(BeNumerically("~", time.Hour, 6*time.Minute), "TC up: the regular check-in")
}
