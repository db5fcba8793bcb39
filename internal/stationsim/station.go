package stationsim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/stationfleet/stationfleet/internal/signing"
)

// DefaultTimeout is CUPS_CONN_TIMEOUT (src/s2conf.h): the station gives up
// when no data arrived for this long.
const DefaultTimeout = 60 * time.Second

// FailCountThreshold is FAIL_CNT_THRES (src/cups.c): a failed session moves
// the station to its next credential set when more than this many failures
// came before it since the last success. An HTTP error status, or a set
// without a URI, moves it on at once.
const FailCountThreshold = 6

// Behavior makes a station misbehave, for tests of the rollout's failure
// handling. The zero value is a well-behaved station.
type Behavior struct {
	// NeverApply: verified updates are received but never installed.
	NeverApply bool
	// ApplyVersion, when set, is the package installed instead of the one
	// the update script names (a firmware that reports a different version).
	ApplyVersion string
	// StopPolling: Run and Fleet skip this station's polls, and Poll
	// returns a Skipped result.
	StopPolling bool
	// TC is the station's connection to its network server, which decides
	// when it polls (see TCState); empty is TCUp. A change made with
	// SetBehavior takes effect at once.
	TC TCState
	// TCAfterUpdate, when set, becomes TC when the station applies its
	// next update (a firmware that breaks, or mends, the network-server
	// connection), and is then cleared.
	TCAfterUpdate TCState
	// FallBackAfter, when positive, makes every applied update fall back:
	// this long after the start poll that reported the new package, the
	// station restarts on its previous package (version.txt and TC as they
	// were before the update) and polls within Schedule.Start, reporting
	// it (a firmware that fell back to its old image).
	FallBackAfter time.Duration
}

// UpdateOutcome is what became of an update segment.
type UpdateOutcome int

const (
	// UpdateNone: the response carried no update (or was not complete).
	UpdateNone UpdateOutcome = iota
	// UpdateApplied: the update verified (or came unsigned to a station
	// without keys) and was installed.
	UpdateApplied
	// UpdateRefused: the station refused it (no key verified the
	// signature, or it has keys and no signature came).
	UpdateRefused
	// UpdateNotInstalled: accepted, but Behavior.NeverApply kept it from
	// being installed.
	UpdateNotInstalled
)

// String returns the outcome's name.
func (o UpdateOutcome) String() string {
	switch o {
	case UpdateNone:
		return "None"
	case UpdateApplied:
		return "Applied"
	case UpdateRefused:
		return "Refused"
	case UpdateNotInstalled:
		return "NotInstalled"
	}
	return "UpdateOutcome(" + strconv.Itoa(int(o)) + ")"
}

// StatusError is a non-200 answer: the station counts a failure (and after
// several rotates to its backup credentials).
type StatusError struct {
	// Code is the HTTP status code as the station parsed it (-1 when the
	// status line was unreadable).
	Code int
}

func (e *StatusError) Error() string { return fmt.Sprintf("CUPS answered HTTP status %d", e.Code) }

