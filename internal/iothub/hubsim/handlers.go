package hubsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Page sizes for queries. IoT Hub answers 100 items per page unless the
// caller asks for another size with x-ms-max-item-count; the emulator refuses
// sizes outside 1..1000.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /twins/{id}", s.route(OpGetTwin, s.getTwin))
	mux.Handle("PATCH /twins/{id}", s.route(OpPatchTwin, s.writeTwin(false)))
	mux.Handle("PUT /twins/{id}", s.route(OpReplaceTwin, s.writeTwin(true)))
	mux.Handle("GET /devices/{id}", s.route(OpGetDevice, s.getDevice))
	mux.Handle("PUT /devices/{id}", s.route(OpPutDevice, s.putDevice))
	mux.Handle("DELETE /devices/{id}", s.route(OpDeleteDevice, s.deleteDevice))
	mux.Handle("POST /devices/query", s.route(OpQuery, s.query))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NotFound", "no such resource")
	})
	return mux
}

// statusRecorder counts a success when the status is decided, before the
// response leaves, so a client never sees an answer the counters miss.
type statusRecorder struct {
	http.ResponseWriter
	status int
	ok     func()
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
		if code >= 200 && code < 300 {
			r.ok()
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

// route wraps an operation with what every IoT Hub request goes through:
// counting, api-version, SAS authentication, then injected faults.
func (s *Server) route(op Op, h func(w http.ResponseWriter, r *http.Request, id string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		s.counters.inc(&s.counters.requests, op)
		v := r.URL.Query().Get("api-version")
		if v == "" {
			writeError(w, http.StatusBadRequest, "InvalidProtocolVersion", "the api-version query parameter is required")
			return
		}
		if !s.apiVer[v] {
			writeError(w, http.StatusBadRequest, "InvalidProtocolVersion", fmt.Sprintf("api-version %q is not supported", v))
			return
		}
		if err := checkSAS(r.Header.Get("Authorization"), s.policies, s.host, r.URL.EscapedPath(), s.now()); err != nil {
			s.log.V(1).Info("refused request", "op", string(op), "reason", err.Error())
			writeError(w, http.StatusUnauthorized, "IotHubUnauthorizedAccess", "Unauthorized")
			return
		}
		if f := s.faults.match(op, id); f != nil {
			if f.Latency > 0 {
				select {
				case <-time.After(f.Latency):
				case <-r.Context().Done():
					return
				}
			}
			if f.Drop {
				if hj, ok := w.(http.Hijacker); ok {
					if conn, _, err := hj.Hijack(); err == nil {
						conn.Close()
						return
					}
				}
				panic(http.ErrAbortHandler) // closes the connection without a response
			}
			if f.Status != 0 {
				if f.RetryAfter > 0 {
					w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
				}
				writeError(w, f.Status, faultCode(f.Status), "injected fault")
				return
			}
		}
		h(&statusRecorder{ResponseWriter: w, ok: func() { s.counters.inc(&s.counters.served, op) }}, r, id)
	})
}

func faultCode(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "ThrottlingException"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusInternalServerError:
		return "ServerError"
	case http.StatusUnauthorized:
		return "IotHubUnauthorizedAccess"
	case http.StatusForbidden:
		return "IotHubQuotaExceeded"
	case http.StatusNotFound:
		return "DeviceNotFound"
	}
	return "GenericError"
}

// writeError answers in IoT Hub's error shape: the iothub-errorcode header
// and {"Message":"ErrorCode:<code>;<message>","ExceptionMessage":...}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("iothub-errorcode", code)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{
		"Message":          "ErrorCode:" + code + ";" + msg,
		"ExceptionMessage": "Tracking ID:hubsim-TimeStamp:" + time.Now().UTC().Format(time.RFC3339),
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "ServerError", "encode response")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func unmarshalNumber(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxRequestBytes {
		return nil, fmt.Errorf("request body larger than %d bytes", maxRequestBytes)
	}
	return b, nil
}

// --- twins ---

