package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/stationcreds"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// describe is one credential in a line, without any secret.
func describe(r twin.CredentialRecord) string {
	id := "token sha256 " + short(r.TokenSHA256)
	if r.Kind == twin.KindX509 {
		id = "certificate thumbprint " + r.Thumbprint
	}
	s := fmt.Sprintf("%d (%s, CRC %d, issued %s", r.ID, id, r.CRC, r.IssuedAt.UTC().Format(time.RFC3339))
	if r.NotAfter != nil {
		s += ", expires " + r.NotAfter.UTC().Format("2006-01-02")
	}
	return s + ")"
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16] + "..."
	}
	return s
}

func describeIDs(recs []twin.CredentialRecord) string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = strconv.Itoa(r.ID)
	}
	return strings.Join(ids, ", ")
}

func rolesOf(r twin.CredentialRecord) string {
	if len(r.Roles) == 0 {
		return "retired"
	}
	return strings.Join(r.Roles, "+")
}

func (a *app) stationShowCommand(sf *stationFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show EUI",
		Short: "Print a station's credentials, their roles, and what the station last reported",
		Long: `show prints the CUPS credentials stationfleet issued to a station and their
roles: regular (cups.*), pending (sent through CUPS, not yet reported by the
station), backup (cups-bak.*: the station's fallback, kept valid) and boot. A
pending credential whose CRC the station has reported counts as regular, and
the credential it replaced as retired; rotate and revoke write that change
(show only reads).`,
		Args: exactArgs(1, "EUI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			eui, err := parseStationEUI(args[0])
			if err != nil {
				return err
			}
			return a.withRegistry(sf, func(reg *iothub.Client) error {
				t, err := reg.Get(cmd.Context(), eui.DeviceID())
				if err != nil {
					return explainTwinErr(err, eui.DeviceID())
				}
				a.printStation(a.Streams.Out, t)
				return nil
			})
		},
	}
}

func (a *app) printStation(w io.Writer, t *twin.Twin) {
	fmt.Fprintf(w, "station %s\n", t.DeviceID)
	if t.CUPS.CupsURI != "" {
		fmt.Fprintf(w, "  cupsUri:     %s\n", t.CUPS.CupsURI)
	}
	if t.CUPS.CupsCredCRC != nil {
		fmt.Fprintf(w, "  desired credential CRC: %d\n", *t.CUPS.CupsCredCRC)
	}
	obs := observedCRC(t)
	switch {
	case t.Observation == nil:
		fmt.Fprintf(w, "  last poll:   never\n")
	case obs == nil:
		fmt.Fprintf(w, "  last poll:   %s (credential CRC not recorded)\n", t.Observation.LastSeen.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "  last poll:   %s, credential CRC %d\n", t.Observation.LastSeen.UTC().Format(time.RFC3339), *obs)
	}
	settled, retired := stationcreds.Settle(t.Credentials, obs)
	if len(settled) == 0 && len(retired) == 0 {
		fmt.Fprintf(w, "  credentials: none issued by stationfleet\n")
	}
	for _, r := range settled {
		fmt.Fprintf(w, "  credential %s: %s\n", describe(r), rolesOf(r))
	}
	for _, r := range retired {
		fmt.Fprintf(w, "  credential %s: replaced on the station; retired at the next rotate or revoke\n", describe(r))
	}
	managed := map[string]bool{}
	for _, r := range t.Credentials {
		managed[strings.ToLower(r.Thumbprint)], managed[strings.ToLower(r.TokenSHA256)] = true, true
	}
	for _, tp := range t.ClientThumbprints {
		if !managed[strings.ToLower(strings.ReplaceAll(tp, ":", ""))] {
			fmt.Fprintf(w, "  also allowed: certificate thumbprint %s (not issued by stationfleet)\n", tp)
		}
	}
	for _, h := range t.TokenSHA256 {
		if !managed[strings.ToLower(h)] {
			fmt.Fprintf(w, "  also allowed: token sha256 %s (not issued by stationfleet)\n", short(h))
		}
	}
	if !slices.ContainsFunc(settled, stationcreds.IsFallback) && len(settled) > 0 {
		fmt.Fprintf(w, "  WARNING: no valid backup credential: after failures on its regular set the station cannot fall back\n")
	}
}

