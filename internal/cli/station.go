package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/firmware/local"
	"github.com/stationfleet/stationfleet/internal/firmware/stores"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/stationcreds"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// stationFlags are the connections every station command needs: IoT Hub
// (through the manager's client) and the credential blob store.
type stationFlags struct {
	hub         hubOptions
	noRateLimit bool
	credStore   string
	store       stores.Options
}

func (f *stationFlags) bind(fs *pflag.FlagSet) {
	f.hub.bindFlagSet(fs)
	fs.BoolVar(&f.noRateLimit, "iothub-no-rate-limit", false, "Turn the client's rate limits off (for the emulator only).")
	fs.StringVar(&f.credStore, "credential-store", "", "Where credential blobs for CUPS rotation go, a prefix: "+stores.Registry().Forms("/")+" (the manager must read it; keep it private: blobs hold the station's private key or token).")
	gofs := flag.NewFlagSet("store", flag.ContinueOnError)
	f.store = stores.DefaultOptions()
	f.store.BindFlags(gofs)
	fs.AddGoFlagSet(gofs)
	fs.VisitAll(func(fl *pflag.Flag) {
		switch fl.Name {
		case "firmware-max-size":
			fl.Hidden = true
		case "firmware-dir":
			fl.Usage = "Local directory for " + local.SchemeFile + ":// credential-store URLs (default: the --credential-store directory)."
		}
	})
}

// registry connects to IoT Hub with the manager's client; the station
// commands need registry read/write.
func (f *stationFlags) registry() (*iothub.Client, error) {
	if f.noRateLimit {
		return f.hub.connect(iothub.WithoutRateLimits())
	}
	return f.hub.connect()
}

// blobStore opens the credential store; a file:// prefix without
// --firmware-dir serves its own directory.
func (f *stationFlags) blobStore() (firmware.Store, func(), error) {
	if f.credStore == "" {
		return nil, nil, errors.New("--credential-store is required: CUPS sends a new credential from there")
	}
	if !strings.HasSuffix(f.credStore, "/") {
		f.credStore += "/"
	}
	o := f.store
	if strings.HasPrefix(f.credStore, local.SchemeFile+"://") && o.Dir == "" {
		u, err := local.Backend.ParseURL(f.credStore + "x")
		if err != nil {
			return nil, nil, fmt.Errorf("--credential-store: %w", err)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return nil, nil, fmt.Errorf("--credential-store %s: a relative file: URL needs --firmware-dir", f.credStore)
		}
		o.Dir = path.Dir(u.Path)
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", o.Dir, err)
		}
	}
	s, err := stores.New(o)
	if err != nil {
		return nil, nil, fmt.Errorf("credential store: %w", err)
	}
	return s, func() { _ = s.Close() }, nil
}

// uploadCredential stores a credential blob under the store prefix and
// returns its URL. A local blob is made readable by its owner only.
func (f *stationFlags) uploadCredential(ctx context.Context, store firmware.Store, deviceID string, id int, c *stationcreds.Credential) (string, error) {
	u := fmt.Sprintf("%s%s/cups-%d-%08x.cred", f.credStore, deviceID, id, c.CRC())
	if _, err := store.Upload(ctx, u, strings.NewReader(string(c.Blob())), firmware.UploadOptions{}); err != nil {
		return "", fmt.Errorf("store the credential blob at %s: %w", u, err)
	}
	if strings.HasPrefix(u, local.SchemeFile+"://") {
		if p, err := url.Parse(u); err == nil {
			_ = os.Chmod(p.Path, 0o600)
		}
	}
	return u, nil
}

// issueFlags say how to issue a credential.
type issueFlags struct {
	auth, caCert, caKey, trust, keyType string
	validity                            time.Duration
}