const zeroTime = "0001-01-01T00:00:00Z"

type twinJSON struct {
	DeviceID                  string          `json:"deviceId"`
	ETag                      string          `json:"etag"`
	DeviceETag                string          `json:"deviceEtag"`
	Status                    string          `json:"status"`
	StatusUpdateTime          string          `json:"statusUpdateTime"`
	ConnectionState           string          `json:"connectionState"`
	LastActivityTime          string          `json:"lastActivityTime"`
	CloudToDeviceMessageCount int             `json:"cloudToDeviceMessageCount"`
	AuthenticationType        string          `json:"authenticationType"`
	X509Thumbprint            map[string]any  `json:"x509Thumbprint"`
	Version                   int64           `json:"version"`
	Tags                      map[string]any  `json:"tags,omitempty"`
	Properties                propertiesJSON  `json:"properties"`
	Capabilities              map[string]bool `json:"capabilities"`
}

type propertiesJSON struct {
	Desired  map[string]any `json:"desired"`
	Reported map[string]any `json:"reported"`
}

func withMeta(doc map[string]any, version int64, updated time.Time) map[string]any {
	out := make(map[string]any, len(doc)+2)
	for k, v := range doc {
		out[k] = v
	}
	out["$metadata"] = map[string]any{"$lastUpdated": updated.UTC().Format("2006-01-02T15:04:05.0000000Z")}
	out["$version"] = version
	return out
}

func renderTwin(d *device) *twinJSON {
	return &twinJSON{
		DeviceID:           d.ID,
		ETag:               d.TwinETag,
		DeviceETag:         d.DeviceETag,
		Status:             d.Status,
		StatusUpdateTime:   zeroTime,
		ConnectionState:    "Disconnected",
		LastActivityTime:   zeroTime,
		AuthenticationType: d.AuthType,
		X509Thumbprint:     map[string]any{"primaryThumbprint": nil, "secondaryThumbprint": nil},
		Version:            d.Version,
		Tags:               d.Tags,
		Properties: propertiesJSON{
			Desired:  withMeta(d.Desired, d.DesiredVersion, d.LastUpdated),
			Reported: withMeta(d.Reported, d.ReportedVersion, d.LastUpdated),
		},
		Capabilities: map[string]bool{"iotEdge": false},
	}
}

func (s *Server) getTwin(w http.ResponseWriter, r *http.Request, id string) {
	d := s.store.get(id)
	if d == nil {
		writeError(w, http.StatusNotFound, "DeviceNotFound", fmt.Sprintf("Device %s not found", id))
		return
	}
	w.Header().Set("ETag", `"`+d.TwinETag+`"`)
	writeJSON(w, renderTwin(d))
}

// twinPatch is a change to a twin's tags and desired properties.
type twinPatch struct {
	tags    map[string]any
	desired map[string]any
}

type twinBody struct {
	DeviceID   string         `json:"deviceId"`
	Tags       map[string]any `json:"tags"`
	Properties *struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	} `json:"properties"`
}

// stripMeta removes the read-only $metadata and $version a client may echo
// back from a twin it read.
func stripMeta(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	if _, ok := m["$metadata"]; !ok {
		if _, ok := m["$version"]; !ok {
			return m
		}
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != "$metadata" && k != "$version" {
			out[k] = v
		}
	}
	return out
}

// ifMatch reports whether the If-Match header h admits the current etag.
// Absent, * or "*" is an unconditional write, as on IoT Hub: Microsoft's
// SDKs quote every If-Match value, "*" included (the Node SDK's
// Registry.update, Registry.delete and updateTwin(id, patch, "*")), while
// iotservice sends a bare *. Otherwise the ETag, quoted or not, must equal
// the current one.
func ifMatch(h, etag string) bool {
	h = strings.TrimSpace(h)
	if len(h) >= 2 && h[0] == '"' && h[len(h)-1] == '"' {
		h = h[1 : len(h)-1]
	}
	if h == "" || h == "*" {
		return true
	}
	return h == etag
}

