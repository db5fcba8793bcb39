// Package twin is stationfleet's model of an Azure IoT Hub device twin: the
// parts the rollout controller and the CUPS server read and write.
//
// The desired CUPS properties use the schema of the Azure LoRaWAN starter kit
// (properties.desired.cups), so either CUPS server can serve a twin the other
// wrote. stationfleet's own bookkeeping lives in service-side tags under
// tags.stationfleet, which stations never see:
//
//	tags.stationfleet.rollout   Ownership: which rollout owns the station, its
//	                            batch, and the four firmware fields it had before
//	tags.stationfleet.observed  Observation: what the CUPS server last saw
//	tags.stationfleet.credentials  CredentialRecords: the CUPS credentials the
//	                            station commands issued, with their roles
//	tags.stationfleet.history   History: the final outcomes earlier rollouts
//	                            counted for the station (newest first, bounded)
//
// The package holds types and pure helpers only; the IoT Hub adapter
// (internal/iothub) moves them over the wire.
package twin

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// Tag and property names. They are part of the stored contract: renaming one
// orphans every twin already written.
const (
	// TagRoot is the tag under which stationfleet keeps its bookkeeping.
	TagRoot = "stationfleet"
	// TagRollout is the key, under TagRoot, of the Ownership record.
	TagRollout = "rollout"
	// TagObserved is the key, under TagRoot, of the Observation record.
	TagObserved = "observed"
	// TagHistory is the key, under TagRoot, of the station's History.
	TagHistory = "history"
	// DesiredCUPS is the desired property holding the starter kit's CUPS settings.
	DesiredCUPS = "cups"
	// DesiredClientThumbprint is the desired property listing the client
	// certificate thumbprints allowed to speak for the station.
	DesiredClientThumbprint = "clientThumbprint"
	// TagTokens is the key, under TagRoot, of the list of hex SHA-256 hashes
	// of the bearer tokens allowed to speak for the station (a list, so that
	// rotations overlap). Tags are service-side: stations never read them.
	TagTokens = "tokens"
	// TagCredentials is the key, under TagRoot, of the station's credential
	// records (CredentialRecord), written by the CLI's station commands.
	TagCredentials = "credentials"
)

// Twin is what stationfleet knows of one station's device twin.
type Twin struct {
	// DeviceID is the station EUI as 16 upper-case hex digits.
	DeviceID string
	// ETag is the twin's ETag as IoT Hub returned it (unquoted); empty when
	// unknown. Conditional writes need it.
	ETag string
	// Tags holds every tag of the twin, the user's (region, ring, ...) and
	// stationfleet's, as decoded JSON.
	Tags map[string]any
	// CUPS is properties.desired.cups.
	CUPS CUPS
	// ClientThumbprints is properties.desired.clientThumbprint.
	ClientThumbprints []string
	// TokenSHA256 is tags.stationfleet.tokens: hex SHA-256 of each bearer
	// token allowed to speak for the station.
	TokenSHA256 []string
	// Ownership is tags.stationfleet.rollout, nil when no rollout owns the station.
	Ownership *Ownership
	// Observation is tags.stationfleet.observed, nil when CUPS never saw the station.
	Observation *Observation
	// Credentials is tags.stationfleet.credentials: the CUPS credentials the
	// station commands issued and that are still valid, with their roles.
	Credentials []CredentialRecord
	// History is tags.stationfleet.history: what earlier rollouts counted
	// for the station, newest first.
	History []HistoryEntry
}

// Firmware is the four desired fields a rollout writes and abort restores.
type Firmware struct {
	// Package is the version the station should run (its version.txt).
	Package string `json:"package,omitempty"`
	// URL is where the firmware blob lives (azblob://, https://, file://).
	URL string `json:"fwUrl,omitempty"`
	// Signature is base64 of the DER ECDSA P-256 signature over SHA-512 of the blob.
	Signature string `json:"fwSignature,omitempty"`
	// KeyChecksum is the CRC32 of the sig-N.key that verifies Signature.
	KeyChecksum *uint32 `json:"fwKeyChecksum,omitempty"`
}

// IsZero reports whether no firmware field is set.
func (f Firmware) IsZero() bool {
	return f.Package == "" && f.URL == "" && f.Signature == "" && f.KeyChecksum == nil
}

