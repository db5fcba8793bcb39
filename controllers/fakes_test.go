package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Fakes in the cert-manager style: one func field per method; a method
// whose func is unset fails the call with an error, so a phase that calls
// what its test did not expect fails loudly.

// FakeRegistry is a TwinRegistry.
type FakeRegistry struct {
	QueryFn  func(ctx context.Context, sel twin.Selector, fn func(page []*twin.Twin) error) error
	GetFn    func(ctx context.Context, deviceID string) (*twin.Twin, error)
	UpdateFn func(ctx context.Context, deviceID string, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error)
	// UpdateKnownFn, when nil, makes UpdateKnown an Update (reading the
	// twin again, as the real one does when the ETag is stale).
	UpdateKnownFn func(ctx context.Context, t *twin.Twin, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error)
}

var _ TwinRegistry = &FakeRegistry{}

var errNotFaked = errors.New("fake: method not set by the test")

// Query implements TwinRegistry.
func (f *FakeRegistry) Query(ctx context.Context, sel twin.Selector, fn func(page []*twin.Twin) error) error {
	if f.QueryFn == nil {
		return fmt.Errorf("Query: %w", errNotFaked)
	}
	return f.QueryFn(ctx, sel, fn)
}

// Get implements TwinRegistry.
func (f *FakeRegistry) Get(ctx context.Context, deviceID string) (*twin.Twin, error) {
	if f.GetFn == nil {
		return nil, fmt.Errorf("Get: %w", errNotFaked)
	}
	return f.GetFn(ctx, deviceID)
}

// Update implements TwinRegistry.
func (f *FakeRegistry) Update(ctx context.Context, deviceID string, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error) {
	if f.UpdateFn == nil {
		return nil, fmt.Errorf("Update: %w", errNotFaked)
	}
	return f.UpdateFn(ctx, deviceID, mutate)
}

// UpdateKnown implements TwinRegistry.
func (f *FakeRegistry) UpdateKnown(ctx context.Context, t *twin.Twin, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error) {
	if f.UpdateKnownFn == nil {
		return f.Update(ctx, t.DeviceID, mutate)
	}
	return f.UpdateKnownFn(ctx, t, mutate)
}

// FakeChecker is a FirmwareChecker.
type FakeChecker struct {
	CheckFn func(ctx context.Context, ref FirmwareRef) error
}

var _ FirmwareChecker = &FakeChecker{}

// Check implements FirmwareChecker.
func (f *FakeChecker) Check(ctx context.Context, ref FirmwareRef) error {
	if f.CheckFn == nil {
		return fmt.Errorf("Check: %w", errNotFaked)
	}
	return f.CheckFn(ctx, ref)
}

// FakeCache is a TwinCache that records what was invalidated.
type FakeCache struct {
	mu          sync.Mutex
	Invalidated []string
}

var _ TwinCache = &FakeCache{}

// Invalidate implements TwinCache.
func (f *FakeCache) Invalidate(deviceID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Invalidated = append(f.Invalidated, deviceID)
}

// memTwins is an in-memory twin store behind a FakeRegistry: patches are
// applied as JSON merge patches to the raw tags and desired properties, as
// IoT Hub does, and every twin is decoded with twin.Decode.
type memTwins struct {
	mu     sync.Mutex
	tags   map[string]map[string]any
	want   map[string]map[string]any
	etag   map[string]int
	writes map[string]int // patches written per device
	fail   map[string]error
}

func newMemTwins() *memTwins {
	return &memTwins{tags: map[string]map[string]any{}, want: map[string]map[string]any{},
		etag: map[string]int{}, writes: map[string]int{}, fail: map[string]error{}}
}

// add registers a device, optionally with a first patch.
func (m *memTwins) add(id string, p *twin.Patch) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tags[id], m.want[id] = map[string]any{}, map[string]any{}
	if p != nil {
		m.apply(id, p)
	}
}

func (m *memTwins) apply(id string, p *twin.Patch) {
	merge(m.tags[id], p.Tags)
	merge(m.want[id], p.Desired)
	m.etag[id]++
}