func (s *Server) writeTwin(replace bool) func(w http.ResponseWriter, r *http.Request, id string) {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		b, err := readBody(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", err.Error())
			return
		}
		var body twinBody
		if err := unmarshalNumber(b, &body); err != nil {
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", "malformed twin: "+err.Error())
			return
		}
		if body.DeviceID != "" && body.DeviceID != id {
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", "deviceId in body does not match the URI")
			return
		}
		p := twinPatch{tags: body.Tags}
		if body.Properties != nil {
			if body.Properties.Reported != nil {
				writeError(w, http.StatusBadRequest, "ArgumentInvalid", "reported properties cannot be written by the service")
				return
			}
			p.desired = stripMeta(body.Properties.Desired)
		}
		if err := validateDoc(p.tags, !replace); err != nil {
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", "tags: "+err.Error())
			return
		}
		if err := validateDoc(p.desired, !replace); err != nil {
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", "desired: "+err.Error())
			return
		}
		others := s.faults.takeConcurrent(id)

		s.store.mu.Lock()
		d := s.store.devices[id]
		if d == nil {
			s.store.mu.Unlock()
			writeError(w, http.StatusNotFound, "DeviceNotFound", fmt.Sprintf("Device %s not found", id))
			return
		}
		for _, o := range others { // the simulated concurrent writer wins the race
			d = s.applyLocked(d, o, false)
			s.store.putLocked(d)
		}
		if !ifMatch(r.Header.Get("If-Match"), d.TwinETag) {
			s.store.mu.Unlock()
			writeError(w, http.StatusPreconditionFailed, "PreconditionFailed", "Precondition failed: ETag does not match the twin's")
			return
		}
		nd := s.applyLocked(d, p, replace)
		if docSize(nd.Tags) > maxTagsSize {
			s.store.mu.Unlock()
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", fmt.Sprintf("tags larger than %d bytes", maxTagsSize))
			return
		}
		if docSize(nd.Desired) > maxDesiredSize {
			s.store.mu.Unlock()
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", fmt.Sprintf("desired properties larger than %d bytes", maxDesiredSize))
			return
		}
		s.store.putLocked(nd)
		s.noteOwnership(d, nd)
		s.store.mu.Unlock()
		s.countRolloutWrite(id, p.tags)
		w.Header().Set("ETag", `"`+nd.TwinETag+`"`)
		writeJSON(w, renderTwin(nd))
	}
}

// applyLocked returns a copy of d with p applied: merged (or, for replace,
// substituted), a fresh ETag, the version incremented, and the desired
// version incremented when desired properties changed. Callers hold
// s.store.mu and store the result themselves.
func (s *Server) applyLocked(d *device, p twinPatch, replace bool) *device {
	nd := *d
	if replace {
		nd.Tags, nd.Desired = p.tags, p.desired
		nd.DesiredVersion++
	} else {
		if p.tags != nil {
			nd.Tags = mergePatch(d.Tags, p.tags)
		}
		if p.desired != nil {
			nd.Desired = mergePatch(d.Desired, p.desired)
			nd.DesiredVersion++
		}
	}
	nd.Version++
	nd.TwinETag = s.store.nextETag()
	nd.LastUpdated = s.now()
	return &nd
}

// --- device identities ---