// Equal reports whether f and o hold the same four values.
func (f Firmware) Equal(o Firmware) bool {
	if f.Package != o.Package || f.URL != o.URL || f.Signature != o.Signature {
		return false
	}
	if (f.KeyChecksum == nil) != (o.KeyChecksum == nil) {
		return false
	}
	return f.KeyChecksum == nil || *f.KeyChecksum == *o.KeyChecksum
}

// CUPS is properties.desired.cups as the starter kit defines it.
type CUPS struct {
	CupsURI           string  `json:"cupsUri,omitempty"`
	TcURI             string  `json:"tcUri,omitempty"`
	CupsCredCRC       *uint32 `json:"cupsCredCrc,omitempty"`
	TcCredCRC         *uint32 `json:"tcCredCrc,omitempty"`
	CupsCredentialURL string  `json:"cupsCredentialUrl,omitempty"`
	TcCredentialURL   string  `json:"tcCredentialUrl,omitempty"`
	Firmware
}

// Ownership records which rollout owns a station (tags.stationfleet.rollout).
// It is written in the same patch as the firmware fields.
type Ownership struct {
	// Rollout is the owning FirmwareRollout as "namespace/name".
	Rollout string `json:"name"`
	// UID is the owning FirmwareRollout's metadata.uid.
	UID string `json:"uid"`
	// Batch is the 1-based number of the rollout step whose batch wrote the
	// station.
	Batch int `json:"batch"`
	// Model, when set, is the only station model that may receive the update.
	Model string `json:"model,omitempty"`
	// MaxUpdateAttempts, when set, is the rollout's maxUpdateAttempts: once
	// the CUPS server has sent the update more often than that and the
	// station still asks (it is Failed NotApplied), it is not sent again.
	MaxUpdateAttempts int `json:"maxUpdateAttempts,omitempty"`
	// UpgradeFrom, when set, is the rollout's firmware.upgradeFrom: the
	// CUPS server sends the update only to a station reporting one of
	// these packages, and records RefusalNotOnUpgradePath for any other.
	UpgradeFrom []string `json:"upgradeFrom,omitempty"`
	// BakeSeconds, when set, is the rollout's strategy.bakeTime in
	// seconds: for that long after the station first reports the package,
	// the CUPS server keeps its Report (Observation.Report) and does not
	// send the update again to a station that fell back to Previous.
	BakeSeconds int `json:"bakeSeconds,omitempty"`
	// Failed, when set, is the reason (KeyMismatch, ModelMismatch,
	// NotApplied, TimedOut, Unhealthy, RolledBack) for which the rollout counted the station
	// Failed. The outcome is final: the CUPS server does not send the
	// update to the station again while this record exists.
	Failed string `json:"failed,omitempty"`
	// Previous holds the four firmware fields before this rollout wrote them,
	// so that abort can restore them.
	Previous Firmware `json:"previous"`
	// WrittenAt is when the rollout wrote the station's twin.
	WrittenAt time.Time `json:"writtenAt"`
}

// Refusal reasons the CUPS server records when it withholds an update.
const (
	RefusalKeyMismatch   = "KeyMismatch"
	RefusalModelMismatch = "ModelMismatch"
	// RefusalNotApplied: the station asked again, still on another
	// package, after it was sent the update the owning rollout's
	// maxUpdateAttempts times.
	RefusalNotApplied = "NotApplied"
	// RefusalNotOnUpgradePath: the owning rollout names the packages it may
	// be installed over (Ownership.UpgradeFrom) and the station reports
	// another one. Not a failure: the rollout skips the station.
	RefusalNotOnUpgradePath = "NotOnUpgradePath"
	// RefusalRolledBack: within the owning rollout's bake time, the station
	// reported the package, then its previous package (Ownership.Previous)
	// again: its firmware fell back to the old image, and it is not sent
	// the update again.
	RefusalRolledBack = "RolledBack"
)

// MaxReportPolls bounds Report.Polls: two equal gaps need three polls, and
// a few more show the spacing to a person.
const MaxReportPolls = 6

