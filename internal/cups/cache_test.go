package cups

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// slowGetter counts reads and can hold them until released.
type slowGetter struct {
	reads   atomic.Int64
	hold    chan struct{}
	started chan struct{}
	mu      sync.Mutex
	pkg     string
}

func (s *slowGetter) Get(_ context.Context, id string) (*twin.Twin, error) {
	s.reads.Add(1)
	s.mu.Lock()
	pkg := s.pkg // the registry answers with what it holds when the read starts
	s.mu.Unlock()
	if s.started != nil {
		s.started <- struct{}{}
	}
	if s.hold != nil {
		<-s.hold
	}
	if id == "FFFFFFFFFFFFFFFF" {
		return nil, fmt.Errorf("no such device: %w", twin.ErrNotFound)
	}
	return &twin.Twin{DeviceID: id, CUPS: twin.CUPS{Firmware: twin.Firmware{Package: pkg}}}, nil
}

func (s *slowGetter) setPackage(p string) { s.mu.Lock(); s.pkg = p; s.mu.Unlock() }

// goroutinesBlockedIn counts the goroutines blocked on a channel (a receive
// or a select) with frame in their stack.
func goroutinesBlockedIn(frame string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		blocked := strings.Contains(header, "[select") || strings.Contains(header, "[chan receive")
		if blocked && strings.Contains(g, frame) {
			count++
		}
	}
	return count
}

func TestTwinCacheSingleFlight(t *testing.T) {
	g := NewWithT(t)
	getter := &slowGetter{hold: make(chan struct{}), pkg: "v1"}
	c := NewTwinCache(getter, time.Minute)
	var wg sync.WaitGroup
	for range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tw, err := c.Get(context.Background(), "0000000000000001")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(tw.CUPS.Package).To(Equal("v1"))
		}()
	}
	// Release the read only once the whole storm waits inside Get, so that
	// a cache without single flight would have started a read per caller.
	g.Eventually(func() int { return goroutinesBlockedIn("cups.(*TwinCache).Get(") }, 10*time.Second, 5*time.Millisecond).
		Should(Equal(500), "callers waiting in TwinCache.Get")
	close(getter.hold)
	wg.Wait()
	g.Expect(getter.reads.Load()).To(BeEquivalentTo(1), "a poll storm costs one registry read per station")
	_, _ = c.Get(context.Background(), "0000000000000001")
	g.Expect(getter.reads.Load()).To(BeEquivalentTo(1), "served from the cache within the TTL")
}

func TestTwinCacheTTLAndInvalidate(t *testing.T) {
	g := NewWithT(t)
	getter := &slowGetter{pkg: "v1"}
	c := NewTwinCache(getter, time.Minute)
	now := time.Unix(1_800_000_000, 0)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	const id = "0000000000000001"

	tw, _ := c.Get(ctx, id)
	g.Expect(tw.CUPS.Package).To(Equal("v1"))
	getter.setPackage("v2")
	tw, _ = c.Get(ctx, id)
	g.Expect(tw.CUPS.Package).To(Equal("v1"), "within the TTL the cached twin serves")

	c.Invalidate(id)
	tw, _ = c.Get(ctx, id)
	g.Expect(tw.CUPS.Package).To(Equal("v2"), "after Invalidate the next Get reads afresh")

	getter.setPackage("v3")
	now = now.Add(time.Minute)
	tw, _ = c.Get(ctx, id)
	g.Expect(tw.CUPS.Package).To(Equal("v3"), "after the TTL the next Get reads afresh")
	g.Expect(getter.reads.Load()).To(BeEquivalentTo(3))
}

func TestTwinCacheInvalidateDuringRead(t *testing.T) {
	g := NewWithT(t)
	getter := &slowGetter{hold: make(chan struct{}), started: make(chan struct{}, 2), pkg: "v1"}
	c := NewTwinCache(getter, time.Minute)
	const id = "0000000000000001"
	done := make(chan *twin.Twin)
	go func() { tw, _ := c.Get(context.Background(), id); done <- tw }()
	<-getter.started // the read of v1 is in flight
	c.Invalidate(id) // the controller writes v2 meanwhile
	getter.setPackage("v2")
	getter.hold <- struct{}{}
	g.Expect((<-done).CUPS.Package).To(Equal("v1"))

	// The in-flight read must not have refilled the entry with v1.
	go func() { tw, _ := c.Get(context.Background(), id); done <- tw }()
	<-getter.started
	getter.hold <- struct{}{}
	g.Expect((<-done).CUPS.Package).To(Equal("v2"))
}

