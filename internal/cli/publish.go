package cli

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/firmware/azblob"
	"github.com/stationfleet/stationfleet/internal/firmware/local"
	"github.com/stationfleet/stationfleet/internal/firmware/stores"
	"github.com/stationfleet/stationfleet/internal/signing"
)

// Defaults of the manifest publish writes.
const (
	// defaultSteps is a canary of one station, then 10%, then the rest.
	defaultSteps = "1,10%,100%"
	// defaultMaxFailures halts the rollout when more than 5% fail.
	defaultMaxFailures = "5%"
)

// deviceIDPattern is the API's device id form: the EUI as 16 upper-case hex
// digits.
var deviceIDPattern = regexp.MustCompile(`^[0-9A-F]{16}$`)

// tagKeyPattern is the API's rule for selector tag keys.
var tagKeyPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

type publishOptions struct {
	to, keyFile, pkg, name, model, out string
	deviceIDs, tags                    []string
	upgradeFrom                        []string
	steps, maxFailures                 string
	publicKeyConfigMap, stationKeyOut  string
	publicKeySecret                    string // removed: publicKeyRef names a ConfigMap
	store                              stores.Options
}

func (a *app) publishCommand() *cobra.Command {
	o := &publishOptions{store: stores.DefaultOptions()}
	cmd := &cobra.Command{
		Use:   "publish FILE --to URL --key KEY --package VERSION (--device-id ID... | --tag KEY=VALUE...)",
		Short: "Upload and sign firmware; print a ready FirmwareRollout",
		Long: `publish uploads FILE to firmware storage, signs it with the private key,
checks that the stored blob verifies, and prints (or writes with -o) a
FirmwareRollout manifest with the blob's url, the signature, the key's
keyChecksum and a selector from --device-id and --tag.

--to is ` + stores.Registry().Forms("") + `.
A --to URL ending in "/" gets FILE's name appended. An existing blob is never
replaced: a published firmware's signature is bound to its bytes, so publish a
new version under a new name.

Storage credentials come from files or the environment ($` + azblob.EnvAccountKey + `,
$` + azblob.EnvSASToken + `, $` + azblob.EnvConnectionString + `), never from flag values.`,
		Example: `  ` + a.commandName() + ` publish station-2.0.7.bin --to azblob://firmware/station/2.0.7/ \
      --azblob-account mystorage --key keys/sig-0.private.pem --package 2.0.7 \
      --tag ring=canary --model linux -o rollout.yaml`,
		Args: exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns := ""
			if f := cmd.Flags().Lookup("namespace"); f != nil && f.Changed {
				ns = f.Value.String()
			}
			return a.publish(cmd.Context(), args[0], o, ns)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.to, "to", "", "Where to upload: "+stores.Registry().Forms("")+" (required).")
	fs.StringVar(&o.keyFile, "key", "", "PEM private signing key, e.g. sig-0.private.pem (required).")
	fs.StringVar(&o.pkg, "package", "", "The version the station reports once updated (its version.txt) (required).")
	fs.StringVar(&o.name, "name", "", "The FirmwareRollout's name (default: fw-<package>).")
	fs.StringSliceVar(&o.deviceIDs, "device-id", nil, "Select a station by IoT Hub device id (16 hex digits); repeatable or comma-separated.")
	fs.StringArrayVar(&o.tags, "tag", nil, "Select stations whose twin tag KEY equals VALUE (KEY=VALUE); repeatable, all must match.")
	fs.StringVar(&o.model, "model", "", "Only update stations reporting this model (e.g. linux).")
	fs.StringArrayVar(&o.upgradeFrom, "upgrade-from", nil, "Only update stations reporting this package (firmware.upgradeFrom); repeatable. Others are skipped, not failed.")
	fs.StringVar(&o.steps, "steps", defaultSteps, `Comma-separated steps: a batch as a count or percentage, "pause" (until resumed) or "pause=DURATION".`)
	fs.StringVar(&o.maxFailures, "max-failures", defaultMaxFailures, "Halt the rollout when more stations than this fail: a count or a percentage.")
	fs.StringVar(&o.publicKeyConfigMap, "public-key-configmap", "", "CONFIGMAP/KEY of a ConfigMap in the rollout's namespace holding the public key (sig-N.key or PEM): the controller then verifies the signature before writing any twin.")
	fs.StringVar(&o.publicKeySecret, "public-key-secret", "", "Removed: use --public-key-configmap (a public key is not a secret).")
	_ = fs.MarkHidden("public-key-secret")
	fs.StringVar(&o.stationKeyOut, "station-key-out", "", "Where to write the signing key's station file sig-N.key (default: next to --key).")
	fs.StringVarP(&o.out, "output-file", "o", "", "Write the manifest to this file (never replaced) instead of stdout.")
	_ = cmd.MarkFlagRequired("to")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("package")

	gofs := flag.NewFlagSet("firmware", flag.ContinueOnError)
	o.store.BindFlags(gofs)
	fs.AddGoFlagSet(gofs)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "firmware-max-size" {
			f.Hidden = true // the manager's limit, not the CLI's
		}
		if f.Name == "firmware-dir" {
			f.Usage = "Local firmware directory for " + local.SchemeFile + ":// URLs (default: the --to file's directory)."
		}
	})
	return cmd
}

