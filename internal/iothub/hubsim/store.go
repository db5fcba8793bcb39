package hubsim

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Limits IoT Hub documents for device twins ("Understand and use device twins
// in IoT Hub": tags up to 8 KB, desired and reported up to 32 KB each, objects
// nested up to 10 levels, keys up to 1 KB), and for device identities
// (device ids up to 128 characters).
const (
	maxTagsSize     = 8 * 1024
	maxDesiredSize  = 32 * 1024
	maxDepth        = 10
	maxKeyBytes     = 1024
	maxDeviceIDLen  = 128
	maxRequestBytes = 256 * 1024 // far above any valid twin; bounds a hostile body
)

// device is one device identity and its twin. Values are immutable once
// stored: a write builds a new device and swaps the pointer, so readers can
// render a device outside the lock and unchanged subtrees are shared.
type device struct {
	ID              string         `json:"deviceId"`
	GenerationID    string         `json:"generationId"`
	DeviceETag      string         `json:"deviceEtag"`
	Status          string         `json:"status"`
	PrimaryKey      string         `json:"primaryKey,omitempty"`
	SecondaryKey    string         `json:"secondaryKey,omitempty"`
	AuthType        string         `json:"authType"`
	TwinETag        string         `json:"etag"`
	Version         int64          `json:"version"`
	Tags            map[string]any `json:"tags,omitempty"`
	Desired         map[string]any `json:"desired,omitempty"`
	DesiredVersion  int64          `json:"desiredVersion"`
	Reported        map[string]any `json:"reported,omitempty"`
	ReportedVersion int64          `json:"reportedVersion"`
	LastUpdated     time.Time      `json:"lastUpdated"`
}

// store is the emulator's registry: devices by id plus a lazily sorted id
// index for queries (sorting once per change burst, not per insert, keeps
// seeding 100,000 devices linear-ish).
type store struct {
	mu      sync.RWMutex
	devices map[string]*device
	sorted  []string
	dirtyIx bool
	etagSeq uint64
	changed bool // since the last save
	share   sharer
}

func newStore() *store {
	return &store{devices: map[string]*device{}}
}

// nextETag returns a fresh ETag in IoT Hub's form: base64 of a big-endian
// 64-bit counter ("AAAAAAAAAAE="). The counter is hub-wide, so an ETag is
// never reused, not even after a device is deleted and created again.
// Callers hold s.mu for writing.
func (s *store) nextETag() string {
	s.etagSeq++
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], s.etagSeq)
	return base64.StdEncoding.EncodeToString(b[:])
}

func (s *store) get(id string) *device {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.devices[id]
}

