package hubsim

import (
	"sync"
	"sync/atomic"
	"time"
)

// Op names one REST operation of the emulator, for faults and counters.
type Op string

// The operations the emulator serves.
const (
	OpGetTwin      Op = "getTwin"
	OpPatchTwin    Op = "patchTwin"
	OpReplaceTwin  Op = "replaceTwin"
	OpGetDevice    Op = "getDevice"
	OpPutDevice    Op = "putDevice"
	OpDeleteDevice Op = "deleteDevice"
	OpQuery        Op = "query"
)

// Fault is an injected failure. It applies to requests that passed
// authentication and match Op and DeviceID.
type Fault struct {
	// Op limits the fault to one operation; empty matches every operation.
	Op Op
	// DeviceID limits the fault to one device; empty matches every device.
	DeviceID string
	// Latency is added before the request is handled (or failed).
	Latency time.Duration
	// Status, when non-zero, answers the request with this status (429,
	// 500, 503, 403, ...) instead of handling it.
	Status int
	// RetryAfter, when non-zero, is sent as a Retry-After header (whole
	// seconds, rounded up) with Status.
	RetryAfter time.Duration
	// Drop closes the connection without an answer (hijack and close).
	Drop bool
	// Count is how many matching requests the fault affects; 0 means every
	// one until the fault is removed.
	Count int
}

type activeFault struct {
	Fault
	left int // remaining when Count > 0
}

type faults struct {
	mu   sync.Mutex
	list []*activeFault
	// concurrent holds, per device, a patch another writer applies just
	// before the device's next twin write.
	concurrent map[string][]twinPatch
}

// match returns the fault to apply to a request, consuming one use of it.
func (f *faults) match(op Op, deviceID string) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, af := range f.list {
		if (af.Op != "" && af.Op != op) || (af.DeviceID != "" && af.DeviceID != deviceID) {
			continue
		}
		out := af.Fault
		if af.Count > 0 {
			af.left--
			if af.left <= 0 {
				f.list = append(f.list[:i:i], f.list[i+1:]...)
			}
		}
		return &out
	}
	return nil
}

func (f *faults) takeConcurrent(deviceID string) []twinPatch {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.concurrent[deviceID]
	delete(f.concurrent, deviceID)
	return p
}

// InjectFault adds a fault; the returned func removes it. Faults are matched
// in the order they were added.
func (s *Server) InjectFault(f Fault) (remove func()) {
	af := &activeFault{Fault: f, left: f.Count}
	s.faults.mu.Lock()
	s.faults.list = append(s.faults.list, af)
	s.faults.mu.Unlock()
	return func() {
		s.faults.mu.Lock()
		defer s.faults.mu.Unlock()
		for i, x := range s.faults.list {
			if x == af {
				s.faults.list = append(s.faults.list[:i:i], s.faults.list[i+1:]...)
				return
			}
		}
	}
}

// ClearFaults removes every injected fault and pending concurrent write.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.list = nil
	s.faults.concurrent = nil
}

// InjectConcurrentWrite simulates another writer: just before the next twin
// write to deviceID is processed, the emulator applies this merge patch of
// tags and desired properties (changing the ETag), so a conditional write
// carrying the ETag read before gets 412.
func (s *Server) InjectConcurrentWrite(deviceID string, tags, desired map[string]any) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	if s.faults.concurrent == nil {
		s.faults.concurrent = map[string][]twinPatch{}
	}
	s.faults.concurrent[deviceID] = append(s.faults.concurrent[deviceID], twinPatch{tags: tags, desired: desired})
}

// counters are the emulator's per-operation counts.
type counters struct {
	requests sync.Map // Op -> *atomic.Int64: requests received (authenticated or not)
	served   sync.Map // Op -> *atomic.Int64: requests answered with 2xx

	// conns is TLS connections accepted: each one costs a handshake.
	conns atomic.Int64

	mu            sync.Mutex
	rolloutWrites map[string]map[string]int // rollout uid -> device id -> writes
	ownership     []OwnershipChange         // in the order the writes were applied
}

// OwnershipChange is one twin write that changed which rollout owns the
// device (tags.stationfleet.rollout.uid), as the emulator applied it.
type OwnershipChange struct {
	At       time.Time
	DeviceID string
	// From and To are the owning rollout's UID before and after the write
	// ("" for none).
	From, To string
	// Package is properties.desired.cups.package after the write.
	Package string
}

