package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/stationcreds"
	"github.com/stationfleet/stationfleet/internal/twin"
)

type addOptions struct {
	issue          issueFlags
	cupsURI, tcURI string
	tags, sigKeys  []string
	out            string
}

func (a *app) stationAddCommand(sf *stationFlags) *cobra.Command {
	o := &addOptions{}
	cmd := &cobra.Command{
		Use:   "add EUI --cups-uri URI --out DIR (--ca-cert CA --ca-key KEY | --auth token) --trust SERVER_CA",
		Short: "Enroll a station: create its device and twin, issue its credential, write its files",
		Long: `add enrolls a station: it creates the device in IoT Hub (device id: the EUI as
16 hex digits) with the --tag tags, sets the twin's desired cupsUri and
cupsCredCrc, issues a credential and writes the station's files into DIR,
ready to copy into the station's home directory on the gateway:

  cups.uri            the CUPS server
  cups.trust          the CA of the CUPS server's certificate (DER)
  cups.crt, cups.key  a client certificate (CN = the EUI) and its key (DER),
                      its SHA-1 thumbprint allowed in desired.clientThumbprint
    or cups.key       a bearer token ("Authorization: Bearer ..."), its
                      SHA-256 allowed in tags.stationfleet.tokens
  sig-N.key           the firmware signing keys (--sig-key, in order)
  station.conf        station_conf.routerid: merge it into your board's
                      station.conf (radio_conf)

Files are written 0600 and never overwrite anything; the private key and token
are never printed. With --credential-store the credential blob is stored too,
so CUPS can restore the station's regular set if it is damaged.

Copy the files into a fresh home directory: the station copies this set to its
backup (cups-bak.*) at its first successful poll and never again, so this
credential stays valid as the station's backup through later rotations.

A cups-uri of http:// (the embedded demo's plain-HTTP CUPS) issues no
credential: only a server in insecure mode accepts such a station.`,
		Example: `  ` + a.commandName() + ` station add 0016C0FFFE000001 --cups-uri https://cups.example.net:5002 \
      --ca-cert stations-ca.crt --ca-key stations-ca.key --trust cups-server-ca.crt \
      --sig-key keys/sig-0.key --tag region=eu-west --tag ring=canary \
      --credential-store azblob://credentials/stations/ --out gw-0016C0FFFE000001`,
		Args: exactArgs(1, "EUI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.stationAdd(cmd.Context(), sf, o, args[0])
		},
	}
	fs := cmd.Flags()
	o.issue.bind(fs)
	fs.StringVar(&o.cupsURI, "cups-uri", "", "The station's cups.uri: https://HOST:PORT (no path), or http:// for the demo (required).")
	fs.StringVar(&o.tcURI, "tc-uri", "", "The station's tc.uri (wss://HOST:PORT), also set as desired tcUri; optional.")
	fs.StringArrayVar(&o.tags, "tag", nil, "Twin tag KEY=VALUE (what rollouts select on); repeatable.")
	fs.StringArrayVar(&o.sigKeys, "sig-key", nil, "Firmware signing key the station trusts: a sig-N.key, PEM public or PEM private key; repeatable, written as sig-0.key, sig-1.key, ...")
	fs.StringVarP(&o.out, "out", "o", "", "Directory to write the station's files into (required; created, never overwritten).")
	_ = cmd.MarkFlagRequired("cups-uri")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// addPlan is everything add checked before it changes anything.
type addPlan struct {
	deviceID string
	eui      cups.EUI
	tags     map[string]any
	home     stationcreds.HomeFiles
	cred     *stationcreds.Credential
}

func (a *app) planAdd(o *addOptions, arg string) (*addPlan, error) {
	eui, err := parseStationEUI(arg)
	if err != nil {
		return nil, err
	}
	p := &addPlan{deviceID: eui.DeviceID(), eui: eui, tags: map[string]any{}}
	plain, err := checkCUPSURI(o.cupsURI)
	if err != nil {
		return nil, err
	}
	if o.tcURI != "" && !strings.HasPrefix(o.tcURI, "ws://") && !strings.HasPrefix(o.tcURI, "wss://") {
		return nil, fmt.Errorf("--tc-uri %q: use wss://HOST:PORT", o.tcURI)
	}
	for _, kv := range o.tags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !tagKeyPattern.MatchString(k) || len(v) > 128 {
			return nil, fmt.Errorf("--tag %q: use KEY=VALUE, KEY a letter then letters, digits or underscores, VALUE at most 128 characters", kv)
		}
		if k == twin.TagRoot {
			return nil, fmt.Errorf("--tag %q: the tag %s is reserved for stationfleet's own records", kv, twin.TagRoot)
		}
		p.tags[k] = v
	}
	p.home = stationcreds.HomeFiles{RouterID: eui.String(), CUPSURI: o.cupsURI, TCURI: o.tcURI}
	for _, f := range o.sigKeys {
		k, err := readSigKey(f)
		if err != nil {
			return nil, err
		}
		p.home.SigKeys = append(p.home.SigKeys, k)
	}
	if plain {
		if o.issue.auth != "" && o.issue.auth != "none" || o.issue.caCert != "" || o.issue.trust != "" {
			return nil, errors.New("--cups-uri is plain http://: the station then speaks no TLS and holds no credential; drop --auth, --ca-cert and --trust, or use https://")
		}
		return p, nil
	}
	if o.issue.auth == "" {
		o.issue.auth = "cert"
	}
	if p.cred, err = o.issue.issue(p.deviceID, a.Now()); err != nil {
		return nil, err
	}
	p.home.Cred = p.cred
	return p, nil
}