// ids returns the sorted device ids (shared; callers must not modify it).
func (s *store) ids() []string {
	s.mu.RLock()
	if !s.dirtyIx {
		ids := s.sorted
		s.mu.RUnlock()
		return ids
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirtyIx {
		ids := make([]string, 0, len(s.devices))
		for id := range s.devices {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		s.sorted = ids
		s.dirtyIx = false
	}
	return s.sorted
}

// put stores d, replacing any device with the same id, its documents
// sharing their repeated parts with the other twins'. d must not be
// published yet. Callers hold s.mu.
func (s *store) putLocked(d *device) {
	d.Tags, d.Desired, d.Reported = s.share.doc(d.Tags), s.share.doc(d.Desired), s.share.doc(d.Reported)
	if _, ok := s.devices[d.ID]; !ok {
		s.dirtyIx = true
	}
	s.devices[d.ID] = d
	s.changed = true
}

func (s *store) deleteLocked(id string) {
	delete(s.devices, id)
	s.dirtyIx = true
	s.changed = true
}

// newDevice builds a fresh identity with an empty twin at version 1, as IoT
// Hub creates it.
func (s *store) newDeviceLocked(id, status string, primary, secondary string, now time.Time) *device {
	if status == "" {
		status = "enabled"
	}
	if primary == "" {
		primary = randomKey()
	}
	if secondary == "" {
		secondary = randomKey()
	}
	return &device{
		ID:              id,
		GenerationID:    randomGenID(),
		DeviceETag:      s.nextETag(),
		Status:          status,
		PrimaryKey:      primary,
		SecondaryKey:    secondary,
		AuthType:        "sas",
		TwinETag:        s.nextETag(),
		Version:         1,
		DesiredVersion:  1,
		ReportedVersion: 1,
		LastUpdated:     now,
	}
}

func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func randomGenID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%d", binary.BigEndian.Uint64(b)>>1)
}

// validDeviceID reports whether id is a device id IoT Hub accepts: up to 128
// characters of ASCII letters, digits and - . % _ * ? ! ( ) , : = @ $ '.
func validDeviceID(id string) bool {
	if id == "" || len(id) > maxDeviceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.%_*?!(),:=@$'", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// mergePatch applies the JSON merge patch (RFC 7386) patch to target and
// returns the result as a new map; target is not modified and subtrees the
// patch does not touch are shared with it. A nil value deletes its key.
func mergePatch(target, patch map[string]any) map[string]any {
	out := make(map[string]any, len(target)+len(patch))
	for k, v := range target {
		out[k] = v
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			tv, _ := out[k].(map[string]any)
			out[k] = mergePatch(tv, pv)
		default:
			out[k] = v
		}
	}
	return out
}

// errInvalidTwin is wrapped by validation failures of a twin document.
var errInvalidTwin = errors.New("invalid twin document")

// validateDoc checks a patch or document the way IoT Hub does: keys are
// non-empty, at most 1 KB, without control characters, '.', ' ' or '$';
// objects nest at most 10 levels. allowNull permits null values (a patch).
func validateDoc(doc map[string]any, allowNull bool) error {
	return validateObj(doc, 1, allowNull)
}

func validateObj(m map[string]any, depth int, allowNull bool) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested deeper than %d levels", errInvalidTwin, maxDepth)
	}
	for k, v := range m {
		if err := validateKey(k); err != nil {
			return err
		}
		if err := validateValue(v, depth, allowNull); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

func validateValue(v any, depth int, allowNull bool) error {
	switch x := v.(type) {
	case nil:
		if !allowNull {
			return fmt.Errorf("%w: null value", errInvalidTwin)
		}
	case map[string]any:
		return validateObj(x, depth+1, allowNull)
	case []any:
		for _, e := range x {
			if e == nil {
				return fmt.Errorf("%w: null in array", errInvalidTwin)
			}
			if err := validateValue(e, depth+1, false); err != nil {
				return err
			}
		}
	case string, bool, json.Number, float64:
	default:
		return fmt.Errorf("%w: unsupported value %T", errInvalidTwin, v)
	}
	return nil
}

func validateKey(k string) error {
	if k == "" || len(k) > maxKeyBytes || !utf8.ValidString(k) {
		return fmt.Errorf("%w: invalid key %q", errInvalidTwin, k)
	}
	for _, r := range k {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '.' || r == ' ' || r == '$' {
			return fmt.Errorf("%w: key %q contains %q", errInvalidTwin, k, r)
		}
	}
	return nil
}

// docSize computes a document's size the way IoT Hub counts it against the
// twin limits: the UTF-8 length of every key and string value, 8 bytes per
// number, 4 per boolean, nested objects and arrays by their content.
func docSize(v any) int {
	switch x := v.(type) {
	case map[string]any:
		n := 0
		for k, e := range x {
			n += len(k) + docSize(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range x {
			n += docSize(e)
		}
		return n
	case string:
		return len(x)
	case bool:
		return 4
	case nil:
		return 0
	default:
		return 8
	}
}

// state is the persisted form of the registry.
type state struct {
	ETagSeq uint64    `json:"etagSeq"`
	Devices []*device `json:"devices"`
}

// snapshot returns the registry's state; devices are immutable so the slice
// of pointers is a consistent copy.
func (s *store) snapshot() *state {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &state{ETagSeq: s.etagSeq, Devices: make([]*device, 0, len(s.devices))}
	for _, d := range s.devices {
		st.Devices = append(st.Devices, d)
	}
	s.changed = false
	sort.Slice(st.Devices, func(i, j int) bool { return st.Devices[i].ID < st.Devices[j].ID })
	return st
}

// save writes the registry to path atomically (temporary file, fsync,
// rename), so a crash mid-write leaves the previous state intact.
func (s *store) save(path string) error {
	st := s.snapshot()
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	enc := json.NewEncoder(f)
	if err := enc.Encode(st); err != nil {
		f.Close()
		s.markChanged()
		return fmt.Errorf("save state %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		s.markChanged()
		return fmt.Errorf("save state %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		s.markChanged()
		return fmt.Errorf("save state %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		s.markChanged()
		return fmt.Errorf("save state %s: %w", path, err)
	}
	return nil
}

func (s *store) markChanged() {
	s.mu.Lock()
	s.changed = true
	s.mu.Unlock()
}

func (s *store) isChanged() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// load reads a registry saved by save; a missing file is an empty registry.
func (s *store) load(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.UseNumber()
	var st state
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("load state %s: %w", path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.etagSeq = st.ETagSeq
	for _, d := range st.Devices {
		d.Tags, d.Desired, d.Reported = s.share.doc(d.Tags), s.share.doc(d.Desired), s.share.doc(d.Reported)
		s.devices[d.ID] = d
	}
	s.dirtyIx = true
	return nil
}
