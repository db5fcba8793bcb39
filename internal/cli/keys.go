package cli

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/stationcreds"
)

// Key file names keygen writes for index N.
const (
	// stationKeyName is the station's public key file (raw X||Y), the name
	// Basics Station looks for next to its cups.key.
	stationKeyName = "sig-%d.key"
	// privateKeyName is the PKCS#8 PEM private key that signs firmware.
	privateKeyName = "sig-%d.private.pem"
	// publicKeyName is the PEM (SPKI) public key, for openssl and for a
	// rollout's publicKeyRef ConfigMap.
	publicKeyName = "sig-%d.public.pem"
)

func (a *app) keygenCommand() *cobra.Command {
	var dir string
	var index int
	cmd := &cobra.Command{
		Use:   "keygen [--dir DIR] [--index N]",
		Short: "Create a firmware signing key pair",
		Long: `keygen creates an ECDSA P-256 key pair for signing firmware and writes, in DIR:

  sig-N.key          the station's public key (64 bytes, raw X||Y): install it
                     on every station next to cups.key (the station tries each
                     sig-*.key it has)
  sig-N.private.pem  the private key (mode 0600): keep it secret, sign with it
  sig-N.public.pem   the public key as PEM, for openssl and publicKeyRef

and prints the key CRC, the keyChecksum of rollouts signed with it. Existing
files are never overwritten: pick another --index or --dir.`,
		Example: `  ` + a.commandName() + ` keygen --dir keys --index 1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if index < 0 || index > 9 {
				// Basics Station probes sig-0.key upwards and stops at the
				// first missing file; single digits keep that run short.
				return fmt.Errorf("--index %d: use 0 to 9 (the station reads sig-0.key, sig-1.key, ... up to the first missing one)", index)
			}
			return a.keygen(dir, index)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "Directory to write the key files into (created if missing).")
	cmd.Flags().IntVar(&index, "index", 0, "N in sig-N.key: the key slot on the station.")
	return cmd
}

func (a *app) keygen(dir string, index int) error {
	priv, err := signing.GenerateKey()
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	sigKey, err := signing.MarshalSigKey(&priv.PublicKey)
	if err != nil {
		return fmt.Errorf("encode station key: %w", err)
	}
	privPEM, err := signing.MarshalPrivateKeyPEM(priv, signing.PKCS8)
	if err != nil {
		return fmt.Errorf("encode private key: %w", err)
	}
	pubPEM, err := signing.MarshalPublicKeyPEM(&priv.PublicKey)
	if err != nil {
		return fmt.Errorf("encode public key: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
		what string
	}{
		{fmt.Sprintf(stationKeyName, index), sigKey, 0o644, "station public key, 64 bytes: install it on each station next to cups.key"},
		{fmt.Sprintf(privateKeyName, index), privPEM, 0o600, "private signing key: keep it secret"},
		{fmt.Sprintf(publicKeyName, index), pubPEM, 0o644, "public key as PEM, for openssl and publicKeyRef"},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists: keygen never overwrites keys; choose another --index or --dir", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := writeNew(p, f.data, f.mode); err != nil {
			for _, w := range written {
				_ = os.Remove(w) // leave no half key set behind
			}
			return err
		}
		written = append(written, p)
	}
	out := a.Streams.Out
	for _, f := range files {
		fmt.Fprintf(out, "wrote %s (%s)\n", filepath.Join(dir, f.name), f.what)
	}
	fmt.Fprintf(out, "key CRC: %d\n", signing.KeyCRC(sigKey))
	fmt.Fprintf(out, "sign with: %s sign FILE --key %s\n", a.commandName(), filepath.Join(dir, files[1].name))
	fmt.Fprintf(out, "for a rollout's publicKeyRef: kubectl create configmap fw-signing --from-file=%s=%s\n", files[0].name, filepath.Join(dir, files[0].name))
	return nil
}

// writeNew creates path exclusively (never replacing a file) with mode.
func writeNew(path string, data []byte, mode os.FileMode) error {
	err := stationcreds.WriteExclusive(path, data, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists: keygen never overwrites keys; choose another --index or --dir", path)
	}
	return err
}

func (a *app) signCommand() *cobra.Command {
	var keyFile, stationKeyOut string
	cmd := &cobra.Command{
		Use:   "sign FILE --key PRIVATE_KEY",
		Short: "Sign a firmware file; print the signature and key CRC",
		Long: `sign computes the signature Basics Station verifies before it runs an update:
ECDSA P-256 over the SHA-512 of FILE, DER-encoded. It prints the signature as
base64 (a rollout's firmware.signature) and the CRC of the key's sig-N.key
(its firmware.keyChecksum). The key is a PEM private key (keygen's
sig-N.private.pem, or openssl's PKCS#8 / SEC1 output).

It also writes the key's station file (the 64-byte sig-N.key stations verify
with) next to the key, as sig-N.key for sig-N.private.pem and NAME.sig.key
otherwise, or to --station-key-out; an existing different file is never
replaced.`,
		Example: `  ` + a.commandName() + ` sign station-2.0.7.bin --key keys/sig-0.private.pem`,
		Args:    exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, crc, err := signFile(args[0], keyFile)
			if err != nil {
				return err
			}
			if err := a.stationKeyOf(keyFile, stationKeyOut); err != nil {
				return err
			}
			fmt.Fprintf(a.Streams.Out, "signature: %s\nkeyChecksum: %d\n", sig, crc)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM private key file (required).")
	cmd.Flags().StringVar(&stationKeyOut, "station-key-out", "", "Where to write the key's station file sig-N.key (default: next to --key).")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// stationKeyOf writes the station key file of the private key in keyFile.
func (a *app) stationKeyOf(keyFile, out string) error {
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("read private key: %w", err)
	}
	priv, err := signing.ParsePrivateKeyPEM(raw)
	if err != nil {
		return fmt.Errorf("private key %s: %w", keyFile, err)
	}
	return a.writeStationKey(keyFile, out, &priv.PublicKey)
}

// signFile signs the file at path with the PEM private key in keyFile and
// returns the base64 signature and the key CRC.
func signFile(path, keyFile string) (string, uint32, error) {
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		return "", 0, fmt.Errorf("read private key: %w", err)
	}
	priv, err := signing.ParsePrivateKeyPEM(raw)
	if err != nil {
		return "", 0, fmt.Errorf("private key %s: %w (sign needs the private PEM key, e.g. sig-0.private.pem, not sig-0.key)", keyFile, err)
	}
	crc, err := signing.PublicKeyCRC(&priv.PublicKey)
	if err != nil {
		return "", 0, fmt.Errorf("key CRC of %s: %w", keyFile, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("open firmware: %w", err)
	}
	defer f.Close()
	der, err := signing.Sign(priv, f)
	if err != nil {
		return "", 0, fmt.Errorf("sign %s: %w", path, err)
	}
	return signing.EncodeSignature(der), crc, nil
}

func (a *app) verifyCommand() *cobra.Command {
	var keyFile, sig string
	cmd := &cobra.Command{
		Use:   "verify FILE --key PUBLIC_KEY --signature BASE64",
		Short: "Check a firmware signature as a station would",
		Long: `verify checks a base64 signature over FILE exactly as Basics Station does
(SHA-512, ECDSA P-256, DER). The key may be a station's sig-N.key, a PEM
public key, or a PEM private key (its public half is used). It exits non-zero
when the signature does not verify.`,
		Example: `  ` + a.commandName() + ` verify station-2.0.7.bin --key keys/sig-0.key --signature MEUCIQ...`,
		Args:    exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("read key: %w", err)
			}
			pub, err := signing.ParsePublicKey(raw)
			if err != nil {
				return fmt.Errorf("key %s: %w", keyFile, err)
			}
			crc, err := signing.PublicKeyCRC(pub)
			if err != nil {
				return fmt.Errorf("key CRC of %s: %w", keyFile, err)
			}
			der, err := signing.DecodeSignature(sig)
			if err != nil {
				return fmt.Errorf("--signature: %w", err)
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("open firmware: %w", err)
			}
			defer f.Close()
			if err := signing.Verify(pub, f, der); err != nil {
				return fmt.Errorf("%s: the signature does not verify with key CRC %d: check that FILE is the signed file and KEY the pair of the signing key: %w", args[0], crc, err)
			}
			fmt.Fprintf(a.Streams.Out, "OK: the signature of %s verifies with key CRC %d\n", args[0], crc)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "Public key: sig-N.key, PEM public key or PEM private key (required).")
	cmd.Flags().StringVar(&sig, "signature", "", "Base64 DER signature (required).")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("signature")
	return cmd
}

// exactArgs is cobra.ExactArgs with a message naming the argument.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes exactly %d argument (%s), got %d; see `%s --help`", cmd.Name(), n, what, len(args), cmd.CommandPath())
		}
		return nil
	}
}

// stationKeyPath is where sign and publish write the station key file of a
// private key when --station-key-out is not given: next to it, as sig-N.key
// for keygen's sig-N.private.pem (or sig-N.pem), else as NAME.sig.key.
func stationKeyPath(keyFile string) string {
	dir, base := filepath.Split(keyFile)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	stem = strings.TrimSuffix(stem, ".private")
	var n int
	if _, err := fmt.Sscanf(stem, "sig-%d", &n); err == nil && fmt.Sprintf("sig-%d", n) == stem {
		return filepath.Join(dir, stem+".key")
	}
	return filepath.Join(dir, stem+".sig.key")
}

// writeStationKey writes the 64-byte station key file (sig-N.key) of pub
// to out (default stationKeyPath(keyFile)) unless the same bytes are there
// already, and says where it is and its CRC. A different existing file is
// never replaced.
func (a *app) writeStationKey(keyFile, out string, pub *ecdsa.PublicKey) error {
	if out == "" {
		out = stationKeyPath(keyFile)
	}
	sigKey, err := signing.MarshalSigKey(pub)
	if err != nil {
		return fmt.Errorf("encode station key: %w", err)
	}
	crc := signing.KeyCRC(sigKey)
	switch cur, err := os.ReadFile(out); {
	case err == nil && bytes.Equal(cur, sigKey):
	case err == nil:
		return fmt.Errorf("%s exists and is not the station key of %s (CRC %d): choose another --station-key-out", out, keyFile, crc)
	case errors.Is(err, fs.ErrNotExist):
		if err := writeNew(out, sigKey, 0o644); err != nil {
			return err
		}
	default:
		return fmt.Errorf("check %s: %w", out, err)
	}
	fmt.Fprintf(a.Streams.ErrOut, "station key: %s (64 bytes, key CRC %d): install it on the stations as sig-N.key\n", out, crc)
	return nil
}