// checkCUPSURI checks a cups.uri as the station does: http or https,
// host and port, no path. plain reports http.
func checkCUPSURI(u string) (plain bool, err error) {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.Contains(rest, "/") || !strings.Contains(rest, ":") {
		return false, fmt.Errorf("--cups-uri %q: use https://HOST:PORT (Basics Station wants host and port and no path)", u)
	}
	if len(u) >= cups.MaxURILen {
		return false, fmt.Errorf("--cups-uri %q: at most %d characters", u, cups.MaxURILen-1)
	}
	return scheme == "http", nil
}

// readSigKey reads a station key in any form and returns the sig-N.key bytes.
func readSigKey(file string) ([]byte, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read --sig-key: %w", err)
	}
	pub, err := signing.ParsePublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("--sig-key %s: %w", file, err)
	}
	k, err := signing.MarshalSigKey(pub)
	if err != nil {
		return nil, fmt.Errorf("--sig-key %s: %w", file, err)
	}
	return k, nil
}

func (a *app) stationAdd(ctx context.Context, sf *stationFlags, o *addOptions, arg string) error {
	p, err := a.planAdd(o, arg)
	if err != nil {
		return err
	}
	var store firmware.Store
	if sf.credStore != "" && p.cred != nil {
		s, closeStore, err := sf.blobStore()
		if err != nil {
			return err
		}
		defer closeStore()
		store = s
	}
	return a.withRegistry(sf, func(reg *iothub.Client) error {
		return a.enroll(ctx, sf, reg, store, p, o.out)
	})
}

// enroll makes the changes in an order that leaves nothing half-done: the
// files first (exclusively created), then the blob, the device and the twin;
// a failure removes the files it wrote and a device it created.
func (a *app) enroll(ctx context.Context, sf *stationFlags, reg *iothub.Client, store firmware.Store, p *addPlan, out string) (err error) {
	if cur, gerr := reg.Get(ctx, p.deviceID); gerr == nil && len(cur.Credentials) > 0 {
		return fmt.Errorf("station %s is enrolled already (credentials %s): use `%s station rotate` or `station show`",
			p.deviceID, describeIDs(cur.Credentials), a.commandName())
	} else if gerr != nil && !errors.Is(gerr, twin.ErrNotFound) {
		return gerr
	}
	files, err := p.home.Files()
	if err != nil {
		return err
	}
	written, err := stationcreds.WriteNew(out, files)
	if err != nil {
		return err
	}
	created := false
	defer func() {
		if err == nil {
			return
		}
		for _, w := range written {
			_ = os.Remove(w)
		}
		if created {
			if derr := reg.DeleteStation(context.WithoutCancel(ctx), p.deviceID); derr != nil {
				err = fmt.Errorf("%w (and removing the device it created failed: %v)", err, derr)
			}
		}
	}()
	const id = 1
	var rec *twin.CredentialRecord
	desired := map[string]any{"cupsUri": p.home.CUPSURI}
	if p.home.TCURI != "" {
		desired["tcUri"] = p.home.TCURI
	}
	if p.cred != nil {
		blobURL := ""
		if store != nil {
			if blobURL, err = sf.uploadCredential(ctx, store, p.deviceID, id, p.cred); err != nil {
				return err
			}
			desired["cupsCredentialUrl"] = blobURL
		}
		r := p.cred.Record(id, []string{twin.RoleRegular, twin.RoleBackup}, a.Now(), blobURL)
		rec = &r
		desired["cupsCredCrc"] = p.cred.CRC()
	}
	if created, err = reg.CreateStation(ctx, p.deviceID); err != nil {
		return err
	}
	_, err = reg.Update(ctx, p.deviceID, func(t *twin.Twin) (*twin.Patch, error) {
		if len(t.Credentials) > 0 {
			return nil, fmt.Errorf("station %s was enrolled concurrently", p.deviceID)
		}
		var recs []twin.CredentialRecord
		if rec != nil {
			recs = []twin.CredentialRecord{*rec}
		}
		tp, tok := stationcreds.AllowLists(t.ClientThumbprints, t.TokenSHA256, recs, nil)
		patch := twin.CredentialsPatch(recs, tp, tok, desired)
		for k, v := range p.tags {
			patch.Tags[k] = v
		}
		return patch, nil
	})
	if err != nil {
		return fmt.Errorf("write the twin of %s: %w", p.deviceID, err)
	}
	a.printEnrolled(p, rec, written, out, created)
	return nil
}

func (a *app) printEnrolled(p *addPlan, rec *twin.CredentialRecord, written []string, out string, created bool) {
	w := a.Streams.Out
	verb := "created device"
	if !created {
		verb = "device existed; enrolled"
	}
	fmt.Fprintf(w, "%s %s (routerid %s)\n", verb, p.deviceID, p.eui)
	for _, f := range written {
		fmt.Fprintf(w, "wrote %s\n", f)
	}
	if rec == nil {
		fmt.Fprintf(w, "no credential: %s is plain HTTP; only a CUPS server in insecure mode (the embedded demo) accepts this station\n", p.home.CUPSURI)
	} else {
		fmt.Fprintf(w, "credential %s: regular, and the station's backup once it has polled\n", describe(*rec))
	}
	for i, k := range p.home.SigKeys {
		fmt.Fprintf(w, "sig-%d.key: key CRC %d\n", i, signing.KeyCRC(k))
	}
	fmt.Fprintf(w, "\nCopy %s/* into the station's home directory on the gateway (where it reads station.conf;\n", filepath.Clean(out))
	fmt.Fprintf(w, "merge station.conf's routerid into yours) and remove any cups-bak.* and cups-bak.done left there:\n")
	fmt.Fprintf(w, "the station backs up this credential at its first successful poll, and stationfleet keeps it valid as that backup.\n")
}