// Result is the outcome of one CUPS session.
type Result struct {
	// Skipped is set when Behavior.StopPolling kept the station quiet.
	Skipped bool
	// CredSet is the CUPS credential set this session used (its URI,
	// trust and client credentials; the request body always reports the
	// regular set's URI and CRC).
	CredSet CredSetName
	// NextCredSet is the set the next session will use: the regular set
	// after a success, otherwise as the station's failure counting says
	// (see FailCountThreshold).
	NextCredSet CredSetName
	// FailCount is the number of failed sessions since the last success,
	// this one included (cups_failCnt).
	FailCount int
	// BackupTaken is set when this session copied the regular set to the
	// backup set (the first HTTP 200 with the regular set in the life of
	// the station's home directory).
	BackupTaken bool
	// Request is the JSON body sent.
	Request []byte
	// StatusCode is the HTTP status (0 when none was read).
	StatusCode int
	// Response is what was parsed of the body, possibly partial; nil when
	// no body was parsed.
	Response *Response
	// What changed in the station's state.
	CUPSURIChanged, TCURIChanged, CUPSCredChanged, TCCredChanged bool
	// Update is what became of an update, UpdateReason why.
	Update       UpdateOutcome
	UpdateReason string
	// VerifiedKey is the index N of the sig-N.key that verified, -1 if none.
	VerifiedKey int
	// PackageBefore and PackageAfter are version.txt before and after.
	PackageBefore, PackageAfter string
	// BytesRead counts response body bytes read.
	BytesRead int64
	// Violations are deviations from the wire format that the station
	// tolerates (it ignores them) but a correct server never produces:
	// a malformed credential blob, bytes after the update segment, a URI the
	// station could not read back.
	Violations []string
	// Err is why the session failed: a *ProtocolError (malformed
	// response), a *StatusError, or a network or configuration error.
	Err error
	// Duration is the wall time of the session.
	Duration time.Duration
	// StartPoll is set on the first session after the station (re)started:
	// a real station makes it within 0.2 s of the start (Schedule.Start).
	StartPoll bool
	// NextPoll is how long after this session the station's schedule
	// polls next (Run and Fleet follow it), when the session completed.
	NextPoll time.Duration
}

// Malformed reports whether the response broke the wire format: a
// *ProtocolError or any Violations.
func (r Result) Malformed() bool {
	var pe *ProtocolError
	return errors.As(r.Err, &pe) || len(r.Violations) > 0
}

// Option configures a Station.
type Option func(*Station)

// WithBehavior sets the station's initial misbehaviour.
func WithBehavior(b Behavior) Option { return func(s *Station) { s.behavior = b } }

// WithTimeout sets the idle timeout of a session (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(s *Station) { s.timeout = d } }

// WithRetryInterval sets Schedule.Resync (CUPS_RESYNC_INTV, R, 60 s on a
// real station): the wait after a failed session, or after a session that
// changed the station's CUPS URI or credentials, while TC is not up. The
// default is Run's interval.
func WithRetryInterval(d time.Duration) Option {
	return func(s *Station) {
		if d > 0 {
			s.clock.sched.Resync, s.clock.resyncSet = d, true
		}
	}
}

// WithSchedule sets the station's poll schedule (default DefaultSchedule;
// zero fields take the real station's values). A Fleet replaces it with
// its own.
func WithSchedule(sc Schedule) Option {
	return func(s *Station) {
		s.clock.sched = sc.withDefaults()
		s.clock.resyncSet = sc.Resync > 0
	}
}

// WithDialer sets how the station opens TCP connections (default a shared
// net.Dialer). Fleet passes one dialer to all its stations.
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(s *Station) { s.dial = dial }
}

// WithUpdateSink makes the station copy the data of every update it receives
// to the writer that open returns (called once per update, with its size),
// e.g. to keep the firmware a test served.
func WithUpdateSink(open func(size int64) io.Writer) Option {
	return func(s *Station) { s.sink = open }
}

// WithTLSSessionCache shares a TLS session cache (Fleet shares one, so
// thousands of stations resume sessions instead of full handshakes).
func WithTLSSessionCache(c tls.ClientSessionCache) Option {
	return func(s *Station) { s.sessions = c }
}

var defaultDialer = &net.Dialer{Timeout: 30 * time.Second}

// Station is a simulated Basics Station. Its methods are safe for concurrent
// use; one CUPS session runs at a time.
type Station struct {
	pollMu sync.Mutex // one session at a time, as on the station

	mu       sync.Mutex
	st       State
	behavior Behavior
	stats    Stats
	// credSet and failCnt are cups_credset and cups_failCnt: process
	// memory, reset by Restart.
	credSet, failCnt int
	// clock is the poll schedule and the TC engine.
	clock clock

	timeout  time.Duration
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	sink     func(size int64) io.Writer
	sessions tls.ClientSessionCache
}

// New returns a station with the given state.
func New(st State, opts ...Option) *Station {
	s := &Station{st: st.Clone(), timeout: DefaultTimeout, dial: defaultDialer.DialContext}
	s.clock.sched, s.clock.okJitter = DefaultSchedule(), 0.1
	for _, o := range opts {
		o(s)
	}
	return s
}