// Report is the CUPS server's record, scoped to one rollout with a bake
// time, of a station after it first reported that rollout's package
// (Observation.Report). The rollout's rule (internal/rules) reads the
// station's health after the update from it.
type Report struct {
	// Rollout is the UID of the rollout that owned the station.
	Rollout string `json:"rollout"`
	// Package is the rollout's package, as the station reported it.
	Package string `json:"package"`
	// At is when the station first reported Package.
	At time.Time `json:"at"`
	// Polls are the times of the current sequence of polls that reported
	// Package, oldest first, at most MaxReportPolls (the latest): the first
	// sequence starts with the report at At. A sequence restarts (with the
	// next poll) after an answer that sent the station anything (URIs,
	// credentials, firmware) or that the server knows failed: that poll is
	// the station's reaction to the answer, not to its network server.
	Polls []time.Time `json:"polls,omitempty"`
	// Restarts is how many times the sequence restarted.
	Restarts int `json:"restarts,omitempty"`
	// RestartNext is true when the last answer sent the station something
	// or failed: its next poll starts a new sequence.
	RestartNext bool `json:"restartNext,omitempty"`
	// Back is another package the station reported after Package, empty
	// when none; BackAt is when it first did.
	Back   string     `json:"back,omitempty"`
	BackAt *time.Time `json:"backAt,omitempty"`
}

// Equal reports whether r and o hold the same values.
func (r *Report) Equal(o *Report) bool {
	if r == nil || o == nil {
		return r == o
	}
	if r.Rollout != o.Rollout || r.Package != o.Package || !r.At.Equal(o.At) || r.Restarts != o.Restarts || r.RestartNext != o.RestartNext ||
		r.Back != o.Back || len(r.Polls) != len(o.Polls) || (r.BackAt == nil) != (o.BackAt == nil) {
		return false
	}
	if r.BackAt != nil && !r.BackAt.Equal(*o.BackAt) {
		return false
	}
	for i := range r.Polls {
		if !r.Polls[i].Equal(o.Polls[i]) {
			return false
		}
	}
	return true
}

// Clone returns a deep copy of r (nil for nil).
func (r *Report) Clone() *Report {
	if r == nil {
		return nil
	}
	c := *r
	c.Polls = append([]time.Time(nil), r.Polls...)
	if r.BackAt != nil {
		t := *r.BackAt
		c.BackAt = &t
	}
	return &c
}

// Observation is what the CUPS server last saw of a station
// (tags.stationfleet.observed). It is written only when something in it
// changed, never on every poll.
type Observation struct {
	// LastSeen is when the station last polled (refreshed only when another
	// field changes or it is older than the server's refresh period).
	LastSeen time.Time `json:"lastSeen"`
	// Station is the station's version string ("2.0.6(linux/std) ...").
	Station string `json:"station,omitempty"`
	// Model is the station's platform ("linux").
	Model string `json:"model,omitempty"`
	// Package is the package the station reported running.
	Package string `json:"package,omitempty"`
	// Keys are the CRC32s of the station's sig-N.key files.
	Keys []uint32 `json:"keys"`
	// ServedPackage is the package UpdatesServed counts updates of.
	ServedPackage string `json:"servedPackage,omitempty"`
	// ServedRollout is the UID of the rollout that owned the station when
	// the updates UpdatesServed counts were sent, empty when none did. A
	// count belongs to one rollout: the next rollout starts from zero.
	ServedRollout string `json:"servedRollout,omitempty"`
	// UpdatesServed is how many times an update to ServedPackage was sent.
	UpdatesServed int `json:"updatesServed,omitempty"`
	// ServedAt is when the update to ServedPackage was last sent (the
	// whole answer went out); nil in records written before the field
	// existed. The rollout's progress deadline runs from it.
	ServedAt *time.Time `json:"servedAt,omitempty"`
	// Refusal is the reason the last update to RefusedPackage was withheld
	// (RefusalKeyMismatch, RefusalModelMismatch, RefusalNotApplied,
	// RefusalNotOnUpgradePath), empty when none.
	Refusal string `json:"refusal,omitempty"`
	// RefusedPackage is the package Refusal applies to.
	RefusedPackage string `json:"refusedPackage,omitempty"`
	// RefusedRollout is the UID of the rollout that owned the station when
	// the update was withheld, empty when none did. A refusal is about that
	// rollout only (an aborted rollout's KeyMismatch is not the next one's).
	RefusedRollout string `json:"refusedRollout,omitempty"`
	// CupsCredCRC is the cupsCredCrc the station reported: the CRC32 of its
	// regular CUPS credential set (the station reports the regular set's
	// CRC even when it connected with its backup). Nil in records written
	// before the field existed.
	CupsCredCRC *uint32 `json:"cupsCredCrc,omitempty"`
	// Report is the record of the station's health after it reported the
	// owning rollout's package, kept while the rollout's bake time runs;
	// nil when none.
	Report *Report `json:"report,omitempty"`
}