// merge applies the JSON merge patch p to doc.
func merge(doc, p map[string]any) {
	for k, v := range p {
		sub, isMap := v.(map[string]any)
		switch {
		case v == nil:
			delete(doc, k)
		case isMap:
			cur, _ := doc[k].(map[string]any)
			if cur == nil {
				cur = map[string]any{}
			}
			merge(cur, roundTrip(sub))
			doc[k] = cur
		default:
			doc[k] = roundTrip(v)
		}
	}
}

// roundTrip gives v the types a JSON decoder gives (float64, []any).
func roundTrip[T any](v T) T {
	b, _ := json.Marshal(v)
	var out T
	_ = json.Unmarshal(b, &out)
	return out
}

func (m *memTwins) get(id string) (*twin.Twin, error) {
	if _, ok := m.tags[id]; !ok {
		return nil, fmt.Errorf("device %s: %w", id, twin.ErrNotFound)
	}
	return twin.Decode(id, strconv.Itoa(m.etag[id]), roundTrip(m.tags[id]), roundTrip(m.want[id]))
}

// twin returns the decoded twin of id (nil when missing).
func (m *memTwins) twin(id string) *twin.Twin {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, _ := m.get(id)
	return t
}

// registry is a FakeRegistry over the store. A selector's DeviceIDs and
// OwnerUID are honoured; tags are not (tests select by id).
func (m *memTwins) registry() *FakeRegistry {
	f := &FakeRegistry{
		QueryFn: func(_ context.Context, sel twin.Selector, fn func([]*twin.Twin) error) error {
			m.mu.Lock()
			var page []*twin.Twin
			ids := make([]string, 0, len(m.tags))
			for id := range m.tags {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				t, err := m.get(id)
				if err != nil {
					m.mu.Unlock()
					return err
				}
				if sel.OwnerUID != "" && (t.Ownership == nil || t.Ownership.UID != sel.OwnerUID) {
					continue
				}
				if len(sel.DeviceIDs) > 0 && !slices.Contains(sel.DeviceIDs, id) {
					continue
				}
				page = append(page, t)
			}
			m.mu.Unlock()
			return fn(page)
		},
		GetFn: func(_ context.Context, id string) (*twin.Twin, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			return m.get(id)
		},
		UpdateFn: func(_ context.Context, id string, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if err := m.fail[id]; err != nil {
				return nil, err
			}
			t, err := m.get(id)
			if err != nil {
				return nil, err
			}
			p, err := mutate(t)
			if err != nil || p.IsEmpty() {
				return t, err
			}
			m.apply(id, p)
			m.writes[id]++
			return m.get(id)
		},
	}
	f.UpdateKnownFn = m.updateKnown(f)
	return f
}

// updateKnown writes a known twin with its ETag, and goes on as f's
// Update (a fresh read) when it is stale.
func (m *memTwins) updateKnown(f *FakeRegistry) func(context.Context, *twin.Twin, func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error) {
	return func(ctx context.Context, t *twin.Twin, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error) {
		m.mu.Lock()
		if err := m.fail[t.DeviceID]; err != nil || strconv.Itoa(m.etag[t.DeviceID]) != t.ETag {
			m.mu.Unlock()
			return f.UpdateFn(ctx, t.DeviceID, mutate)
		}
		defer m.mu.Unlock()
		p, err := mutate(t)
		if err != nil || p.IsEmpty() {
			return t, err
		}
		m.apply(t.DeviceID, p)
		m.writes[t.DeviceID]++
		return m.get(t.DeviceID)
	}
}

// reconcileTerminal is controller-runtime's terminal error marker, for
// errors.Is.
func reconcileTerminal() error { return reconcile.TerminalError(nil) }

// testView is a view of the stations ss with the outcomes os, packed as
// newStationView packs them.
func testView(ss []rules.Station, os []rules.Outcome) *stationView {
	v := &stationView{}
	for i := range ss {
		v.add(ss[i], os[i])
	}
	return v
}

// add appends a station and its outcome to the view.
func (v *stationView) add(s rules.Station, o rules.Outcome) {
	v.all = append(v.all, rules.Pack(s))
	v.outs = append(v.outs, rules.PackOutcome(o))
}

// setFailed records the failure reason markFailed writes into the
// station at position i.
func (v *stationView) setFailed(i int, reason string) {
	st := v.station(i)
	st.Failed = reason
	v.all[i] = rules.Pack(st)
}
