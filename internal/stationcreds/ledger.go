package stationcreds

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// The ledger is a station's credential records (tags.stationfleet.credentials)
// and the rules that move their roles. A Basics Station keeps three sets:
// regular, backup and boot (DESIGN.md section 3). It copies its regular set
// to the backup once in its life, at its first successful CUPS interaction
// (backupConfigFiles in src/sys.c, marker cups-bak.done), so a credential
// rotated in later through CUPS never reaches the backup: the first
// credential stays the backup until the operator re-seeds it on the gateway.
// The rules therefore never retire a backup credential on their own.

// Settle applies what the station last reported (observed, its cupsCredCrc;
// nil when unknown): when that is the CRC of a pending credential, the
// station holds it as regular now, so it becomes regular and the credentials
// it replaced (the previous regular one and older pending ones) lose those
// roles. A credential with no role left is retired: it is returned in
// retired and no longer in out. Pending credentials newer than the reported
// one stay pending (CUPS still has to deliver them).
func Settle(recs []twin.CredentialRecord, observed *uint32) (out, retired []twin.CredentialRecord) {
	out = clone(recs)
	if observed == nil {
		return out, nil
	}
	held := -1
	for i, r := range out {
		if r.CRC == *observed && (r.HasRole(twin.RolePending) || r.HasRole(twin.RoleRegular)) {
			held = i
		}
	}
	if held < 0 || !out[held].HasRole(twin.RolePending) {
		return out, nil
	}
	heldID := out[held].ID
	out[held].Roles = addRole(without(out[held].Roles, twin.RolePending), twin.RoleRegular)
	for i := range out {
		if i == held {
			continue
		}
		out[i].Roles = without(out[i].Roles, twin.RoleRegular)
		if out[i].ID < heldID {
			out[i].Roles = without(out[i].Roles, twin.RolePending)
		}
	}
	return split(out)
}

// Revoke removes the credentials with the given ids (all of them when ids
// is empty) from the ledger. A credential the station holds as its backup
// or boot set is kept unless includeBackup is set: revoking it leaves the
// station no fallback. It returns the ledger after, the revoked records, and
// the backup or boot records it kept.
func Revoke(recs []twin.CredentialRecord, ids []int, includeBackup bool) (out, revoked, kept []twin.CredentialRecord, err error) {
	for _, id := range ids {
		if !slices.ContainsFunc(recs, func(r twin.CredentialRecord) bool { return r.ID == id }) {
			return nil, nil, nil, fmt.Errorf("the station has no credential %d (see `station show`)", id)
		}
	}
	for _, r := range recs {
		switch {
		case len(ids) > 0 && !slices.Contains(ids, r.ID):
			out = append(out, r)
		case IsFallback(r) && !includeBackup:
			out = append(out, r)
			kept = append(kept, r)
		default:
			revoked = append(revoked, r)
		}
	}
	return out, revoked, kept, nil
}

// IsFallback reports whether the station holds r in its backup or boot set.
func IsFallback(r twin.CredentialRecord) bool {
	return r.HasRole(twin.RoleBackup) || r.HasRole(twin.RoleBoot)
}

// NextID is the id of the next credential issued.
func NextID(recs []twin.CredentialRecord, floor int) int {
	n := floor
	for _, r := range recs {
		n = max(n, r.ID)
	}
	return n + 1
}

// AllowLists returns the twin's allow-lists after the ledger changed: the
// entries of removed records are taken out of thumbprints and tokens, those
// of recs added; entries stationfleet did not issue are kept.
func AllowLists(thumbprints, tokens []string, recs, removed []twin.CredentialRecord) (tp, tok []string) {
	drop := map[string]bool{}
	for _, r := range removed {
		drop[norm(r.Thumbprint)], drop[norm(r.TokenSHA256)] = true, true
	}
	keep := map[string]bool{}
	for _, r := range recs {
		keep[norm(r.Thumbprint)], keep[norm(r.TokenSHA256)] = true, true
	}
	delete(drop, "")
	for _, t := range thumbprints {
		if !drop[norm(t)] || keep[norm(t)] {
			tp = appendNew(tp, t)
		}
	}
	for _, t := range tokens {
		if !drop[norm(t)] || keep[norm(t)] {
			tok = appendNew(tok, t)
		}
	}
	for _, r := range recs {
		if r.Thumbprint != "" {
			tp = appendNew(tp, r.Thumbprint)
		}
		if r.TokenSHA256 != "" {
			tok = appendNew(tok, r.TokenSHA256)
		}
	}
	return tp, tok
}

// norm compares thumbprints and hashes as the CUPS server does: case and
// ':' separators do not matter.
func norm(s string) string { return strings.ToLower(strings.ReplaceAll(s, ":", "")) }

func appendNew(l []string, s string) []string {
	if slices.ContainsFunc(l, func(x string) bool { return norm(x) == norm(s) }) {
		return l
	}
	return append(l, s)
}

func split(recs []twin.CredentialRecord) (live, retired []twin.CredentialRecord) {
	for _, r := range recs {
		if len(r.Roles) == 0 {
			retired = append(retired, r)
		} else {
			live = append(live, r)
		}
	}
	return live, retired
}

func clone(recs []twin.CredentialRecord) []twin.CredentialRecord {
	out := make([]twin.CredentialRecord, len(recs))
	for i, r := range recs {
		out[i] = r
		out[i].Roles = slices.Clone(r.Roles)
	}
	return out
}

func without(roles []string, r string) []string {
	return slices.DeleteFunc(slices.Clone(roles), func(x string) bool { return x == r })
}

func addRole(roles []string, r string) []string {
	if slices.Contains(roles, r) {
		return roles
	}
	return append(roles, r)
}
