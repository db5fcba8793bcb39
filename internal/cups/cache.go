package cups

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// DefaultCacheTTL is how long a twin read serves later polls of the same
// station. Short enough that another replica's or a controller's change is
// seen within seconds, long enough that a poll storm (every station
// retrying within a minute) costs one registry read per station per period.
const DefaultCacheTTL = 5 * time.Second

// fetchTimeout bounds one shared registry read: it runs detached from the
// first caller's context, since other callers wait on it too.
const fetchTimeout = 30 * time.Second

// TwinCache is a short-lived, single-flight cache in front of a TwinGetter.
// Concurrent Gets of one station share one read; results, including "not
// found", are kept for the TTL; expired entries are swept, so memory is
// bounded by the stations seen within one TTL. It satisfies
// controllers.TwinCache: the controller calls Invalidate after writing a
// twin so that the next poll on this replica reads it afresh.
//
// The returned twins are shared between callers and must not be modified.
type TwinCache struct {
	getter TwinGetter
	ttl    time.Duration
	now    func() time.Time

	group singleflight.Group
	seq   atomic.Uint64 // bumped by every Invalidate
	reads atomic.Int64

	mu        sync.Mutex
	entries   map[string]*cacheEntry
	inflight  map[string]int  // reads in progress per station
	writing   map[string]int  // writes in progress per station
	overlap   map[string]bool // two writes of the station overlapped since it had none
	lastSweep time.Time
}

type cacheEntry struct {
	twin    *twin.Twin
	err     error // only errors wrapping twin.ErrNotFound are cached
	expires time.Time
	// invalidated is the sequence number of the Invalidate that made this
	// entry a tombstone (twin and err unset); reads started before it must
	// not fill the entry.
	invalidated uint64
	// since is the sequence number of the station's latest Invalidate
	// before this entry was filled (kept when a read replaces the
	// tombstone): a write that began before it returned a twin older than
	// the entry's and must not replace it.
	since uint64
	// refreshing is set once a Get started the entry's refresh-ahead read.
	refreshing bool
}

// NewTwinCache returns a cache in front of getter with the given TTL (zero
// means DefaultCacheTTL; negative disables caching but keeps single-flight).
func NewTwinCache(getter TwinGetter, ttl time.Duration) *TwinCache {
	if ttl == 0 {
		ttl = DefaultCacheTTL
	}
	return &TwinCache{getter: getter, ttl: ttl, now: time.Now, entries: map[string]*cacheEntry{}, inflight: map[string]int{},
		writing: map[string]int{}, overlap: map[string]bool{}}
}

// refreshAhead is the last part of an entry's TTL (1/refreshAhead of it)
// in which a Get that hits it also starts a read in the background: a
// station that keeps polling (256 requests in flight over the demo's 47
// stations) then never waits for the registry when its entry expires, where
// every poll of the station in flight used to queue behind that one read
// (issue 18: the p99 of an open-loop load far above the bare handler's).
// TTLs under a second (tests) do not refresh ahead.
const refreshAhead = 5

// Get returns the station's twin from the cache or, when absent or expired,
// from the getter, sharing one read among concurrent callers. A hit in the
// last fifth of the entry's TTL also starts that read in the background
// (refreshAhead), so the entry is renewed before it expires.
func (c *TwinCache) Get(ctx context.Context, deviceID string) (*twin.Twin, error) {
	now := c.now()
	c.mu.Lock()
	c.sweepLocked(now)
	if e, ok := c.entries[deviceID]; ok && e.invalidated == 0 && now.Before(e.expires) {
		refresh := !e.refreshing && c.ttl >= time.Second && !now.Before(e.expires.Add(-c.ttl/refreshAhead))
		if refresh {
			e.refreshing = true
		}
		c.mu.Unlock()
		if refresh {
			c.group.DoChan(deviceID, c.read(ctx, deviceID)) // its result fills the entry
		}
		return e.twin, e.err
	}
	c.mu.Unlock()

	ch := c.group.DoChan(deviceID, c.read(ctx, deviceID))
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("get twin %s: %w", deviceID, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*twin.Twin), nil
	}
}

// read returns the shared read of the station: from the getter, detached
// from the caller's cancellation (other callers wait on it too), stored
// unless an Invalidate happened since it started.
func (c *TwinCache) read(ctx context.Context, deviceID string) func() (any, error) {
	return func() (any, error) {
		c.mu.Lock()
		c.inflight[deviceID]++
		start := c.seq.Load()
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			if c.inflight[deviceID]--; c.inflight[deviceID] <= 0 {
				delete(c.inflight, deviceID)
			}
			c.mu.Unlock()
		}()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		c.reads.Add(1)
		t, err := c.getter.Get(fctx, deviceID)
		if err != nil && !errors.Is(err, twin.ErrNotFound) {
			return nil, fmt.Errorf("get twin %s: %w", deviceID, err)
		}
		c.store(deviceID, t, err, start)
		return t, err
	}
}