// ForgetRollout forgets everything the observation holds about the rollout
// uid: the updates served while it owned the station, the refusal
// recorded for it, and the health report of its bake time. It reports whether anything was forgotten. Retrying a
// rollout's failed station calls it so that the station's attempts are
// counted afresh; every rollout-scoped record of the observation must be
// forgotten here, and nowhere else.
func (o *Observation) ForgetRollout(uid string) bool {
	if o == nil || uid == "" {
		return false
	}
	forgot := false
	if o.ServedRollout == uid {
		o.ServedPackage, o.ServedRollout, o.UpdatesServed, o.ServedAt = "", "", 0, nil
		forgot = true
	}
	if o.RefusedRollout == uid {
		o.Refusal, o.RefusedPackage, o.RefusedRollout = "", "", ""
		forgot = true
	}
	if o.Report != nil && o.Report.Rollout == uid {
		// A retried station bakes afresh from its next report.
		o.Report = nil
		forgot = true
	}
	return forgot
}

// Credential roles: what a station does with a credential it holds (its
// regular, backup and boot sets, DESIGN.md section 3), or will hold.
const (
	// RoleRegular: the station's regular set (cups.*) holds it.
	RoleRegular = "regular"
	// RolePending: sent through CUPS credential rotation (cupsCredCrc,
	// cupsCredentialUrl); the station has not yet reported its CRC.
	RolePending = "pending"
	// RoleBackup: the station's backup set (cups-bak.*) holds it. A station
	// copies its regular set to the backup once in its life, so this stays
	// the first credential it used unless the operator re-seeds the backup.
	RoleBackup = "backup"
	// RoleBoot: the station's boot set (cups-boot.*) holds it.
	RoleBoot = "boot"
)

// Credential kinds.
const (
	// KindX509 is a client certificate, allowed by its SHA-1 thumbprint in
	// desired.clientThumbprint.
	KindX509 = "x509"
	// KindToken is a bearer token, allowed by its SHA-256 in
	// tags.stationfleet.tokens.
	KindToken = "token"
)

// CredentialRecord is one CUPS credential a station holds or is being sent
// (tags.stationfleet.credentials). It never holds a secret: a certificate's
// thumbprint, a token's SHA-256.
type CredentialRecord struct {
	// ID numbers the station's credentials from 1, in the order issued.
	ID int `json:"id"`
	// Kind is KindX509 or KindToken.
	Kind string `json:"kind"`
	// Thumbprint is the upper-case hex SHA-1 of the DER client certificate
	// (KindX509).
	Thumbprint string `json:"thumbprint,omitempty"`
	// TokenSHA256 is the hex SHA-256 of the bearer token (KindToken).
	TokenSHA256 string `json:"tokenSha256,omitempty"`
	// CRC is the station's credential CRC of the set (trust, cert, key):
	// what the station reports as cupsCredCrc while it holds it as regular.
	CRC uint32 `json:"crc"`
	// Roles are what the station does with it (RoleRegular, RolePending,
	// RoleBackup, RoleBoot); a credential with no role left is retired.
	Roles []string `json:"roles"`
	// IssuedAt is when it was issued.
	IssuedAt time.Time `json:"issuedAt"`
	// NotAfter is when a certificate expires; nil for a token.
	NotAfter *time.Time `json:"notAfter,omitempty"`
	// URL is the credential blob sent through CUPS rotation, empty for the
	// credential written at enrolment.
	URL string `json:"url,omitempty"`
}