func (f *issueFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.auth, "auth", "", `How the station authenticates: "cert" (a client certificate from --ca-cert/--ca-key) or "token" (a bearer token); add defaults to cert, rotate to the kind of the current credential.`)
	fs.StringVar(&f.caCert, "ca-cert", "", "PEM certificate of the CA that signs station client certificates (the manager's --cups-client-ca-file).")
	fs.StringVar(&f.caKey, "ca-key", "", "PEM private key of --ca-cert.")
	fs.StringVar(&f.trust, "trust", "", "PEM or DER CA certificate of the CUPS server's certificate: the station's cups.trust.")
	fs.StringVar(&f.keyType, "key-type", string(stationcreds.KeyECP256), "Client key: ec-p256 or rsa-2048.")
	fs.DurationVar(&f.validity, "validity", stationcreds.DefaultValidity, "How long a client certificate is valid.")
}

// issue makes a credential for deviceID.
func (f *issueFlags) issue(deviceID string, now time.Time) (*stationcreds.Credential, error) {
	if f.trust == "" {
		return nil, errors.New("--trust is required: the station checks the CUPS server's certificate against it (cups.trust)")
	}
	trust, err := os.ReadFile(f.trust)
	if err != nil {
		return nil, fmt.Errorf("read --trust: %w", err)
	}
	switch f.auth {
	case "token":
		c, err := stationcreds.IssueToken(trust)
		if err != nil {
			return nil, fmt.Errorf("--trust %s: %w", f.trust, err)
		}
		return c, nil
	case "cert":
	default:
		return nil, fmt.Errorf("--auth %q: use cert or token", f.auth)
	}
	if f.caCert == "" || f.caKey == "" {
		return nil, errors.New("--auth cert needs --ca-cert and --ca-key (the CA the CUPS server trusts for client certificates), or use --auth token")
	}
	certPEM, err := os.ReadFile(f.caCert)
	if err != nil {
		return nil, fmt.Errorf("read --ca-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(f.caKey)
	if err != nil {
		return nil, fmt.Errorf("read --ca-key: %w", err)
	}
	ca, err := stationcreds.ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	c, err := stationcreds.IssueCert(ca, deviceID, trust, stationcreds.IssueOptions{
		KeyType: stationcreds.KeyType(f.keyType), Validity: f.validity, Now: now})
	if err != nil {
		return nil, fmt.Errorf("issue the client certificate: %w", err)
	}
	return c, nil
}

func (a *app) stationCommand() *cobra.Command {
	sf := &stationFlags{}
	cmd := &cobra.Command{
		Use:   "station",
		Short: "Enroll a station, rotate and revoke its CUPS credentials",
		Long: `station enrolls LoRa Basics Station gateways in IoT Hub and manages their
CUPS credentials: add creates the device and writes the station's files,
show prints what it holds, rotate sends it a new credential through CUPS,
revoke invalidates credentials.

A station keeps three credential sets: regular (cups.*), backup (cups-bak.*)
and boot (cups-boot.*), and falls back regular -> backup -> boot after
failures. It copies its regular set to the backup once in its life, at its
first successful CUPS poll: a credential rotated in later never reaches the
backup. So the credential add issued stays the station's backup, and rotate
and revoke keep it valid unless told otherwise (--include-backup).

The commands talk to IoT Hub with the manager's client and connection string
($` + EnvIoTHubConnectionString + ` or --iothub-connection-string-file).`,
	}
	sf.bind(cmd.PersistentFlags())
	cmd.AddCommand(a.stationAddCommand(sf), a.stationShowCommand(sf), a.stationRotateCommand(sf),
		a.stationRevokeCommand(sf), a.stationSetBackupCommand(sf))
	return cmd
}

// parseStationEUI reads the EUI argument in any form a station writes.
func parseStationEUI(s string) (cups.EUI, error) {
	eui, err := cups.ParseEUI(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("EUI %q: use the station's EUI, e.g. 0016C0FFFE000001 or 16:c0ff:fe00:1: %w", s, err)
	}
	return eui, nil
}

// withRegistry connects, runs fn and closes.
func (a *app) withRegistry(sf *stationFlags, fn func(*iothub.Client) error) error {
	reg, err := sf.registry()
	if err != nil {
		return err
	}
	defer reg.Close()
	return fn(reg)
}

// observedCRC is the cupsCredCrc the station last reported, nil if unknown.
func observedCRC(t *twin.Twin) *uint32 {
	if t.Observation == nil {
		return nil
	}
	return t.Observation.CupsCredCRC
}