func (a *app) publish(ctx context.Context, file string, o *publishOptions, ns string) error {
	// Everything that can be wrong with the flags is found before the upload.
	manifest, err := o.manifest(ns)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(o.keyFile)
	if err != nil {
		return fmt.Errorf("read private key: %w", err)
	}
	priv, err := signing.ParsePrivateKeyPEM(raw)
	if err != nil {
		return fmt.Errorf("private key %s: %w (publish needs the private PEM key, e.g. sig-0.private.pem)", o.keyFile, err)
	}
	crc, err := signing.PublicKeyCRC(&priv.PublicKey)
	if err != nil {
		return fmt.Errorf("key CRC of %s: %w", o.keyFile, err)
	}
	if err := a.writeStationKey(o.keyFile, o.stationKeyOut, &priv.PublicKey); err != nil {
		return err
	}
	if o.out != "" {
		if _, err := os.Lstat(o.out); err == nil {
			return fmt.Errorf("%s already exists: choose another -o file or remove it first", o.out)
		}
	}
	target := o.to
	if strings.HasSuffix(target, "/") {
		target += url.PathEscape(filepath.Base(file))
	}
	// The URL goes into the manifest: refuse now what the API server would
	// refuse after the upload.
	if err := fwv1.ValidateFirmwareURL(target); err != nil {
		return fmt.Errorf("--to %s: %w", redactURL(target), oneLine(err))
	}
	if strings.HasPrefix(target, local.SchemeFile+"://") && o.store.Dir == "" {
		u, err := local.Backend.ParseURL(target)
		if err != nil {
			return fmt.Errorf("--to: %w", err)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return fmt.Errorf("--to %s: a relative file: URL needs --firmware-dir", target)
		}
		o.store.Dir = path.Dir(u.Path)
		if err := os.MkdirAll(o.store.Dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", o.store.Dir, err)
		}
	}
	store, err := stores.New(o.store)
	if err != nil {
		return fmt.Errorf("firmware storage: %w", err)
	}
	defer store.Close()

	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open firmware: %w", err)
	}
	defer f.Close()
	h := sha512.New()
	info, err := store.Upload(ctx, target, io.TeeReader(f, h), firmware.UploadOptions{})
	if err != nil {
		if errors.Is(err, firmware.ErrExists) {
			return fmt.Errorf("%s already exists and is never replaced (a published firmware's signature is bound to its bytes): publish under a new name, e.g. with the version in the path: %w", target, err)
		}
		return fmt.Errorf("upload %s: %w", file, err)
	}
	digest := h.Sum(nil)
	der, err := signing.SignDigest(priv, digest)
	if err != nil {
		return fmt.Errorf("sign %s: %w", file, err)
	}
	// Read the stored blob back: the signature must verify over what the
	// stations will download, not only over the local file.
	rc, _, err := store.Open(ctx, target)
	if err != nil {
		return fmt.Errorf("read back %s: %w", target, err)
	}
	err = signing.Verify(&priv.PublicKey, rc, der)
	_ = rc.Close()
	if err != nil {
		return fmt.Errorf("the stored blob %s does not verify against the signature of %s: %w", target, file, err)
	}
	fmt.Fprintf(a.Streams.ErrOut, "uploaded %s to %s (%d bytes), signed with key CRC %d; the stored blob verifies\n", file, target, info.Size, crc)

	fw := manifest["spec"].(map[string]any)["firmware"].(map[string]any)
	fw["url"] = target
	fw["signature"] = signing.EncodeSignature(der)
	fw["keyChecksum"] = int64(crc)
	body, err := yaml.Marshal(manifest)
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	doc := fmt.Sprintf("# Published by stationfleet: %s, %d bytes, sha512 %s\n%s", filepath.Base(file), info.Size, hex.EncodeToString(digest), body)
	a.printKeyConfigMapHint(o, ns)
	if o.out == "" {
		_, err := io.WriteString(a.Streams.Out, doc)
		return err
	}
	if err := writeNew(o.out, []byte(doc), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(a.Streams.ErrOut, "wrote %s: apply it with `kubectl apply -f %s`, or commit it to Git\n", o.out, o.out)
	return nil
}