// State returns a copy of the station's current state.
func (s *Station) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Clone()
}

// SetState replaces the station's state (for tests: a new key, a reset).
func (s *Station) SetState(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st = st.Clone()
}

// Restart models a restart of the station process: the home directory
// (State) stays, the failure count and the credential set in use go back
// to the regular set, the TC connection starts over, and the station
// polls within Schedule.Start (Run and Fleet wake up for it).
func (s *Station) Restart() {
	s.mu.Lock()
	s.restart(time.Now())
	notify := s.clock.notify
	s.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// NextCredSet returns the CUPS credential set the next session will use.
func (s *Station) NextCredSet() CredSetName {
	s.mu.Lock()
	defer s.mu.Unlock()
	return credSetNames[s.credSet]
}

// EUI returns the station's EUI.
func (s *Station) EUI() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.EUI
}

// Package returns the station's current version.txt, trimmed.
func (s *Station) Package() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return trimEnd(s.st.Package)
}

// SetBehavior changes the station's misbehaviour from now on. A change of
// TC takes effect at once (see tcChanged in schedule.go); Run and Fleet
// wake up for it.
func (s *Station) SetBehavior(b Behavior) {
	s.mu.Lock()
	tcChanged := !sameTC(s.behavior.TC, b.TC)
	s.behavior = b
	if tcChanged {
		s.tcChanged(time.Now())
	}
	notify := s.clock.notify
	s.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// Schedule returns the station's poll schedule.
func (s *Station) Schedule() Schedule {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clock.sched
}

// Behavior returns the station's current misbehaviour.
func (s *Station) Behavior() Behavior {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.behavior
}

// Stats counts what a station (or a fleet) saw.
type Stats struct {
	// Polls counts sessions attempted; Failures those with an error.
	Polls, Failures int64
	// Malformed counts sessions whose response broke the wire format
	// (Result.Malformed).
	Malformed int64
	// Rejected counts non-200 answers.
	Rejected int64
	// UpdatesApplied, UpdatesRefused and UpdatesNotInstalled count update
	// outcomes.
	UpdatesApplied, UpdatesRefused, UpdatesNotInstalled int64
	// BytesRead counts response body bytes.
	BytesRead int64
	// FallBacks counts firmware fallbacks (Behavior.FallBackAfter).
	FallBacks int64
}

func (a *Stats) add(b Stats) {
	a.Polls += b.Polls
	a.Failures += b.Failures
	a.Malformed += b.Malformed
	a.Rejected += b.Rejected
	a.UpdatesApplied += b.UpdatesApplied
	a.UpdatesRefused += b.UpdatesRefused
	a.UpdatesNotInstalled += b.UpdatesNotInstalled
	a.BytesRead += b.BytesRead
	a.FallBacks += b.FallBacks
}

// Stats returns the station's counters.
func (s *Station) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Run polls on the station's schedule until ctx ends, skipping polls
// while Behavior.StopPolling is set (they are tried again OKSync later).
// It returns ctx.Err(). The first poll is the start poll, at once;
// interval, when positive, is Schedule.OKSync (and Schedule.Resync unless
// it was set). OKSync waits are jittered ±10%; R, the TC backoff and
// start polls are not.
func (s *Station) Run(ctx context.Context, interval time.Duration) error {
	wake := make(chan struct{}, 1)
	s.mu.Lock()
	if interval > 0 {
		s.clock.sched.OKSync = interval
		if !s.clock.resyncSet {
			s.clock.sched.Resync = interval
		}
	}
	s.clock.notify = func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.clock.notify = nil
		s.mu.Unlock()
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		t.Reset(time.Until(s.due()))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
			continue
		case <-t.C:
		}
		s.fire(ctx)
	}
}

// fire does what is due: a firmware fallback, then the poll when its
// time has come (false when it has not, or StopPolling skipped it).
func (s *Station) fire(ctx context.Context) (Result, bool) {
	now := time.Now()
	s.mu.Lock()
	s.fallBackIfDue(now)
	if s.clock.next.After(now) {
		s.mu.Unlock()
		return Result{}, false
	}
	if s.behavior.StopPolling {
		s.clock.next = now.Add(s.clock.okWait())
		s.clock.timer = s.clock.next
		s.mu.Unlock()
		return Result{Skipped: true}, false
	}
	s.mu.Unlock()
	return s.Poll(ctx), true
}

