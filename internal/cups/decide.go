package cups

import (
	"encoding/base64"
	"fmt"
	"slices"
	"time"

	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// DefaultObservationRefresh is how old an observation's LastSeen may grow
// before a poll that changes nothing else refreshes it. Stations poll every
// 24 h after a success (DESIGN.md section 3), so an hour keeps LastSeen
// meaningful without one write per poll.
const DefaultObservationRefresh = time.Hour

// Input is everything Decide looks at for one request.
type Input struct {
	// Request is the parsed body.
	Request *Request
	// Twin is the station's twin (possibly from the short-lived cache). Its
	// Observation is what is known of the station. Decide never modifies it.
	Twin *twin.Twin
	// Authenticated is true when the caller proved it is Request.Router
	// (client certificate or token). Credentials go only to such callers.
	Authenticated bool
	// Now is the time of the request.
	Now time.Time
	// Refresh is the LastSeen refresh period; zero means
	// DefaultObservationRefresh.
	Refresh time.Duration
}

// Update is the firmware part of a decision.
type Update struct {
	// Package is the version being sent.
	Package string
	// URL is where the update blob lives.
	URL string
	// KeyCRC is the CRC32 of the verifying sig-N.key; meaningful only with a
	// Signature.
	KeyCRC uint32
	// Signature is the DER signature; nil for an unsigned update (sent only
	// to a station that has no keys).
	Signature []byte
}

// Outcome is what a decision did for the station's firmware.
type Outcome struct {
	// Served is the package an update was sent for, empty for none.
	Served string
	// Refusal is the reason an update was withheld (twin.RefusalKeyMismatch,
	// twin.RefusalModelMismatch, twin.RefusalNotApplied,
	// twin.RefusalNotOnUpgradePath), empty for none.
	Refusal string
	// RefusedPackage is the package Refusal applies to.
	RefusedPackage string
	// Rollout is the UID of the rollout that owns the station, empty for
	// none: served counts and refusals are recorded for that rollout only.
	Rollout string
	// Poll is what this poll adds to the station's Report (its health
	// after the update), nil when no bake time runs for it.
	Poll *ReportPoll
}

// servedFor is how many times the update to pkg was sent to the station
// while the rollout uid owned it.
func servedFor(obs *twin.Observation, pkg, uid string) int {
	if obs == nil || obs.ServedPackage != pkg || obs.ServedRollout != uid {
		return 0
	}
	return obs.UpdatesServed
}

// Decision is what to send for one request and what to record.
type Decision struct {
	// CupsURI is the cups.uri to send, empty for none.
	CupsURI string
	// TcURI is the tc.uri to send, empty for none.
	TcURI string
	// CupsCredURL is where the CUPS credential blob to send lives, empty
	// for none.
	CupsCredURL string
	// TcCredURL is where the LNS credential blob to send lives, empty for none.
	TcCredURL string
	// Update is the firmware to send, nil for none.
	Update *Update
	// Outcome is what was decided about firmware, for the observation.
	Outcome Outcome
	// Observation is the station's observation after this request.
	Observation twin.Observation
	// Record is true when Observation differs from the twin's and must be
	// written.
	Record bool
	// Notify is true when the station is owned by a rollout and
	// reported something new, so the controller should wake.
	Notify bool
}

// IsNoChange reports whether nothing is sent.
func (d *Decision) IsNoChange() bool {
	return d.CupsURI == "" && d.TcURI == "" && d.CupsCredURL == "" && d.TcCredURL == "" && d.Update == nil
}

// Decide is the pure decision of DESIGN.md section 4, steps 3 to 6, for an
// authenticated (or, in insecure mode, unauthenticated) request whose twin
// was read. It returns an error only when the twin's firmware fields are
// inconsistent (a signature that is not base64 or has an impossible length,
// a signature without key checksum or the reverse): serving such an update
// would only make the station refuse it.
func Decide(in Input) (Decision, error) {
	req, c := in.Request, in.Twin.CUPS
	var d Decision

	// 3. URIs, where they differ.
	if c.CupsURI != "" && c.CupsURI != req.CupsURI {
		d.CupsURI = c.CupsURI
	}
	if c.TcURI != "" && c.TcURI != req.TcURI {
		d.TcURI = c.TcURI
	}

	// 4. Credentials, where the CRC differs and a blob is configured, and
	// only to a caller that proved who it is.
	if in.Authenticated {
		if c.CupsCredCRC != nil && *c.CupsCredCRC != req.CupsCredCRC && c.CupsCredentialURL != "" {
			d.CupsCredURL = c.CupsCredentialURL
		}
		if c.TcCredCRC != nil && *c.TcCredCRC != req.TcCredCRC && c.TcCredentialURL != "" {
			d.TcCredURL = c.TcCredentialURL
		}
	}

	// 5. Firmware, when the package differs.
	if c.Package != "" && c.URL != "" && c.Package != req.Package {
		up, err := firmwareUpdate(c.Firmware)
		if err != nil {
			return Decision{}, fmt.Errorf("twin %s: %w", in.Twin.DeviceID, err)
		}
		own := in.Twin.Ownership
		rollout := ""
		if own != nil {
			rollout = own.UID
		}
		switch {
		case own != nil && own.Failed != "":
			// The rollout counted the station Failed: its outcome is final
			// and the update is not sent again while the rollout owns the
			// station (DESIGN.md section 5). Nothing new to record.
		case rollingBack(in.Twin, req, in.Now):
			// It reported the rollout's package, then its previous one:
			// the firmware fell back. Sending it again would loop.
			d.Outcome = Outcome{Refusal: twin.RefusalRolledBack, RefusedPackage: c.Package, Rollout: rollout}
		case own != nil && rules.AttemptsUsedUp(servedFor(in.Twin.Observation, c.Package, rollout), own.MaxUpdateAttempts):
			// maxUpdateAttempts is the number of sends: the station was
			// sent the update that often and asks again on another package.
			d.Outcome = Outcome{Refusal: twin.RefusalNotApplied, RefusedPackage: c.Package, Rollout: rollout}
		case own != nil && offUpgradePath(in.Twin, req, rollout):
			// firmware.upgradeFrom: the firmware may only be installed over
			// the packages it names. Not an error status: the station gets
			// the no-change answer, and the rollout skips it.
			d.Outcome = Outcome{Refusal: twin.RefusalNotOnUpgradePath, RefusedPackage: c.Package, Rollout: rollout}
		case own != nil && own.Model != "" && own.Model != req.Model:
			d.Outcome = Outcome{Refusal: twin.RefusalModelMismatch, RefusedPackage: c.Package, Rollout: rollout}
		case up.Signature == nil && len(req.Keys) > 0,
			up.Signature != nil && !slices.Contains(req.Keys, up.KeyCRC):
			// A station with keys refuses an unsigned update, and one
			// without the signing key cannot verify the signature.
			d.Outcome = Outcome{Refusal: twin.RefusalKeyMismatch, RefusedPackage: c.Package, Rollout: rollout}
		default:
			d.Update = up
			d.Outcome = Outcome{Served: c.Package, Rollout: rollout}
		}
	}

	// 6. The observation. Any answer but "nothing to change" restarts the
	// station's sequence of polls: it sends something, and it is also the
	// only answer the server can know failed (a blob store outage).
	if d.Outcome.Poll = reportPoll(in.Twin, req, in.Now); d.Outcome.Poll != nil {
		d.Outcome.Poll.Restart = !d.IsNoChange()
	}
	var changed bool
	d.Observation, d.Record, changed = Observe(in.Twin.Observation, req, d.Outcome, in.Now, in.Refresh)
	d.Notify = changed && in.Twin.Ownership != nil
	return d, nil
}

// offUpgradePath reports whether the rollout uid that owns the station of t
// names the packages its firmware may be installed over and the station
// reports another one. It decides the first send only: a station the
// rollout already sent the update to was on the path then, and what it
// reports afterwards is the update's outcome (NotApplied after the
// attempts), not a reason to skip it.
func offUpgradePath(t *twin.Twin, req *Request, uid string) bool {
	if rules.OnUpgradePath(req.Package, t.Ownership.UpgradeFrom) {
		return false
	}
	return servedFor(t.Observation, t.CUPS.Package, uid) == 0
}

// firmwareUpdate checks and decodes the twin's firmware fields.
func firmwareUpdate(fw twin.Firmware) (*Update, error) {
	up := &Update{Package: fw.Package, URL: fw.URL}
	switch {
	case fw.Signature == "" && fw.KeyChecksum == nil:
		return up, nil // unsigned: only stations without keys run it
	case fw.Signature == "":
		return nil, fmt.Errorf("desired cups has fwKeyChecksum but no fwSignature")
	case fw.KeyChecksum == nil:
		return nil, fmt.Errorf("desired cups has fwSignature but no fwKeyChecksum")
	}
	sig, err := base64.StdEncoding.DecodeString(fw.Signature)
	if err != nil {
		return nil, fmt.Errorf("desired cups fwSignature is not base64: %w", err)
	}
	if len(sig) < MinSignatureLen || len(sig) > MaxSignatureLen {
		return nil, fmt.Errorf("desired cups fwSignature is %d bytes, a DER P-256 signature has %d to %d", len(sig), MinSignatureLen, MaxSignatureLen)
	}
	up.Signature = sig
	up.KeyCRC = *fw.KeyChecksum
	return up, nil
}

// Observe returns the observation after a request: prev (nil when the
// station was never seen) updated with what the request reported and what
// was decided. record says whether the result must be written: true when
// anything but LastSeen changed, or LastSeen is older than refresh (zero
// means DefaultObservationRefresh). changed says whether anything but
// LastSeen changed. Applied to a fresher prev (another replica's write), it
// gives the right counts again, so it is also the mutation of the durable
// write.
func Observe(prev *twin.Observation, req *Request, out Outcome, now time.Time, refresh time.Duration) (obs twin.Observation, record, changed bool) {
	if refresh <= 0 {
		refresh = DefaultObservationRefresh
	}
	// obs shares its slices and pointers with prev and req: observations
	// and requests are never modified once made (cached twins are shared
	// between polls), and a poll that changes nothing allocates nothing here.
	if prev != nil {
		obs = *prev
	}
	// A request older than the one recorded (two writes of one station
	// that ran concurrently, the older retried after the newer) still
	// counts its outcome, but does not take back what the newer reported.
	if prev == nil || !now.Before(prev.LastSeen) {
		obs.Station, obs.Model, obs.Package = req.Station, req.Model, req.Package
		obs.Keys = req.Keys
		if obs.CupsCredCRC == nil || *obs.CupsCredCRC != req.CupsCredCRC {
			credCRC := req.CupsCredCRC
			obs.CupsCredCRC = &credCRC
		}
	}
	if obs.Keys == nil {
		obs.Keys = []uint32{}
	}
	if out.Served != "" {
		if obs.ServedPackage != out.Served || obs.ServedRollout != out.Rollout {
			obs.ServedPackage, obs.ServedRollout, obs.UpdatesServed = out.Served, out.Rollout, 0
		}
		obs.UpdatesServed++
		at := now.UTC()
		obs.ServedAt = &at
		if obs.RefusedPackage == out.Served {
			obs.Refusal, obs.RefusedPackage, obs.RefusedRollout = "", "", ""
		}
	}
	if out.Refusal != "" {
		obs.Refusal, obs.RefusedPackage, obs.RefusedRollout = out.Refusal, out.RefusedPackage, out.Rollout
	}
	obs.Report = nextReport(obs.Report, out.Poll)
	changed = prev == nil || !sameObservation(*prev, obs)
	stale := prev == nil || now.Sub(prev.LastSeen) >= refresh
	if changed || stale {
		if prev == nil || now.After(prev.LastSeen) {
			obs.LastSeen = now.UTC()
		}
		return obs, true, changed
	}
	return obs, false, false
}

// sameObservation compares every field but LastSeen.
func sameObservation(a, b twin.Observation) bool {
	return a.Station == b.Station && a.Model == b.Model && a.Package == b.Package &&
		slices.Equal(a.Keys, b.Keys) && a.ServedPackage == b.ServedPackage &&
		a.ServedRollout == b.ServedRollout && a.UpdatesServed == b.UpdatesServed && sameTime(a.ServedAt, b.ServedAt) && a.Refusal == b.Refusal &&
		a.RefusedPackage == b.RefusedPackage && a.RefusedRollout == b.RefusedRollout &&
		(a.CupsCredCRC == nil) == (b.CupsCredCRC == nil) && (a.CupsCredCRC == nil || *a.CupsCredCRC == *b.CupsCredCRC) &&
		a.Report.Equal(b.Report)
}

// sameTime compares two optional times.
func sameTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}