// OwnershipLog returns every twin write that changed a device's owning
// rollout, in the order they were applied: what the soak checks the
// rollouts' statuses against.
func (s *Server) OwnershipLog() []OwnershipChange {
	s.counters.mu.Lock()
	defer s.counters.mu.Unlock()
	return append([]OwnershipChange(nil), s.counters.ownership...)
}

// ownerOf is the device's tags.stationfleet.rollout.uid, "" when none.
func ownerOf(d *device) string {
	root, _ := d.Tags["stationfleet"].(map[string]any)
	ro, _ := root["rollout"].(map[string]any)
	uid, _ := ro["uid"].(string)
	return uid
}

// noteOwnership records the write from d to nd when it changed the owner.
// Callers hold s.store.mu, so the log's order is the order of the writes.
func (s *Server) noteOwnership(d, nd *device) {
	from, to := ownerOf(d), ownerOf(nd)
	if from == to {
		return
	}
	cups, _ := nd.Desired["cups"].(map[string]any)
	pkg, _ := cups["package"].(string)
	s.counters.mu.Lock()
	defer s.counters.mu.Unlock()
	s.counters.ownership = append(s.counters.ownership, OwnershipChange{At: time.Now(), DeviceID: nd.ID, From: from, To: to, Package: pkg})
}

func (c *counters) inc(m *sync.Map, op Op) {
	v, ok := m.Load(op)
	if !ok {
		v, _ = m.LoadOrStore(op, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

func load(m *sync.Map, op Op) int64 {
	if v, ok := m.Load(op); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// Requests returns how many requests for op the emulator received,
// including refused and fault-injected ones.
func (s *Server) Requests(op Op) int64 { return load(&s.counters.requests, op) }

// Served returns how many requests for op the emulator answered with success.
func (s *Server) Served(op Op) int64 { return load(&s.counters.served, op) }

// Reads returns the successful twin and device reads plus query pages: what
// IoT Hub meters as reads.
func (s *Server) Reads() int64 {
	return s.Served(OpGetTwin) + s.Served(OpGetDevice) + s.Served(OpQuery)
}

// Connections returns how many TLS connections clients opened to the
// emulator: each costs a full handshake on both sides, so a client that
// reuses its connections opens few per thousand requests.
func (s *Server) Connections() int64 { return s.counters.conns.Load() }

// Writes returns the successful twin writes.
func (s *Server) Writes() int64 { return s.Served(OpPatchTwin) + s.Served(OpReplaceTwin) }

// RolloutWrites returns, for the rollout uid, how many twin writes each
// device received whose patch set tags.stationfleet.rollout.uid to uid.
func (s *Server) RolloutWrites(uid string) map[string]int {
	s.counters.mu.Lock()
	defer s.counters.mu.Unlock()
	out := make(map[string]int, len(s.counters.rolloutWrites[uid]))
	for id, n := range s.counters.rolloutWrites[uid] {
		out[id] = n
	}
	return out
}

// ResetCounters zeroes every counter.
func (s *Server) ResetCounters() {
	s.counters.requests.Range(func(k, _ any) bool { s.counters.requests.Delete(k); return true })
	s.counters.served.Range(func(k, _ any) bool { s.counters.served.Delete(k); return true })
	s.counters.mu.Lock()
	s.counters.rolloutWrites = nil
	s.counters.ownership = nil
	s.counters.mu.Unlock()
}

// countRolloutWrite records a write whose tags patch sets
// tags.stationfleet.rollout.uid.
func (s *Server) countRolloutWrite(deviceID string, tags map[string]any) {
	root, _ := tags["stationfleet"].(map[string]any)
	ro, _ := root["rollout"].(map[string]any)
	uid, _ := ro["uid"].(string)
	if uid == "" {
		return
	}
	s.counters.mu.Lock()
	defer s.counters.mu.Unlock()
	if s.counters.rolloutWrites == nil {
		s.counters.rolloutWrites = map[string]map[string]int{}
	}
	m := s.counters.rolloutWrites[uid]
	if m == nil {
		m = map[string]int{}
		s.counters.rolloutWrites[uid] = m
	}
	m[deviceID]++
}