func explainTwinErr(err error, deviceID string) error {
	if errors.Is(err, twin.ErrNotFound) {
		return fmt.Errorf("station %s is not in IoT Hub: enroll it with `station add`: %w", deviceID, err)
	}
	return err
}

type rotateOptions struct {
	issue issueFlags
}

func (a *app) stationRotateCommand(sf *stationFlags) *cobra.Command {
	o := &rotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate EUI --trust SERVER_CA --credential-store URL (--ca-cert CA --ca-key KEY | --auth token)",
		Short: "Issue a station a new credential and deliver it through CUPS",
		Long: `rotate issues a new credential, stores its blob in --credential-store and sets
the twin's desired cupsCredCrc and cupsCredentialUrl: CUPS sends it at the
station's next poll, and the station reconnects with it at once. The new
credential is allowed from now on; the current regular one stays valid until
the station reports the new CRC, and is retired by the next rotate or revoke
after that.

The station's backup credential (normally the one add issued) stays valid:
the station copies its regular set to its backup only once in its life, so
the credential rotated in now never becomes its backup. Replace the backup
deliberately with set-backup.`,
		Args: exactArgs(1, "EUI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			eui, err := parseStationEUI(args[0])
			if err != nil {
				return err
			}
			store, closeStore, err := sf.blobStore()
			if err != nil {
				return err
			}
			defer closeStore()
			return a.withRegistry(sf, func(reg *iothub.Client) error {
				return a.rotate(cmd.Context(), sf, reg, store, eui.DeviceID(), o)
			})
		},
	}
	o.issue.bind(cmd.Flags())
	return cmd
}

func (a *app) rotate(ctx context.Context, sf *stationFlags, reg *iothub.Client, store firmware.Store, deviceID string, o *rotateOptions) error {
	cur, err := reg.Get(ctx, deviceID)
	if err != nil {
		return explainTwinErr(err, deviceID)
	}
	settled, _ := stationcreds.Settle(cur.Credentials, observedCRC(cur))
	if o.issue.auth == "" {
		o.issue.auth = "cert"
		for _, r := range settled {
			if r.HasRole(twin.RoleRegular) && r.Kind == twin.KindToken {
				o.issue.auth = "token"
			}
		}
	}
	id := stationcreds.NextID(cur.Credentials, 0)
	cred, err := o.issue.issue(deviceID, a.Now())
	if err != nil {
		return err
	}
	blobURL, err := sf.uploadCredential(ctx, store, deviceID, id, cred)
	if err != nil {
		return err
	}
	rec := cred.Record(id, []string{twin.RolePending}, a.Now(), blobURL)
	var retired []twin.CredentialRecord
	written, err := reg.Update(ctx, deviceID, func(t *twin.Twin) (*twin.Patch, error) {
		if stationcreds.NextID(t.Credentials, 0) != id {
			return nil, fmt.Errorf("station %s got another credential concurrently; run rotate again", deviceID)
		}
		var live []twin.CredentialRecord
		live, retired = stationcreds.Settle(t.Credentials, observedCRC(t))
		live = append(live, rec)
		tp, tok := stationcreds.AllowLists(t.ClientThumbprints, t.TokenSHA256, live, retired)
		return twin.CredentialsPatch(live, tp, tok, map[string]any{"cupsCredCrc": rec.CRC, "cupsCredentialUrl": blobURL}), nil
	})
	if err != nil {
		return fmt.Errorf("write the twin of %s: %w", deviceID, err)
	}
	w := a.Streams.Out
	fmt.Fprintf(w, "station %s: credential %s issued, pending: CUPS sends it at the station's next poll\n", deviceID, describe(rec))
	fmt.Fprintf(w, "  blob: %s\n", blobURL)
	for _, r := range retired {
		fmt.Fprintf(w, "  retired credential %s: the station replaced it\n", describe(r))
	}
	for _, r := range written.Credentials {
		switch {
		case r.ID == id:
		case r.HasRole(twin.RoleRegular) && stationcreds.IsFallback(r):
			fmt.Fprintf(w, "  credential %s stays valid: regular until the station reports CRC %d, and the station's backup\n", describe(r), rec.CRC)
		case r.HasRole(twin.RoleRegular):
			fmt.Fprintf(w, "  credential %s stays valid until the station reports CRC %d\n", describe(r), rec.CRC)
		case r.HasRole(twin.RolePending):
			fmt.Fprintf(w, "  credential %s (sent earlier, not yet reported) stays valid until the station reports a newer one\n", describe(r))
		case stationcreds.IsFallback(r):
			fmt.Fprintf(w, "  credential %s stays valid: the station's %s (it never takes a new backup by itself)\n", describe(r), rolesOf(r))
		}
	}
	return nil
}