// printKeyConfigMapHint tells how to create the ConfigMap that the
// manifest's publicKeyRef names, from the station key file publish wrote.
func (a *app) printKeyConfigMapHint(o *publishOptions, ns string) {
	name, key, ok := strings.Cut(o.publicKeyConfigMap, "/")
	if !ok {
		return
	}
	stationKey := o.stationKeyOut
	if stationKey == "" {
		stationKey = stationKeyPath(o.keyFile)
	}
	nsFlag := ""
	if ns != "" {
		nsFlag = " -n " + ns
	}
	fmt.Fprintf(a.Streams.ErrOut, "the controller verifies the signature with ConfigMap %s key %s before any twin is written: create it in the rollout's namespace with `kubectl%s create configmap %s --from-file=%s=%s`\n",
		name, key, nsFlag, name, key, stationKey)
}

// redactURL hides what may be a credential in a URL the user gave (user
// info, a query such as a SAS token, a fragment), for error messages.
func redactURL(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i] + raw[i:i+1] + "REDACTED"
	}
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		host, path, _ := strings.Cut(rest, "/")
		if i := strings.LastIndex(host, "@"); i >= 0 {
			raw = scheme + "://REDACTED" + host[i:] + "/" + path
		}
	}
	return raw
}

// oneLine joins the errors of errors.Join with "; ", for one line of output.
func oneLine(err error) error {
	return errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
}