func TestTwinCacheNotFoundCachedOtherErrorsNot(t *testing.T) {
	g := NewWithT(t)
	getter := &slowGetter{}
	c := NewTwinCache(getter, time.Minute)
	for range 3 {
		_, err := c.Get(context.Background(), "FFFFFFFFFFFFFFFF")
		g.Expect(errors.Is(err, twin.ErrNotFound)).To(BeTrue())
	}
	g.Expect(getter.reads.Load()).To(BeEquivalentTo(1), "unknown stations polling do not hammer the registry")

	s := newMemStore()
	s.getErr = errors.New("429 too many requests")
	c2 := NewTwinCache(s, time.Minute)
	for range 3 {
		_, err := c2.Get(context.Background(), "0000000000000001")
		g.Expect(err).To(MatchError(ContainSubstring("429")))
	}
	g.Expect(s.gets.Load()).To(BeEquivalentTo(3), "transient errors are not cached")
}

func TestTwinCacheBoundedMemory(t *testing.T) {
	g := NewWithT(t)
	c := NewTwinCache(&slowGetter{}, 5*time.Second)
	now := time.Unix(1_800_000_000, 0)
	c.now = func() time.Time { return now }
	for i := range 10_000 {
		_, _ = c.Get(context.Background(), fmt.Sprintf("%016X", i))
	}
	g.Expect(c.Len()).To(Equal(10_000))
	now = now.Add(6 * time.Second)
	_, _ = c.Get(context.Background(), "0000000000000001")
	g.Expect(c.Len()).To(Equal(1), "expired entries are swept")
}

// TestTwinCacheInvalidateUnseenKeepsNothing: the controller invalidates every
// station it writes; stations this replica never read leave no tombstone, so
// a 100,000-station batch costs the cache nothing.
func TestTwinCacheInvalidateUnseenKeepsNothing(t *testing.T) {
	g := NewWithT(t)
	c := NewTwinCache(&slowGetter{}, 5*time.Second)
	for i := range 10_000 {
		c.Invalidate(fmt.Sprintf("%016X", i))
	}
	g.Expect(c.Len()).To(BeZero())
	// A station that was read is still dropped (and re-read next time).
	_, _ = c.Get(context.Background(), "0000000000000001")
	reads := c.Reads()
	c.Invalidate("0000000000000001")
	_, _ = c.Get(context.Background(), "0000000000000001")
	g.Expect(c.Reads()).To(Equal(reads + 1))
}

// TestCacheReplace: a decided observation replaces the cached twin it was
// decided on, never a fresher twin nor an invalidation.
func TestCacheReplace(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := NewTwinCache(&slowGetter{pkg: "v1"}, time.Minute)
	old, err := c.Get(ctx, "0000000000000001")
	g.Expect(err).NotTo(HaveOccurred())
	next := *old
	next.Observation = &twin.Observation{UpdatesServed: 1}
	c.Replace(old, &next)
	got, _ := c.Get(ctx, "0000000000000001")
	g.Expect(got.Observation.UpdatesServed).To(Equal(1), "the next poll sees the update just sent")

	stale := *old
	c.Replace(old, &stale) // old is no longer what the cache holds
	got, _ = c.Get(ctx, "0000000000000001")
	g.Expect(got).To(BeIdenticalTo(&next))

	c.Invalidate("0000000000000001")
	c.Replace(&next, &stale)
	got, _ = c.Get(ctx, "0000000000000001")
	g.Expect(got.Observation).To(BeNil(), "an invalidated entry is read again, not replaced")
}

// TestTwinCacheWriteRacingAnotherWriter: the CUPS server's observation
// write returns the twin as of its own patch; when the controller (or an
// operator) wrote the twin after it and invalidated the station meanwhile,
// that older twin must not be cached over the newer one (a credential
// rotation or a firmware change would be answered stale for a whole TTL).
func TestTwinCacheWriteRacingAnotherWriter(t *testing.T) {
	g := NewWithT(t)
	getter := &slowGetter{pkg: "v2"}
	c := NewTwinCache(getter, time.Hour)
	const id = "0000000000000001"

	start := c.BeginWrite(id) // the observation write starts (no entry cached)
	c.Invalidate(id)          // the controller writes v2 and invalidates
	older := &twin.Twin{DeviceID: id, CUPS: twin.CUPS{Firmware: twin.Firmware{Package: "v1"}}}
	c.EndWrite(id, older, start) // the observation write returns the twin before v2
	tw, err := c.Get(context.Background(), id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tw.CUPS.Package).To(Equal("v2"), "the next poll sees the newer twin")

	// Without a competing writer, the written twin is cached as is.
	start = c.BeginWrite(id)
	written := &twin.Twin{DeviceID: id, CUPS: twin.CUPS{Firmware: twin.Firmware{Package: "v3"}}}
	c.EndWrite(id, written, start)
	tw, err = c.Get(context.Background(), id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tw.CUPS.Package).To(Equal("v3"))
	g.Expect(getter.reads.Load()).To(BeEquivalentTo(1), "served from what the write returned")
}