type revokeOptions struct {
	ids           []int
	includeBackup bool
}

func (a *app) stationRevokeCommand(sf *stationFlags) *cobra.Command {
	o := &revokeOptions{}
	cmd := &cobra.Command{
		Use:   "revoke EUI [--credential ID]... [--include-backup]",
		Short: "Invalidate a station's credentials at once",
		Long: `revoke removes credentials from the twin's allow-lists
(desired.clientThumbprint, tags.stationfleet.tokens): the CUPS server refuses
them from its next twin read (within its cache TTL, 5 s by default).

Without --credential it revokes every credential of the station, its backup
and boot credentials and allow-list entries stationfleet did not issue
included: for a gateway that is lost, stolen or retired. The station has no
credential left to get in with and must be enrolled again on site.

With --credential it revokes only those, and keeps the station's backup (and
boot) credential unless --include-backup is given, and says so: a station
falls back to its backup after failures on its regular set and, connected
through it, receives the credential desired in its twin (issue one with
rotate). A station copies its regular set to its backup only once in its
life, so the backup is usually the credential add issued.`,
		Args: exactArgs(1, "EUI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			eui, err := parseStationEUI(args[0])
			if err != nil {
				return err
			}
			return a.withRegistry(sf, func(reg *iothub.Client) error {
				return a.revoke(cmd.Context(), reg, eui.DeviceID(), o)
			})
		},
	}
	cmd.Flags().IntSliceVar(&o.ids, "credential", nil, "Revoke only these credentials (ids from `station show`); repeatable.")
	cmd.Flags().BoolVar(&o.includeBackup, "include-backup", false, "With --credential: also revoke the named credentials when the station holds them as its backup or boot set; it can then no longer fall back.")
	return cmd
}

func (a *app) revoke(ctx context.Context, reg *iothub.Client, deviceID string, o *revokeOptions) error {
	var revoked, kept, fallbacks []twin.CredentialRecord
	var foreignCount int
	all := len(o.ids) == 0 // the whole station: a lost, stolen or retired gateway
	_, err := reg.Update(ctx, deviceID, func(t *twin.Twin) (*twin.Patch, error) {
		live, retired := stationcreds.Settle(t.Credentials, observedCRC(t))
		out, rev, kp, err := stationcreds.Revoke(live, o.ids, o.includeBackup || all)
		if err != nil {
			return nil, err
		}
		revoked, kept = rev, kp
		fallbacks = nil
		for _, r := range out {
			if stationcreds.IsFallback(r) && !slices.ContainsFunc(kp, func(k twin.CredentialRecord) bool { return k.ID == r.ID }) {
				fallbacks = append(fallbacks, r)
			}
		}
		removed := append(slices.Clone(retired), rev...)
		tp, tok := stationcreds.AllowLists(t.ClientThumbprints, t.TokenSHA256, out, removed)
		foreignCount = 0
		if all {
			// Everything: also what stationfleet did not issue.
			foreignCount = len(tp) + len(tok)
			tp, tok = nil, nil
		}
		var desired map[string]any
		if c := t.CUPS.CupsCredCRC; c != nil && slices.ContainsFunc(rev, func(r twin.CredentialRecord) bool { return r.CRC == *c }) {
			// Never push a credential that is no longer allowed.
			desired = map[string]any{"cupsCredCrc": nil, "cupsCredentialUrl": nil}
		}
		if len(removed) == 0 && foreignCount == 0 {
			return nil, nil
		}
		return twin.CredentialsPatch(out, tp, tok, desired), nil
	})
	if err != nil {
		return explainTwinErr(err, deviceID)
	}
	w := a.Streams.Out
	if len(revoked) == 0 && foreignCount == 0 {
		fmt.Fprintf(w, "station %s: nothing to revoke\n", deviceID)
	}
	for _, r := range revoked {
		fmt.Fprintf(w, "station %s: revoked credential %s (%s)\n", deviceID, describe(r), rolesOf(r))
	}
	if foreignCount > 0 {
		fmt.Fprintf(w, "station %s: removed %d allow-list entries stationfleet did not issue\n", deviceID, foreignCount)
	}
	for _, r := range kept {
		fmt.Fprintf(w, "kept credential %s: the station's %s, so it can still fall back and get in; add --include-backup to revoke it too\n", describe(r), rolesOf(r))
	}
	for _, r := range fallbacks {
		fmt.Fprintf(w, "credential %s stays valid: the station's %s, so it can still fall back and get in\n", describe(r), rolesOf(r))
	}
	if slices.ContainsFunc(revoked, stationcreds.IsFallback) {
		fmt.Fprintf(a.Streams.ErrOut, "WARNING: station %s's backup credential is revoked: it can no longer fall back, and once its regular credential is gone it must be enrolled again on site\n", deviceID)
	}
	return nil
}