// store fills the entry unless an Invalidate happened after the read started.
func (c *TwinCache) store(deviceID string, t *twin.Twin, err error, startSeq uint64) {
	if c.ttl < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var since uint64
	if e, ok := c.entries[deviceID]; ok {
		if e.invalidated > startSeq {
			return
		}
		since = max(e.since, e.invalidated)
	}
	c.entries[deviceID] = &cacheEntry{twin: t, err: err, expires: c.now().Add(c.ttl), since: since}
}

// BeginWrite marks a registry write of the station in flight and returns
// the sequence to hand to EndWrite: an Invalidate while it runs leaves a
// tombstone, so EndWrite never lays the write's twin over a newer one that
// another writer (the controller, an operator) made meanwhile.
func (c *TwinCache) BeginWrite(deviceID string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight[deviceID]++
	if c.writing[deviceID]++; c.writing[deviceID] > 1 {
		c.overlap[deviceID] = true
	}
	return c.seq.Load()
}

// EndWrite ends a write BeginWrite started and stores t, the twin the
// registry returned from it (nil when the write failed), unless the
// station was invalidated since the write began: then the next Get reads
// the registry.
func (c *TwinCache) EndWrite(deviceID string, t *twin.Twin, start uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight[deviceID]--; c.inflight[deviceID] <= 0 {
		delete(c.inflight, deviceID)
	}
	overlapped := c.overlap[deviceID]
	if c.writing[deviceID]--; c.writing[deviceID] <= 0 {
		delete(c.writing, deviceID)
		delete(c.overlap, deviceID)
	}
	if overlapped {
		// Two writes of the station ran at once: which one's twin is the
		// newer is unknown (the one that returns last may have patched
		// first), so the next Get reads the registry.
		delete(c.entries, deviceID)
		return
	}
	if c.ttl < 0 || t == nil {
		return
	}
	var since uint64
	if e, ok := c.entries[deviceID]; ok {
		if e.invalidated > start || e.since > start {
			// Invalidated after the write began, possibly already refilled
			// by a read: what the write returned may be older.
			return
		}
		since = e.since
	}
	c.entries[deviceID] = &cacheEntry{twin: t, expires: c.now().Add(c.ttl), since: since}
}

// Replace stores next in place of old when the entry still holds exactly
// old (not a fresher twin, not a tombstone of an invalidation), keeping its
// expiry. The server uses it to lay a decided observation over the cached
// twin until the durable write returns, so that the next poll on this
// replica counts the update just sent.
func (c *TwinCache) Replace(old, next *twin.Twin) {
	if c.ttl < 0 || old == nil || next == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[old.DeviceID]; ok && e.invalidated == 0 && e.twin == old {
		c.entries[old.DeviceID] = &cacheEntry{twin: next, expires: e.expires, since: e.since}
	}
}

// Invalidate drops the station's entry: the next Get reads the registry,
// even if a read that started earlier is still in flight.
func (c *TwinCache) Invalidate(deviceID string) {
	seq := c.seq.Add(1)
	c.group.Forget(deviceID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, cached := c.entries[deviceID]; !cached && c.inflight[deviceID] == 0 {
		// Nothing to drop and no read that could fill the entry with what
		// it read before the write: no tombstone needed (the controller
		// invalidates every station it writes, most never polled here).
		return
	}
	// A tombstone lives as long as an in-flight read may: fetchTimeout.
	c.entries[deviceID] = &cacheEntry{invalidated: seq, expires: c.now().Add(max(c.ttl, fetchTimeout))}
}

// Len returns the number of entries held, expired ones included until the
// next sweep.
func (c *TwinCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Reads returns how many reads the cache made of its getter.
func (c *TwinCache) Reads() int64 { return c.reads.Load() }

// sweepLocked drops expired entries, at most once per TTL, so that the cost
// is spread over the requests of a period and memory follows the number of
// stations seen within the last TTL.
func (c *TwinCache) sweepLocked(now time.Time) {
	period := max(c.ttl, time.Second)
	if now.Sub(c.lastSweep) < period {
		return
	}
	c.lastSweep = now
	for id, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, id)
		}
	}
}
