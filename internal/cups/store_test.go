package cups

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// memStore is an in-memory TwinStore keeping each twin as IoT Hub does: raw
// tags and desired JSON, merge-patched and decoded with twin.Decode.
type memStore struct {
	mu      sync.Mutex
	tags    map[string]map[string]any
	desired map[string]map[string]any
	etag    map[string]int

	gets, updates, writes atomic.Int64
	getErr                error // returned by Get when set
}

var _ TwinStore = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{tags: map[string]map[string]any{}, desired: map[string]map[string]any{}, etag: map[string]int{}}
}

// put stores t's typed fields as raw JSON (replacing the device).
func (s *memStore) put(t *twin.Twin) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sf := map[string]any{}
	if t.Ownership != nil {
		sf[twin.TagRollout] = jsonMap(t.Ownership)
	}
	if t.Observation != nil {
		sf[twin.TagObserved] = jsonMap(t.Observation)
	}
	if t.TokenSHA256 != nil {
		sf[twin.TagTokens] = jsonAny(t.TokenSHA256)
	}
	tags := map[string]any{twin.TagRoot: sf}
	desired := map[string]any{twin.DesiredCUPS: jsonMap(t.CUPS)}
	if t.ClientThumbprints != nil {
		desired[twin.DesiredClientThumbprint] = jsonAny(t.ClientThumbprints)
	}
	s.tags[t.DeviceID], s.desired[t.DeviceID] = tags, desired
	s.etag[t.DeviceID]++
}

// patchDesired merge-patches the desired properties, as the controller does.
func (s *memStore) patchDesired(deviceID string, patch map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.desired[deviceID] = mergePatch(s.desired[deviceID], jsonMap(patch))
	s.etag[deviceID]++
}

func (s *memStore) decodeLocked(deviceID string) (*twin.Twin, error) {
	tags, ok := s.tags[deviceID]
	if !ok {
		return nil, fmt.Errorf("device %s: %w", deviceID, twin.ErrNotFound)
	}
	return twin.Decode(deviceID, fmt.Sprint(s.etag[deviceID]), jsonMap(tags), jsonMap(s.desired[deviceID]))
}

func (s *memStore) Get(_ context.Context, deviceID string) (*twin.Twin, error) {
	s.gets.Add(1)
	if s.getErr != nil {
		return nil, s.getErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decodeLocked(deviceID)
}

func (s *memStore) Update(_ context.Context, deviceID string, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error) {
	s.updates.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.decodeLocked(deviceID)
	if err != nil {
		return nil, err
	}
	p, err := mutate(t)
	if err != nil {
		return nil, err
	}
	if p.IsEmpty() {
		return t, nil
	}
	s.writes.Add(1)
	s.tags[deviceID] = mergePatch(s.tags[deviceID], jsonMap(p.Tags))
	s.desired[deviceID] = mergePatch(s.desired[deviceID], jsonMap(p.Desired))
	s.etag[deviceID]++
	return s.decodeLocked(deviceID)
}

// observation returns the stored observation of a device, once the
// server's queued writes are done.
func (s *memStore) observation(t testing.TB, srv *Server, deviceID string) *twin.Observation {
	t.Helper()
	settle(t, srv)
	tw, err := s.Get(context.Background(), deviceID)
	if err != nil {
		t.Fatalf("get %s: %v", deviceID, err)
	}
	return tw.Observation
}

// mergePatch applies an RFC 7386 merge patch.
func mergePatch(target, patch map[string]any) map[string]any {
	if target == nil {
		target = map[string]any{}
	}
	for k, v := range patch {
		if v == nil {
			delete(target, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok {
			tm, _ := target[k].(map[string]any)
			target[k] = mergePatch(tm, pm)
			continue
		}
		target[k] = v
	}
	return target
}

func jsonAny(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

func jsonMap(v any) map[string]any {
	m, _ := jsonAny(v).(map[string]any)
	return m
}

// memBlobs is an in-memory BlobOpener.
type memBlobs struct {
	mu    sync.Mutex
	data  map[string][]byte
	gen   map[string]int64 // generated blobs: size, content patternByte(i)
	fail  map[string]int64 // blobs whose reader fails after this many bytes
	opens atomic.Int64
	delay atomic.Int64 // nanoseconds each Open takes (a slow store)
}

var _ BlobOpener = (*memBlobs)(nil)

func newMemBlobs() *memBlobs {
	return &memBlobs{data: map[string][]byte{}, gen: map[string]int64{}, fail: map[string]int64{}}
}

func (m *memBlobs) put(url string, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[url] = b
}

func (m *memBlobs) Open(_ context.Context, url string) (io.ReadCloser, int64, error) {
	m.opens.Add(1)
	time.Sleep(time.Duration(m.delay.Load()))
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.gen[url]; ok {
		return io.NopCloser(&patternReader{n: n}), n, nil
	}
	b, ok := m.data[url]
	if !ok {
		return nil, 0, fmt.Errorf("blob %s: not found", url)
	}
	var r io.Reader = bytes.NewReader(b)
	if at, ok := m.fail[url]; ok {
		r = io.MultiReader(io.LimitReader(r, at), errReader{})
	}
	return io.NopCloser(r), int64(len(b)), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("blob store connection reset") }

// patternReader yields n bytes of a fixed 64 KiB pattern without holding
// them, so that a test's blob store does not count in the server's heap. It
// seeks, for http.ServeContent.
type patternReader struct{ off, n int64 }

var pattern = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}()

func patternByte(i int64) byte { return pattern[i%int64(len(pattern))] }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	done := 0
	for done < len(b) {
		k := copy(b[done:], pattern[(p.off+int64(done))%int64(len(pattern)):])
		done += k
	}
	p.off += int64(done)
	return done, nil
}

func (p *patternReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += p.off
	case io.SeekEnd:
		offset += p.n
	}
	if offset < 0 {
		return 0, errors.New("negative offset")
	}
	p.off = offset
	return offset, nil
}