// manifest builds the FirmwareRollout (without url, signature and
// keyChecksum) from the flags, checking them as the API would.
func (o *publishOptions) manifest(ns string) (map[string]any, error) {
	pkg := o.pkg
	if err := fwv1.ValidatePackage(pkg); err != nil {
		return nil, fmt.Errorf("--package %q: %w", pkg, oneLine(err))
	}
	if err := fwv1.ValidateModel(o.model); err != nil {
		return nil, fmt.Errorf("--model %q: %w", o.model, oneLine(err))
	}
	name := o.name
	if name == "" {
		name = "fw-" + dnsLabel(pkg)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, fmt.Errorf("--name %q: %s", name, strings.Join(errs, "; "))
	}
	sel := map[string]any{}
	var ids []any
	for _, id := range o.deviceIDs {
		id = strings.ToUpper(strings.NewReplacer(":", "", "-", "").Replace(strings.TrimSpace(id)))
		if !deviceIDPattern.MatchString(id) {
			return nil, fmt.Errorf("--device-id %q: use the station EUI as 16 hex digits, e.g. 001122FFFE334455", id)
		}
		ids = append(ids, id)
	}
	if len(ids) > 0 {
		sel["deviceIds"] = ids
	}
	tags := map[string]any{}
	for _, kv := range o.tags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !tagKeyPattern.MatchString(k) || len(v) > 128 {
			return nil, fmt.Errorf("--tag %q: use KEY=VALUE, KEY a letter then letters, digits or underscores, VALUE at most 128 characters", kv)
		}
		if k == "stationfleet" {
			return nil, fmt.Errorf("--tag %q: the tag stationfleet is reserved for the operator's own records", kv)
		}
		tags[k] = v
	}
	if len(tags) > 0 {
		sel["tags"] = tags
	}
	if len(sel) == 0 {
		return nil, errors.New("publish needs --device-id or --tag: a rollout must not select every station by accident")
	}
	steps, err := parseSteps(o.steps)
	if err != nil {
		return nil, err
	}
	fw := map[string]any{"package": pkg}
	if o.model != "" {
		fw["model"] = o.model
	}
	if len(o.upgradeFrom) > 0 {
		if err := fwv1.ValidateUpgradeFrom(o.upgradeFrom, pkg); err != nil {
			return nil, fmt.Errorf("--upgrade-from: %w", oneLine(err))
		}
		from := make([]any, len(o.upgradeFrom))
		for i, p := range o.upgradeFrom {
			from[i] = p
		}
		fw["upgradeFrom"] = from
	}
	if o.publicKeySecret != "" {
		return nil, fmt.Errorf("--public-key-secret is gone: publicKeyRef names a ConfigMap (a public key is not a secret, and the manager reads no Secrets); " +
			"create one with `kubectl create configmap NAME --from-file=sig-0.key=keys/sig-0.key` and use --public-key-configmap NAME/sig-0.key")
	}
	if o.publicKeyConfigMap != "" {
		name, key, ok := strings.Cut(o.publicKeyConfigMap, "/")
		if !ok || name == "" || key == "" {
			return nil, fmt.Errorf("--public-key-configmap %q: use CONFIGMAP/KEY", o.publicKeyConfigMap)
		}
		if err := fwv1.ValidatePublicKeyRef(fwv1.ConfigMapKeySelector{Name: name, Key: key}); err != nil {
			return nil, fmt.Errorf("--public-key-configmap %q: %w", o.publicKeyConfigMap, oneLine(err))
		}
		fw["publicKeyRef"] = map[string]any{"name": name, "key": key}
	}
	strategy := map[string]any{"steps": steps}
	if o.maxFailures != "" {
		mf, err := countOrPercent(o.maxFailures, 0)
		if err != nil {
			return nil, fmt.Errorf("--max-failures: %w", err)
		}
		strategy["maxFailures"] = mf
	}
	md := map[string]any{"name": name}
	if ns != "" {
		md["namespace"] = ns
	}
	m := map[string]any{
		"apiVersion": fwv1.GroupVersion.String(),
		"kind":       fwv1.FirmwareRolloutKind,
		"metadata":   md,
		"spec":       map[string]any{"firmware": fw, "selector": sel, "strategy": strategy},
	}
	// YAML cannot carry some characters (control characters in --model,
	// --package or a tag value): find out now, not after the upload.
	if _, err := yaml.Marshal(m); err != nil {
		return nil, fmt.Errorf("the flags hold characters a YAML manifest cannot carry: %w", err)
	}
	return m, nil
}

// parseSteps reads "1,10%,pause,pause=1h,100%".
func parseSteps(s string) ([]any, error) {
	var steps []any
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "pause":
			steps = append(steps, map[string]any{"pause": map[string]any{}})
		case strings.HasPrefix(part, "pause="):
			d := strings.TrimPrefix(part, "pause=")
			if err := checkDuration(d); err != nil {
				return nil, fmt.Errorf("--steps %q: %w", part, err)
			}
			steps = append(steps, map[string]any{"pause": map[string]any{"duration": d}})
		default:
			b, err := countOrPercent(part, 1)
			if err != nil {
				return nil, fmt.Errorf("--steps %q: %w (a batch is a count or a percentage; a pause is pause or pause=1h)", part, err)
			}
			steps = append(steps, map[string]any{"batch": b})
		}
	}
	if len(steps) == 0 || len(steps) > 32 {
		return nil, fmt.Errorf("--steps: 1 to 32 steps")
	}
	return steps, nil
}

// countOrPercent parses "5" (a count of at least min) or "5%" (0-100%).
// A percentage is written as the API's rule wants it, in its canonical
// form: "05%" and "+5%" are refused here rather than by the API server.
func countOrPercent(s string, min int) (any, error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || strconv.Itoa(n) != p || n < min || n > 100 {
			return nil, fmt.Errorf("%q is not a percentage from %d%% to 100%%", s, min)
		}
		return s, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min {
		return nil, fmt.Errorf("%q is not a count of at least %d", s, min)
	}
	return int64(n), nil
}

// dnsLabel turns a version into a name fragment: "2.0.7" is "2-0-7".
func dnsLabel(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 60 {
		out = strings.TrimRight(out[:60], "-")
	}
	return out
}

// checkDuration accepts what the API's duration pattern accepts.
func checkDuration(s string) error {
	if !durationPattern.MatchString(s) {
		return fmt.Errorf("duration %q: use a Go duration such as 30m, 2h or 1h30m", s)
	}
	return nil
}

// durationPattern is the API's pattern for durations.
var durationPattern = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`)