func (a *app) stationSetBackupCommand(sf *stationFlags) *cobra.Command {
	var id int
	var retireOld bool
	cmd := &cobra.Command{
		Use:   "set-backup EUI --credential ID",
		Short: "Record that the station's backup set now holds another credential",
		Long: `set-backup records that the station's backup set (cups-bak.*) now holds
credential ID, after you re-seeded it on the gateway. A station takes a backup
copy of its regular set only once in its life: nothing sent over CUPS makes it
take another. To re-seed, on the gateway: stop the station, delete
cups-bak.done and cups-bak.* in its home directory, start it; at its next
successful poll it copies its regular set (which must hold credential ID,
see show) to the backup. Or copy cups.trust, cups.crt, cups.key to
cups-bak.trust, cups-bak.crt, cups-bak.key.

The previous backup credential keeps its validity unless --retire-old is given.`,
		Args: exactArgs(1, "EUI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			eui, err := parseStationEUI(args[0])
			if err != nil {
				return err
			}
			return a.withRegistry(sf, func(reg *iothub.Client) error {
				return a.setBackup(cmd.Context(), reg, eui.DeviceID(), id, retireOld)
			})
		},
	}
	cmd.Flags().IntVar(&id, "credential", 0, "The credential the station's backup set now holds (required).")
	cmd.Flags().BoolVar(&retireOld, "retire-old", false, "Revoke the previous backup credential.")
	_ = cmd.MarkFlagRequired("credential")
	return cmd
}

func (a *app) setBackup(ctx context.Context, reg *iothub.Client, deviceID string, id int, retireOld bool) error {
	var old []twin.CredentialRecord
	_, err := reg.Update(ctx, deviceID, func(t *twin.Twin) (*twin.Patch, error) {
		live, retired := stationcreds.Settle(t.Credentials, observedCRC(t))
		i := slices.IndexFunc(live, func(r twin.CredentialRecord) bool { return r.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("station %s has no valid credential %d (see `station show`)", deviceID, id)
		}
		if !live[i].HasRole(twin.RoleRegular) {
			return nil, fmt.Errorf("credential %d is not the station's regular credential (%s): the backup is copied from the regular set", id, rolesOf(live[i]))
		}
		old = nil
		var out []twin.CredentialRecord
		for _, r := range live {
			switch {
			case r.ID == id:
				if !r.HasRole(twin.RoleBackup) {
					r.Roles = append(r.Roles, twin.RoleBackup)
				}
			case r.HasRole(twin.RoleBackup) && !retireOld:
				old = append(old, r)
			case r.HasRole(twin.RoleBackup):
				old = append(old, r)
				r.Roles = slices.DeleteFunc(r.Roles, func(x string) bool { return x == twin.RoleBackup })
				if len(r.Roles) == 0 {
					retired = append(retired, r)
					continue
				}
			}
			out = append(out, r)
		}
		tp, tok := stationcreds.AllowLists(t.ClientThumbprints, t.TokenSHA256, out, retired)
		return twin.CredentialsPatch(out, tp, tok, nil), nil
	})
	if err != nil {
		return explainTwinErr(err, deviceID)
	}
	fmt.Fprintf(a.Streams.Out, "station %s: credential %d recorded as the station's backup\n", deviceID, id)
	for _, r := range old {
		if retireOld {
			fmt.Fprintf(a.Streams.Out, "  previous backup credential %s no longer a backup\n", describe(r))
		} else {
			fmt.Fprintf(a.Streams.Out, "  previous backup credential %s stays valid (revoke it with `station revoke --credential %d --include-backup`)\n", describe(r), r.ID)
		}
	}
	return nil
}