// TestTwinCacheWriteOutlivesTheTombstone: an observation write begins, the
// operator changes the twin (new thumbprints) and invalidates, a poll reads
// the new twin, and only then the write returns the twin it patched, read
// before the change: the cache keeps the newer twin (a station rotated to
// a new certificate was once refused with 403 from the older one).
func TestTwinCacheWriteOutlivesTheTombstone(t *testing.T) {
	g := NewWithT(t)
	getter := &slowGetter{pkg: "v2"}
	c := NewTwinCache(getter, time.Hour)
	const id = "0000000000000001"
	start := c.BeginWrite(id)
	c.Invalidate(id)
	tw, err := c.Get(context.Background(), id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tw.CUPS.Package).To(Equal("v2"))
	c.EndWrite(id, &twin.Twin{DeviceID: id, CUPS: twin.CUPS{Firmware: twin.Firmware{Package: "v1"}}}, start)
	tw, err = c.Get(context.Background(), id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tw.CUPS.Package).To(Equal("v2"), "the late write's older twin does not replace the newer one")
	g.Expect(getter.reads.Load()).To(BeEquivalentTo(1))

	// A write that began after the invalidation is cached as usual.
	start = c.BeginWrite(id)
	c.EndWrite(id, &twin.Twin{DeviceID: id, CUPS: twin.CUPS{Firmware: twin.Firmware{Package: "v3"}}}, start)
	tw, err = c.Get(context.Background(), id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tw.CUPS.Package).To(Equal("v3"))
}

// TestTwinCacheOverlappingWrites: two observation writes of one station
// run at once; the one that returns last may hold the older twin (it
// patched first). Neither is cached: the next poll reads the registry (a
// station that fell back was once sent the update again from such a
// stale twin).
func TestTwinCacheOverlappingWrites(t *testing.T) {
	g := NewWithT(t)
	getter := &slowGetter{pkg: "v2"}
	c := NewTwinCache(getter, time.Hour)
	const id = "0000000000000001"
	first := c.BeginWrite(id)
	second := c.BeginWrite(id)
	c.EndWrite(id, &twin.Twin{DeviceID: id, CUPS: twin.CUPS{Firmware: twin.Firmware{Package: "v2"}}}, second)
	c.EndWrite(id, &twin.Twin{DeviceID: id, CUPS: twin.CUPS{Firmware: twin.Firmware{Package: "v1"}}}, first)
	tw, err := c.Get(context.Background(), id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tw.CUPS.Package).To(Equal("v2"), "read from the registry, not the older write's twin")
	g.Expect(getter.reads.Load()).To(BeEquivalentTo(1))
}

// TestTwinCacheRefreshesAhead: a station that keeps polling never waits
// for the registry when its entry expires: a hit in the last fifth of the
// TTL reads the twin in the background, and a poll after the old expiry
// is served from the renewed entry.
func TestTwinCacheRefreshesAhead(t *testing.T) {
	g := NewWithT(t)
	getter := &slowGetter{pkg: "v1"}
	c := NewTwinCache(getter, 10*time.Second)
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ctx := context.Background()
	const id = "0000000000000001"

	tw, _ := c.Get(ctx, id)
	g.Expect(tw.CUPS.Package).To(Equal("v1"))
	getter.setPackage("v2")
	advance(5 * time.Second)
	_, _ = c.Get(ctx, id)
	g.Expect(getter.reads.Load()).To(BeEquivalentTo(1), "no refresh in the first four fifths of the TTL")

	advance(4 * time.Second) // 9 s: in the last fifth
	tw, _ = c.Get(ctx, id)
	g.Expect(tw.CUPS.Package).To(Equal("v1"), "the hit is served at once, from the entry")
	g.Eventually(getter.reads.Load).Should(BeEquivalentTo(2), "and starts one read in the background")
	g.Eventually(func() bool { // the read stored its twin: a fresh entry
		c.mu.Lock()
		defer c.mu.Unlock()
		e := c.entries[id]
		return e != nil && !e.refreshing
	}).Should(BeTrue())
	_, _ = c.Get(ctx, id)
	g.Consistently(getter.reads.Load, 100*time.Millisecond).Should(BeEquivalentTo(2), "one refresh per entry")

	advance(3 * time.Second) // 12 s: past the first read's expiry
	tw, _ = c.Get(ctx, id)
	g.Expect(tw.CUPS.Package).To(Equal("v2"), "served from the renewed entry")
	g.Expect(getter.reads.Load()).To(BeEquivalentTo(2), "without a read in the poll's path")
}