type deviceJSON struct {
	DeviceID                   string          `json:"deviceId"`
	GenerationID               string          `json:"generationId"`
	ETag                       string          `json:"etag"`
	ConnectionState            string          `json:"connectionState"`
	Status                     string          `json:"status"`
	StatusReason               *string         `json:"statusReason"`
	ConnectionStateUpdatedTime string          `json:"connectionStateUpdatedTime"`
	StatusUpdatedTime          string          `json:"statusUpdatedTime"`
	LastActivityTime           string          `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int             `json:"cloudToDeviceMessageCount"`
	Authentication             authJSON        `json:"authentication"`
	Capabilities               map[string]bool `json:"capabilities"`
}

type authJSON struct {
	SymmetricKey struct {
		PrimaryKey   string `json:"primaryKey"`
		SecondaryKey string `json:"secondaryKey"`
	} `json:"symmetricKey"`
	X509Thumbprint map[string]any `json:"x509Thumbprint"`
	Type           string         `json:"type"`
}

func renderDevice(d *device) *deviceJSON {
	out := &deviceJSON{
		DeviceID:                   d.ID,
		GenerationID:               d.GenerationID,
		ETag:                       d.DeviceETag,
		ConnectionState:            "Disconnected",
		Status:                     d.Status,
		ConnectionStateUpdatedTime: zeroTime,
		StatusUpdatedTime:          zeroTime,
		LastActivityTime:           zeroTime,
		Capabilities:               map[string]bool{"iotEdge": false},
	}
	out.Authentication.SymmetricKey.PrimaryKey = d.PrimaryKey
	out.Authentication.SymmetricKey.SecondaryKey = d.SecondaryKey
	out.Authentication.X509Thumbprint = map[string]any{"primaryThumbprint": nil, "secondaryThumbprint": nil}
	out.Authentication.Type = d.AuthType
	return out
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, id string) {
	d := s.store.get(id)
	if d == nil {
		writeError(w, http.StatusNotFound, "DeviceNotFound", fmt.Sprintf("Device %s not found", id))
		return
	}
	w.Header().Set("ETag", `"`+d.DeviceETag+`"`)
	writeJSON(w, renderDevice(d))
}

type deviceBody struct {
	DeviceID       string `json:"deviceId"`
	Status         string `json:"status"`
	Authentication *struct {
		SymmetricKey *struct {
			PrimaryKey   string `json:"primaryKey"`
			SecondaryKey string `json:"secondaryKey"`
		} `json:"symmetricKey"`
		Type string `json:"type"`
	} `json:"authentication"`
}

func (s *Server) putDevice(w http.ResponseWriter, r *http.Request, id string) {
	if !validDeviceID(id) {
		writeError(w, http.StatusBadRequest, "ArgumentInvalid", "invalid device id")
		return
	}
	b, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "ArgumentInvalid", err.Error())
		return
	}
	var body deviceBody
	if err := unmarshalNumber(b, &body); err != nil {
		writeError(w, http.StatusBadRequest, "ArgumentInvalid", "malformed device: "+err.Error())
		return
	}
	if body.DeviceID != id {
		writeError(w, http.StatusBadRequest, "ArgumentInvalid", "deviceId in body does not match the URI")
		return
	}
	switch body.Status {
	case "", "enabled", "disabled":
	default:
		writeError(w, http.StatusBadRequest, "ArgumentInvalid", "status must be enabled or disabled")
		return
	}
	var primary, secondary string
	if a := body.Authentication; a != nil {
		if a.Type != "" && a.Type != "sas" {
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", "the emulator supports sas authentication only")
			return
		}
		if a.SymmetricKey != nil {
			primary, secondary = a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey
		}
	}
	for _, k := range []string{primary, secondary} {
		if k == "" {
			continue
		}
		if kb, err := base64.StdEncoding.DecodeString(k); err != nil || len(kb) < 16 || len(kb) > 64 {
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", "symmetric keys must be base64 of 16 to 64 bytes")
			return
		}
	}
	s.store.mu.Lock()
	cur := s.store.devices[id]
	im := r.Header.Get("If-Match")
	var nd *device
	switch {
	case cur == nil:
		nd = s.store.newDeviceLocked(id, body.Status, primary, secondary, s.now())
	case im == "":
		s.store.mu.Unlock()
		writeError(w, http.StatusConflict, "DeviceAlreadyExists", fmt.Sprintf("A device with ID '%s' is already registered", id))
		return
	case !ifMatch(im, cur.DeviceETag):
		s.store.mu.Unlock()
		writeError(w, http.StatusPreconditionFailed, "PreconditionFailed", "Precondition failed: ETag does not match the device's")
		return
	default:
		c := *cur
		if body.Status != "" {
			c.Status = body.Status
		}
		if primary != "" {
			c.PrimaryKey = primary
		}
		if secondary != "" {
			c.SecondaryKey = secondary
		}
		c.DeviceETag = s.store.nextETag()
		nd = &c
	}
	s.store.putLocked(nd)
	s.store.mu.Unlock()
	w.Header().Set("ETag", `"`+nd.DeviceETag+`"`)
	writeJSON(w, renderDevice(nd))
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, id string) {
	s.store.mu.Lock()
	cur := s.store.devices[id]
	if cur == nil {
		s.store.mu.Unlock()
		writeError(w, http.StatusNotFound, "DeviceNotFound", fmt.Sprintf("Device %s not found", id))
		return
	}
	if !ifMatch(r.Header.Get("If-Match"), cur.DeviceETag) {
		s.store.mu.Unlock()
		writeError(w, http.StatusPreconditionFailed, "PreconditionFailed", "Precondition failed: ETag does not match the device's")
		return
	}
	s.store.deleteLocked(id)
	s.store.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// --- queries ---

// continuation is the decoded x-ms-continuation token: the query it belongs
// to (a hash, so a token cannot be replayed against another query) and the
// last device id returned.
type continuation struct {
	Q     string `json:"q"`
	After string `json:"a"`
}

func queryHash(q string) string {
	h := sha256.Sum256([]byte(q))
	return hex.EncodeToString(h[:8])
}

func (s *Server) query(w http.ResponseWriter, r *http.Request, _ string) {
	b, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "ArgumentInvalid", err.Error())
		return
	}
	var body struct {
		Query *string `json:"query"`
	}
	if err := unmarshalNumber(b, &body); err != nil || body.Query == nil {
		writeError(w, http.StatusBadRequest, "ArgumentInvalid", "body must be {\"query\": \"...\"}")
		return
	}
	q, err := ParseQuery(*body.Query)
	if err != nil {
		writeError(w, http.StatusBadRequest, "SqlQueryInvalid", err.Error())
		return
	}
	size := defaultPageSize
	if h := r.Header.Get("x-ms-max-item-count"); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 1 || n > maxPageSize {
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", fmt.Sprintf("x-ms-max-item-count must be 1..%d", maxPageSize))
			return
		}
		size = n
	}
	qh := queryHash(*body.Query)
	var after string
	if tok := r.Header.Get("x-ms-continuation"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		var c continuation
		if err != nil || json.Unmarshal(raw, &c) != nil || c.Q != qh {
			writeError(w, http.StatusBadRequest, "ArgumentInvalid", "invalid continuation token for this query")
			return
		}
		after = c.After
	}
	ids, ok := q.deviceIDs()
	if !ok {
		ids = s.store.ids()
	}
	start := sort.SearchStrings(ids, after)
	if after != "" && start < len(ids) && ids[start] == after {
		start++
	}
	page := make([]*twinJSON, 0, min(size, 128))
	next := ""
	s.store.mu.RLock()
	i := start
	for ; i < len(ids) && len(page) < size; i++ {
		if d := s.store.devices[ids[i]]; d != nil && q.match(d) {
			page = append(page, renderTwin(d))
		}
	}
	// A continuation token only when another twin matches, as IoT Hub: a
	// client pages until the token is absent, and one more request that
	// comes back empty is a wasted query unit (and an empty page the Node
	// SDK hands its caller). Looking ahead costs no more than that request.
	if len(page) == size {
		for j := i; j < len(ids); j++ {
			if d := s.store.devices[ids[j]]; d != nil && q.match(d) {
				next = ids[i-1]
				break
			}
		}
	}
	s.store.mu.RUnlock()
	w.Header().Set("x-ms-item-type", "Twin")
	if next != "" {
		tok, _ := json.Marshal(continuation{Q: qh, After: next})
		w.Header().Set("x-ms-continuation", base64.RawURLEncoding.EncodeToString(tok))
	}
	writeJSON(w, page)
}