// HasRole reports whether the record has role r.
func (c CredentialRecord) HasRole(r string) bool {
	for _, x := range c.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// CredentialsPatch returns the patch that replaces the credential records,
// the thumbprint allow-list (desired.clientThumbprint) and the token
// allow-list (tags.stationfleet.tokens) in one write. Empty lists delete
// the keys. cups, when non-nil, is merged into desired.cups (nil values
// delete keys).
func CredentialsPatch(recs []CredentialRecord, thumbprints, tokens []string, cups map[string]any) *Patch {
	var recVal, tokVal, tpVal any
	if len(recs) > 0 {
		l := make([]any, len(recs))
		for i, r := range recs {
			l[i] = toJSONMap(r)
		}
		recVal = l
	}
	if len(tokens) > 0 {
		l := make([]any, len(tokens))
		for i, t := range tokens {
			l[i] = t
		}
		tokVal = l
	}
	if len(thumbprints) > 0 {
		l := make([]any, len(thumbprints))
		for i, t := range thumbprints {
			l[i] = t
		}
		tpVal = l
	}
	p := &Patch{
		Tags:    map[string]any{TagRoot: map[string]any{TagCredentials: recVal, TagTokens: tokVal}},
		Desired: map[string]any{DesiredClientThumbprint: tpVal},
	}
	if cups != nil {
		p.Desired[DesiredCUPS] = cups
	}
	return p
}

// MaxHistory bounds a station's History: a twin is at most 8 KiB of tags in
// IoT Hub, and the latest few rollouts are what a person asks about.
const MaxHistory = 5

// HistoryEntry is what one earlier rollout counted for a station, written
// by the controller when the rollout let the station go: in the patch of a
// later rollout that took it over, or in abort's restore.
type HistoryEntry struct {
	// Rollout is the rollout as "namespace/name".
	Rollout string `json:"name"`
	// UID is the rollout's metadata.uid.
	UID string `json:"uid"`
	// Batch is the step number whose batch wrote the station.
	Batch int `json:"batch"`
	// Outcome is what the rollout counted: Updated, Failed, or InProgress
	// (it had no outcome yet, e.g. when the rollout was aborted).
	Outcome string `json:"outcome"`
	// Reason is the failure reason when Outcome is Failed.
	Reason string `json:"reason,omitempty"`
	// UpdatesServed is how many times CUPS sent the station this rollout's
	// update.
	UpdatesServed int `json:"updatesServed,omitempty"`
	// Restored is true when the station's previous firmware fields were put
	// back as the rollout let it go.
	Restored bool `json:"restored,omitempty"`
	// At is when the rollout let the station go.
	At time.Time `json:"at"`
}

// Find returns the entry of the rollout uid in h, nil when none.
func Find(h []HistoryEntry, uid string) *HistoryEntry {
	for i := range h {
		if h[i].UID == uid {
			return &h[i]
		}
	}
	return nil
}

// WithHistory returns h with e first (replacing an older entry of the same
// rollout), at most MaxHistory entries.
func WithHistory(h []HistoryEntry, e HistoryEntry) []HistoryEntry {
	out := make([]HistoryEntry, 0, min(len(h)+1, MaxHistory))
	out = append(out, e)
	for _, o := range h {
		if len(out) == MaxHistory {
			break
		}
		if o.UID != e.UID {
			out = append(out, o)
		}
	}
	return out
}

// Patch is a JSON merge patch (RFC 7386) to a twin's tags and desired
// properties. A nil value deletes the key.
type Patch struct {
	Tags    map[string]any `json:"tags,omitempty"`
	Desired map[string]any `json:"desired,omitempty"`
}

// IsEmpty reports whether the patch changes nothing.
func (p *Patch) IsEmpty() bool { return p == nil || (len(p.Tags) == 0 && len(p.Desired) == 0) }

// FirmwarePatch returns the patch that sets the four firmware fields to fw
// and, in the same write, the ownership record own (nil deletes it). Fields of
// fw that are empty are deleted from the twin, so that restoring "nothing"
// really clears them.
func FirmwarePatch(fw Firmware, own *Ownership) *Patch {
	cups := map[string]any{
		"package":       nilIfEmpty(fw.Package),
		"fwUrl":         nilIfEmpty(fw.URL),
		"fwSignature":   nilIfEmpty(fw.Signature),
		"fwKeyChecksum": nil,
	}
	if fw.KeyChecksum != nil {
		cups["fwKeyChecksum"] = *fw.KeyChecksum
	}
	var ownVal any
	if own != nil {
		ownVal = toJSONMap(own)
	}
	return &Patch{
		Tags:    map[string]any{TagRoot: map[string]any{TagRollout: ownVal}},
		Desired: map[string]any{DesiredCUPS: cups},
	}
}

// OwnershipPatch returns the patch that sets (or, for nil, deletes) only the
// ownership record.
func OwnershipPatch(own *Ownership) *Patch {
	var ownVal any
	if own != nil {
		ownVal = toJSONMap(own)
	}
	return &Patch{Tags: map[string]any{TagRoot: map[string]any{TagRollout: ownVal}}}
}

// FailedPatch returns the patch that records, in the ownership record, the
// reason for which the owning rollout counted the station Failed (only that
// key: the rest of the record stays as written).
func FailedPatch(reason string) *Patch {
	return &Patch{Tags: map[string]any{TagRoot: map[string]any{TagRollout: map[string]any{"failed": reason}}}}
}

// RetryPatch returns the patch that sends a Failed station its owning
// rollout's update again: the ownership record becomes own (its Failed
// cleared and a new WrittenAt, by the caller) and the observation record
// becomes obs (the observation after ForgetRollout, written as
// ObservationPatch writes it; nil leaves it alone). wasOwn is the
// ownership record as read: a merge patch keeps every key it does not
// name, so the keys it holds and own lacks are deleted explicitly.
func RetryPatch(wasOwn *Ownership, own Ownership, obs *Observation) *Patch {
	root := map[string]any{TagRollout: replacing(toJSONMapOrNil(wasOwn), toJSONMap(own))}
	if obs != nil {
		root[TagObserved] = ObservationPatch(*obs).Tags[TagRoot].(map[string]any)[TagObserved]
	}
	return &Patch{Tags: map[string]any{TagRoot: root}}
}

// replacing is the merge patch that turns the JSON object was into next:
// next, with a null for every key of was that next lacks (recursively in
// nested objects).
func replacing(was, next map[string]any) map[string]any {
	out := make(map[string]any, len(next))
	for k, v := range next {
		if wv, ok := was[k].(map[string]any); ok {
			if nv, ok := v.(map[string]any); ok {
				out[k] = replacing(wv, nv)
				continue
			}
		}
		out[k] = v
	}
	for k := range was {
		if _, ok := next[k]; !ok {
			out[k] = nil
		}
	}
	return out
}

// toJSONMapOrNil is toJSONMap of *v, or nil for a nil v.
func toJSONMapOrNil[T any](v *T) map[string]any {
	if v == nil {
		return nil
	}
	return toJSONMap(*v)
}

// SetHistory makes the patch also replace the station's history with h.
func (p *Patch) SetHistory(h []HistoryEntry) *Patch {
	if p.Tags == nil {
		p.Tags = map[string]any{}
	}
	root, _ := p.Tags[TagRoot].(map[string]any)
	if root == nil {
		root = map[string]any{}
		p.Tags[TagRoot] = root
	}
	list := make([]any, len(h))
	for i := range h {
		list[i] = toJSONMap(h[i])
	}
	root[TagHistory] = list
	return p
}

// ObservationPatch returns the patch that replaces the observation record.
// A merge patch leaves alone a key it does not name, so every optional key
// the record does not hold (a cleared refusal, a report the bake time
// ended, a report's emptied polls) is sent as null, which deletes it.
func ObservationPatch(obs Observation) *Patch {
	m := toJSONMap(obs)
	nullAbsent(m, observationKeys())
	if r, ok := m["report"].(map[string]any); ok {
		nullAbsent(r, reportKeys())
	}
	return &Patch{Tags: map[string]any{TagRoot: map[string]any{TagObserved: m}}}
}

// The optional (omitempty) JSON keys of the observation and report
// records, read from their struct tags so that a field added later is
// deleted like the others when cleared.
var (
	observationKeys = sync.OnceValue(func() []string { return optionalKeys(reflect.TypeFor[Observation]()) })
	reportKeys      = sync.OnceValue(func() []string { return optionalKeys(reflect.TypeFor[Report]()) })
)

// optionalKeys lists the JSON names of the omitempty fields of struct t.
func optionalKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" && slices.Contains(strings.Split(opts, ","), "omitempty") {
			keys = append(keys, name)
		}
	}
	return keys
}