func sameTC(a, b TCState) bool { return a == b || a.up() && b.up() }

func jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 || frac <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + frac*(2*rand.Float64()-1)))
}

// Poll runs one CUPS session: POST /update-info, parse the answer as the
// station does, verify and "install" an update, apply URI and credential
// changes. It never panics on a bad response; what went wrong is in the
// Result.
func (s *Station) Poll(ctx context.Context) Result {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	start := time.Now()
	s.mu.Lock()
	s.fallBackIfDue(start)
	st := s.st.Clone()
	behavior := s.behavior
	res := Result{VerifiedKey: -1, PackageBefore: trimEnd(st.Package), PackageAfter: trimEnd(st.Package)}
	if behavior.StopPolling {
		s.mu.Unlock()
		res.Skipped = true
		return res
	}
	res.StartPoll = s.beginSession(start)
	set := s.credSet
	notify := s.clock.notify
	s.mu.Unlock()
	res.CredSet = credSetNames[set]
	log := logr.FromContextOrDiscard(ctx).WithValues("station", FormatID6(st.EUI), "credSet", string(res.CredSet))
	res.Request = st.RequestBody()
	uri, cred := st.cupsSet(set)
	noURI := false
	if uri = trimEnd(uri); uri == "" || len(uri)+1 > maxURILen {
		// sys_uri returns NULL for a missing file or an over-long URI.
		noURI = true
		res.Err = fmt.Errorf("no CUPS%s URI configured", credSetSuffix[set])
	} else {
		s.session(ctx, set, uri, cred, &res)
	}
	if res.Response != nil {
		s.apply(st, behavior, &res)
	}
	res.Duration = time.Since(start)

	var pe *ProtocolError
	var se *StatusError
	if res.Err != nil && ctxOver(ctx) && !res.Malformed() {
		// Cancelled by the caller (a fleet shutting down): not counted.
		res.Err = fmt.Errorf("poll cancelled: %w (%w)", ctx.Err(), res.Err)
		res.NextCredSet = s.NextCredSet()
		return res
	}
	s.mu.Lock()
	s.done(&res, noURI || errors.As(res.Err, &se))
	s.scheduleAfter(&res, start, time.Now())
	s.stats.Polls++
	s.stats.BytesRead += res.BytesRead
	if res.Err != nil {
		s.stats.Failures++
	}
	if res.Malformed() {
		s.stats.Malformed++
	}
	if errors.As(res.Err, &se) {
		s.stats.Rejected++
	}
	switch res.Update {
	case UpdateApplied:
		s.stats.UpdatesApplied++
	case UpdateRefused:
		s.stats.UpdatesRefused++
	case UpdateNotInstalled:
		s.stats.UpdatesNotInstalled++
	}
	s.mu.Unlock()
	if notify != nil {
		notify()
	}

	switch {
	case errors.As(res.Err, &pe):
		log.Info("CUPS protocol error", "error", res.Err.Error(), "bytesRead", res.BytesRead)
	case res.Err != nil:
		log.V(1).Info("CUPS session failed", "error", res.Err.Error())
	default:
		log.V(1).Info("CUPS session done", "update", res.Update.String(), "reason", res.UpdateReason,
			"package", res.PackageAfter, "bytesRead", res.BytesRead, "violations", len(res.Violations))
	}
	return res
}

// credSetSuffix is sys_credset2str: the file name part of each set.
var credSetSuffix = [...]string{"", "-bak", "-boot"}