// nullAbsent sets each of keys that m does not hold to nil.
func nullAbsent(m map[string]any, keys []string) {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			m[k] = nil
		}
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// toJSONMap turns a struct into its JSON object form, so that a merge patch
// replaces nested records key by key exactly as they were serialised.
func toJSONMap(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("twin: marshal %T: %v", v, err)) // only plain structs reach here
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(fmt.Sprintf("twin: unmarshal %T: %v", v, err))
	}
	return m
}

// Decode fills the typed fields of a Twin from the raw JSON of its tags and
// desired properties, as IoT Hub returns them. Unknown keys are kept in Tags;
// a malformed stationfleet record is reported as an error rather than
// silently dropped.
func Decode(deviceID, etag string, tags, desired map[string]any) (*Twin, error) {
	t := &Twin{DeviceID: deviceID, ETag: etag, Tags: tags}
	if c, ok := desired[DesiredCUPS]; ok && c != nil {
		if err := remarshal(c, &t.CUPS); err != nil {
			return nil, fmt.Errorf("twin %s: desired.cups: %w", deviceID, err)
		}
	}
	if tp, ok := desired[DesiredClientThumbprint]; ok && tp != nil {
		switch v := tp.(type) {
		case string: // the starter kit's older single-value form
			t.ClientThumbprints = []string{v}
		default:
			if err := remarshal(v, &t.ClientThumbprints); err != nil {
				return nil, fmt.Errorf("twin %s: desired.clientThumbprint: %w", deviceID, err)
			}
		}
	}
	if root, ok := tags[TagRoot].(map[string]any); ok {
		if o, ok := root[TagRollout]; ok && o != nil {
			t.Ownership = &Ownership{}
			if err := remarshal(o, t.Ownership); err != nil {
				return nil, fmt.Errorf("twin %s: tags.%s.%s: %w", deviceID, TagRoot, TagRollout, err)
			}
		}
		if o, ok := root[TagTokens]; ok && o != nil {
			if err := remarshal(o, &t.TokenSHA256); err != nil {
				return nil, fmt.Errorf("twin %s: tags.%s.%s: %w", deviceID, TagRoot, TagTokens, err)
			}
		}
		if o, ok := root[TagCredentials]; ok && o != nil {
			if err := remarshal(o, &t.Credentials); err != nil {
				return nil, fmt.Errorf("twin %s: tags.%s.%s: %w", deviceID, TagRoot, TagCredentials, err)
			}
		}
		if o, ok := root[TagHistory]; ok && o != nil {
			if err := remarshal(o, &t.History); err != nil {
				return nil, fmt.Errorf("twin %s: tags.%s.%s: %w", deviceID, TagRoot, TagHistory, err)
			}
		}
		if o, ok := root[TagObserved]; ok && o != nil {
			t.Observation = &Observation{}
			if err := remarshal(o, t.Observation); err != nil {
				return nil, fmt.Errorf("twin %s: tags.%s.%s: %w", deviceID, TagRoot, TagObserved, err)
			}
		}
	}
	return t, nil
}

func remarshal(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// Selector chooses stations by structured criteria; adapters turn it into a
// safely quoted IoT Hub query. It never carries a raw query string.
type Selector struct {
	// DeviceIDs, when non-empty, limits the selection to these stations.
	DeviceIDs []string
	// Tags requires each tags.<key> to equal the value.
	Tags map[string]string
	// OwnerUID, when set, limits the selection to stations whose ownership
	// record names this rollout UID.
	OwnerUID string
	// NotOwnerUID, when set, leaves out the stations whose ownership record
	// names this rollout UID (a streamed batch's later passes read only
	// the stations not written yet).
	NotOwnerUID string
}

// ErrNotFound is wrapped by registry errors for a device that does not exist.
var ErrNotFound = errors.New("device not found")