// done is cups_ondone's bookkeeping, with s.mu held: a success returns to
// the regular set and clears the failure count; a failure moves to the next
// set (regular -> backup -> boot -> regular) when it was an HTTP error
// status or a set without a URI (rejectedNow), or when more than
// FailCountThreshold failures came before it.
func (s *Station) done(res *Result, rejectedNow bool) {
	if res.Err != nil {
		if s.failCnt > FailCountThreshold || rejectedNow {
			s.credSet = (s.credSet + 1) % len(credSetNames)
		}
		s.failCnt++
	} else {
		s.credSet, s.failCnt = 0, 0
	}
	res.NextCredSet = credSetNames[s.credSet]
	res.FailCount = s.failCnt
}

// takeBackup is backupConfigFiles: the first HTTP 200 to a session made
// with the regular set copies cups.{uri,trust,crt,key} to cups-bak.* and
// writes cups-bak.done; never again after that.
func (s *Station) takeBackup(set int, res *Result) {
	if set != 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.BackupDone {
		return
	}
	s.st.Backup = CUPSSet{URI: s.st.CUPSURI, Cred: s.st.CUPSCred.clone()}
	s.st.BackupDone = true
	res.BackupTaken = true
}

// ctxOver reports whether ctx is done or its deadline has passed (a socket
// deadline taken from ctx can fire a moment before ctx.Err is set).
func ctxOver(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// apply changes the station's state as the station does after a session.
func (s *Station) apply(st State, behavior Behavior, res *Result) {
	r := res.Response
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.TrailingBytes > 0 {
		res.Violations = append(res.Violations, fmt.Sprintf("%d bytes after the update segment within the Content-Length", r.TrailingBytes))
	}
	if r.ConfigCommitted {
		if r.CUPSURI != "" {
			s.st.CUPSURI = r.CUPSURI
			res.CUPSURIChanged = true
			if len(r.CUPSURI)+1 > maxURILen {
				res.Violations = append(res.Violations, fmt.Sprintf("cupsUri of %d bytes: the station cannot read back a URI of %d bytes or more", len(r.CUPSURI), maxURILen))
			}
		}
		if r.TCURI != "" {
			s.st.TCURI = r.TCURI
			res.TCURIChanged = true
			if len(r.TCURI)+1 > maxURILen {
				res.Violations = append(res.Violations, fmt.Sprintf("tcUri of %d bytes: the station cannot read back a URI of %d bytes or more", len(r.TCURI), maxURILen))
			}
		}
		for _, c := range []struct {
			name    string
			blob    []byte
			dst     *CredSet
			changed *bool
		}{{"cupsCred", r.CUPSCred, &s.st.CUPSCred, &res.CUPSCredChanged}, {"tcCred", r.TCCred, &s.st.TCCred, &res.TCCredChanged}} {
			if c.blob == nil {
				continue
			}
			set, err := ParseCredBlob(c.blob)
			if err != nil {
				// The station logs the error and keeps its old credentials.
				res.Violations = append(res.Violations, fmt.Sprintf("%s segment ignored by the station: %v", c.name, err))
				continue
			}
			*c.dst = set
			*c.changed = true
		}
	}
	if !r.Complete || r.UpdateSize == 0 {
		res.PackageAfter = trimEnd(s.st.Package)
		return
	}
	keys := st.keyFiles()
	switch {
	case r.Signature != nil:
		for i, k := range keys {
			if len(k) != signing.SigKeySize {
				continue // cups_verifySig skips keys of the wrong size
			}
			pub, err := signing.ParseSigKey(k)
			if err != nil {
				continue
			}
			if signing.VerifyDigest(pub, r.UpdateSHA512, r.Signature) == nil {
				res.VerifiedKey = i
				break
			}
		}
		if res.VerifiedKey < 0 {
			res.Update = UpdateRefused
			res.UpdateReason = fmt.Sprintf("no key could verify the signature (key CRC in segment %d, tried %d keys)", r.SigKeyCRC, len(keys))
		}
	case len(keys) > 0:
		res.Update = UpdateRefused
		res.UpdateReason = "keyfile present, but no signature provided"
	default:
		res.UpdateReason = "no key, no signature: running unsigned"
	}
	if res.Update != UpdateRefused {
		switch {
		case behavior.NeverApply:
			res.Update = UpdateNotInstalled
			res.UpdateReason = "behaviour: never apply"
		case behavior.ApplyVersion != "":
			res.Update = UpdateApplied
			s.st.Package = behavior.ApplyVersion
			res.UpdateReason = "behaviour: installed " + behavior.ApplyVersion + " instead of " + strconv.Quote(r.UpdateVersion)
		default:
			res.Update = UpdateApplied
			if r.HasVersionLine {
				s.st.Package = r.UpdateVersion
			}
			if res.VerifiedKey >= 0 {
				res.UpdateReason = fmt.Sprintf("verified with sig-%d.key", res.VerifiedKey)
			}
			if !r.HasVersionLine {
				res.UpdateReason += "; the update has no version.txt line, package unchanged"
			}
		}
	}
	res.PackageAfter = trimEnd(s.st.Package)
}

// session runs the HTTP exchange the way the station's HTTP client does
// (src/net.c): a new connection, one request, a header that must fit the
// buffer, a body of exactly Content-Length bytes.
func (s *Station) session(ctx context.Context, set int, uri string, cred CredSet, res *Result) {
	tlsOn, host, port, err := checkHostPortURI(uri)
	if err != nil {
		res.Err = err
		return
	}
	var (
		token  []byte
		tlsCfg *tls.Config
	)
	if tlsOn {
		if tlsCfg, token, err = s.tlsConfig(cred, host); err != nil {
			res.Err = err
			return
		}
	}
	addr := net.JoinHostPort(host, port)
	if ctx.Err() != nil {
		res.Err = ctx.Err()
		return
	}
	conn, err := s.dial(ctx, "tcp", addr)
	if err != nil {
		res.Err = fmt.Errorf("CUPS connect %s: %w", addr, err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if tlsOn {
		tc := tls.Client(conn, tlsCfg)
		_ = tc.SetDeadline(time.Now().Add(s.timeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			res.Err = fmt.Errorf("CUPS TLS handshake with %s: %w", addr, err)
			return
		}
		conn = tc
	}

	// "POST /update-info HTTP/1.1", Host from the URI, Content-Length
	// written as "00000" and then overwritten right-aligned with spaces
	// (http_setContentLength), the token's header lines, an empty line.
	var req bytes.Buffer
	req.WriteString("POST /update-info HTTP/1.1\r\nHost: ")
	req.WriteString(host + ":" + port)
	req.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	fmt.Fprintf(&req, "%5d\r\n", len(res.Request))
	req.Write(token)
	req.WriteString("\r\n")
	req.Write(res.Request)
	_ = conn.SetDeadline(time.Now().Add(s.timeout))
	if _, err := conn.Write(req.Bytes()); err != nil {
		res.Err = fmt.Errorf("CUPS send request: %w", err)
		return
	}

	dr := &deadlineReader{conn: conn, timeout: s.timeout}
	br := bufio.NewReaderSize(dr, BufferSize)
	// The buffer holds "host:port\0" before the response (http_connect).
	room := BufferSize - (len(host) + 1 + len(port) + 1)
	hdr, err := readHeader(br, room)
	if err != nil {
		res.Err = err
		return
	}
	status := statusCode(hdr)
	res.StatusCode = status
	clen, hasLen := contentLength(hdr)
	// The station reads the first chunk before it looks at the status.
	if status != 200 {
		res.Err = &StatusError{Code: status}
		return
	}
	s.takeBackup(set, res)
	if !hasLen {
		msg := "response has no Content-Length: the station then assumes an empty body"
		if headerHas(hdr, "transfer-encoding") {
			msg += " (it does not support Transfer-Encoding: chunked)"
		}
		res.Err = protoErr("%s", msg)
		return
	}
	firstN := min(clen, int64(room-len(hdr)))
	first := make([]byte, firstN)
	if _, err := io.ReadFull(br, first); err != nil {
		res.BytesRead = int64(len(first))
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			res.Err = protoErr("connection closed before the first %d body bytes arrived (Content-Length %d)", firstN, clen)
		} else {
			res.Err = fmt.Errorf("CUPS read body: %w", err)
		}
		return
	}
	// A connection closed inside the Content-Length ends the LimitReader
	// early: the parser reports it as "unexpected end of data".
	rest := io.LimitReader(br, clen-firstN)
	resp, err := readResponse(first, rest, s.sink)
	res.Response = resp
	res.BytesRead = resp.BytesRead
	if err != nil {
		res.Err = err
		return
	}
	if br.Buffered() > 0 {
		res.Err = protoErr("received more data than the Content-Length of %d: %d extra bytes", clen, br.Buffered())
		res.Response.Complete = false
	}
}

type deadlineReader struct {
	conn    net.Conn
	timeout time.Duration
}

// Read rewinds the idle timeout on every read, as the station rewinds its
// CUPS timer whenever data arrives.
func (d *deadlineReader) Read(p []byte) (int, error) {
	_ = d.conn.SetReadDeadline(time.Now().Add(d.timeout))
	return d.conn.Read(p)
}

// readHeader reads up to and including "\r\n\r\n", failing when the header
// does not fit in room bytes (the station's buffer).
func readHeader(br *bufio.Reader, room int) ([]byte, error) {
	var hdr []byte
	for {
		line, err := br.ReadSlice('\n')
		hdr = append(hdr, line...)
		if len(hdr) > room {
			return nil, protoErr("response header larger than the station's buffer (%d bytes)", room)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("CUPS connection closed before the response header ended (%d bytes)", len(hdr))
			}
			return nil, fmt.Errorf("CUPS read response header: %w", err)
		}
		if bytes.HasSuffix(hdr, []byte("\r\n\r\n")) {
			return hdr, nil
		}
	}
}

// statusCode is http_statusCode: "HTTP/1.x NNN", else -1.
func statusCode(hdr []byte) int {
	if len(hdr) < 10 || hdr[4] != '/' || hdr[5] != '1' || hdr[6] != '.' || hdr[8] != ' ' {
		return -1
	}
	n, ok := readDec(string(hdr[9:]))
	if !ok {
		return -1
	}
	return int(n)
}

// readDec is rt_readDec: decimal digits, or hex after "0x".
func readDec(s string) (int64, bool) {
	base, i := 10, 0
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		base, s = 16, s[2:]
	}
	var v int64
	for i < len(s) {
		d := strings.IndexByte("0123456789abcdef", lower(s[i]))
		if d < 0 || d >= base {
			break
		}
		if v > (1<<62)/int64(base) {
			return 0, false
		}
		v = v*int64(base) + int64(d)
		i++
	}
	return v, i > 0
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// headerValue is http_findHeader: a line starting with field (any case) and
// ':', value after spaces and tabs.
func headerValue(hdr []byte, field string) (string, bool) {
	for _, line := range strings.Split(string(hdr), "\n")[1:] {
		if len(line) > len(field) && strings.EqualFold(line[:len(field)], field) && line[len(field)] == ':' {
			return strings.TrimLeft(line[len(field)+1:], " \t"), true
		}
	}
	return "", false
}

func headerHas(hdr []byte, field string) bool {
	_, ok := headerValue(hdr, field)
	return ok
}

// contentLength is http_findContentLength: a missing or unreadable value
// means no body.
func contentLength(hdr []byte) (int64, bool) {
	v, ok := headerValue(hdr, "content-length")
	if !ok {
		return 0, false
	}
	return readDec(v)
}

// checkHostPortURI is uri_checkHostPortUri with scheme "http": http or https,
// host and port mandatory, no path.
func checkHostPortURI(uri string) (tlsOn bool, host, port string, err error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	switch {
	case !ok:
		return false, "", "", fmt.Errorf("bad CUPS URI %q: expecting http://.. or https://..", uri)
	case strings.EqualFold(scheme, "http"):
	case strings.EqualFold(scheme, "https"):
		tlsOn = true
	default:
		return false, "", "", fmt.Errorf("bad CUPS URI %q: expecting http://.. or https://..", uri)
	}
	if strings.ContainsAny(rest, "/") {
		return false, "", "", fmt.Errorf("bad CUPS URI %q: expecting http(s)://host:port (no path, port mandatory)", uri)
	}
	host, port, err = net.SplitHostPort(rest)
	if err != nil || host == "" || port == "" {
		return false, "", "", fmt.Errorf("bad CUPS URI %q: expecting http(s)://host:port (no path, port mandatory)", uri)
	}
	return tlsOn, host, port, nil
}

// ownSessions returns the station's view of its TLS session cache for
// sessions made with credential set c. A resumed TLS session carries the
// client certificate of the handshake that made it, so a session is
// resumed only by the station that made it and with the same credential:
// a real station has a cache of its own and starts afresh when its
// credentials change. Without this, stations sharing a Fleet's cache would
// resume each other's sessions and speak with another station's identity.
func (s *Station) ownSessions(c CredSet) tls.ClientSessionCache {
	if s.sessions == nil {
		return nil
	}
	return keyedSessions{cache: s.sessions, prefix: fmt.Sprintf("%016X/%08X/", s.EUI(), c.CRC())}
}

// keyedSessions is one station's part of a shared TLS session cache: its
// keys carry the station's EUI and credential CRC.
type keyedSessions struct {
	cache  tls.ClientSessionCache
	prefix string
}

func (k keyedSessions) Get(key string) (*tls.ClientSessionState, bool) {
	return k.cache.Get(k.prefix + key)
}

func (k keyedSessions) Put(key string, cs *tls.ClientSessionState) {
	k.cache.Put(k.prefix+key, cs)
}

// tlsConfig builds the TLS client of conn_setup_tls: trust from .trust,
// client certificate from .crt + .key, or a token in .key without .crt.
// The station's mbedTLS speaks TLS 1.2.
func (s *Station) tlsConfig(c CredSet, host string) (*tls.Config, []byte, error) {
	if len(c.Trust) == 0 {
		return nil, nil, errors.New("CUPS URI requires TLS but no trust configured")
	}
	roots, err := parseCerts(c.Trust)
	if err != nil {
		return nil, nil, fmt.Errorf("cups.trust rejected: %w", err)
	}
	pool := x509.NewCertPool()
	for _, cert := range roots {
		pool.AddCert(cert)
	}
	cfg := &tls.Config{
		ServerName: host, // TLS_SNI defaults to true
		// Go's check is replaced by mbedTLS's (tls.go): Go would accept
		// an iPAddress SAN that a real station ignores.
		InsecureSkipVerify: true, //nolint:gosec // verified by VerifyConnection
		VerifyConnection:   verifyConnection(pool, host),
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         tls.VersionTLS12,
		ClientSessionCache: s.ownSessions(c),
	}
	var token []byte
	switch {
	case len(c.Cert) == 0 && len(c.Key) > 0:
		if err := validateAuthToken(c.Key); err != nil {
			return nil, nil, fmt.Errorf("cups.key contains malformed auth token: %w", err)
		}
		token = c.Key
	case len(c.Cert) > 0 && len(c.Key) > 0:
		certs, err := parseCerts(c.Cert)
		if err != nil {
			return nil, nil, fmt.Errorf("cups.crt rejected: %w", err)
		}
		key, err := parseKey(c.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("cups.key rejected: %w", err)
		}
		tc := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
		for _, cert := range certs {
			tc.Certificate = append(tc.Certificate, cert.Raw)
		}
		cfg.Certificates = []tls.Certificate{tc}
	}
	return cfg, token, nil
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	if bytes.Contains(b, []byte("-----BEGIN")) {
		var certs []*x509.Certificate
		for {
			var block *pem.Block
			block, b = pem.Decode(b)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			certs = append(certs, c)
		}
		if len(certs) == 0 {
			return nil, errors.New("no CERTIFICATE PEM block")
		}
		return certs, nil
	}
	return x509.ParseCertificates(b)
}

func parseKey(b []byte) (any, error) {
	if block, _ := pem.Decode(b); block != nil {
		b = block.Bytes
	}
	if k, err := x509.ParsePKCS8PrivateKey(b); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(b); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS1PrivateKey(b)
	if err != nil {
		return nil, errors.New("neither a PKCS#8, SEC1 nor PKCS#1 private key")
	}
	return k, nil
}
