package firmware

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"sync"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stationfleet/stationfleet/internal/signing"
)

// DefaultMaxSize is the default bound on firmware size: 128 MiB. It admits
// the largest images stationfleet is built for (64 MiB full-system updates)
// with twice the headroom, while a station writes the update to
// /tmp/update.bin, which is RAM-backed tmpfs on typical gateways with
// 256-512 MiB of memory: a bigger image is more likely a wrong blob than a
// firmware. The CUPS length prefix (4 bytes) would allow 4 GiB.
const DefaultMaxSize = 128 << 20

// maxDERSignature is the longest DER signature a station accepts: the
// signature segment (4-byte key CRC + DER) must be 8..132 bytes long.
// P-256 signatures are at most 72 bytes.
const maxDERSignature = 132 - 4

// verifiedCacheSize bounds the memory of verified firmware versions; it is
// far above the number of rollouts a manager has active at once.
const verifiedCacheSize = 1024

// Reasons a check fails, in CheckError.Reason.
const (
	ReasonNotFound     = "FirmwareNotFound"
	ReasonInvalidURL   = "InvalidFirmwareURL"
	ReasonAccessDenied = "FirmwareAccessDenied"
	ReasonTooLarge     = "FirmwareTooLarge"
	ReasonEmpty        = "FirmwareEmpty"
	ReasonBadKey       = "InvalidPublicKey"
	ReasonKeyMismatch  = "KeyChecksumMismatch"
	ReasonBadSignature = "SignatureInvalid"
	ReasonUnavailable  = "StorageUnavailable"
)

// Ref is the firmware a Checker checks: a rollout's spec.firmware with its
// public key read from the Secret.
type Ref struct {
	// URL is the blob's location, in one of the registered schemes.
	URL string
	// Signature is base64 of the DER ECDSA signature.
	Signature string
	// KeyChecksum is the CRC32 of the verifying sig-N.key.
	KeyChecksum uint32
	// PublicKey is the 64-byte sig-N.key, or nil when none was given.
	PublicKey []byte
}

// CheckError is a failed firmware check. Its message says what to fix;
// Reason is a CamelCase word for conditions and events.
type CheckError struct {
	// URL is the firmware checked.
	URL string
	// Reason is one of the Reason constants.
	Reason string
	// Message is the sentence for a person.
	Message string
	// Err is the underlying error, if any.
	Err error
}

// Error returns Message.
func (e *CheckError) Error() string { return e.Message }

// Unwrap returns the underlying error.
func (e *CheckError) Unwrap() error { return e.Err }

// Transient reports whether the check failed because storage was
// unavailable; the controller retries those instead of stalling.
func (e *CheckError) Transient() bool { return e.Reason == ReasonUnavailable }

// Checker checks a rollout's firmware before any twin is written. The
// controller's FirmwareChecker is adapted to it in internal/app.
type Checker struct {
	store   Store
	maxSize int64

	mu       sync.Mutex
	verified map[verifiedKey]struct{}
}

// CheckerOption configures a Checker.
type CheckerOption func(*Checker)

// WithMaxSize sets the largest firmware accepted, in bytes.
func WithMaxSize(n int64) CheckerOption {
	return func(c *Checker) { c.maxSize = n }
}

// NewChecker returns a Checker reading blobs from store.
func NewChecker(store Store, opts ...CheckerOption) *Checker {
	c := &Checker{store: store, maxSize: DefaultMaxSize, verified: map[verifiedKey]struct{}{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// verifiedKey identifies a (blob version, signature, key) that verified, so
// a reconcile does not download the same firmware again.
type verifiedKey struct {
	url, etag, signature, key string
}

// Check stats the blob, checks its size, and, when a public key is given,
// checks that the key matches KeyChecksum and that the signature verifies
// over the blob's content (SHA-512 streamed, ECDSA P-256), as the station
// will. A version that verified once is remembered by ETag.
func (c *Checker) Check(ctx context.Context, ref Ref) error {
	log := ctrllog.FromContext(ctx).WithValues("url", ref.URL)

	var der []byte
	if ref.Signature != "" {
		var err error
		der, err = signing.DecodeSignature(ref.Signature)
		if err != nil {
			return c.fail(ref, ReasonBadSignature, err, "fwSignature for firmware %s is not valid base64: copy it again from the signing output", ref.URL)
		}
		if len(der) < 8-4 || len(der) > maxDERSignature {
			return c.fail(ref, ReasonBadSignature, nil, "fwSignature for firmware %s is %d bytes of DER; a station accepts 4 to %d (a P-256 signature is about 70)", ref.URL, len(der), maxDERSignature)
		}
	}
	pub, err := c.checkKey(ref, der)
	if err != nil {
		return err
	}

	info, err := c.store.Stat(ctx, ref.URL)
	if err != nil {
		return c.storeError(ref, err)
	}
	if err := c.checkSize(ref, info.Size); err != nil {
		return err
	}
	if pub == nil {
		log.V(1).Info("firmware present; no public key to verify its signature with", "size", info.Size)
		return nil
	}

	key := verifiedKey{url: ref.URL, etag: info.ETag, signature: ref.Signature, key: string(ref.PublicKey)}
	if info.ETag != "" && c.isVerified(key) {
		return nil
	}

	r, size, err := c.store.Open(ctx, ref.URL)
	if err != nil {
		return c.storeError(ref, err)
	}
	defer func() { _ = r.Close() }()
	if err := c.checkSize(ref, size); err != nil {
		return err
	}
	v := signing.NewVerifier(pub, der)
	if _, err := io.Copy(v, r); err != nil {
		return c.storeError(ref, err)
	}
	if err := v.Verify(); err != nil {
		return c.fail(ref, ReasonBadSignature, err,
			"signature of firmware %s does not verify with the key whose CRC is %d: the blob changed or was signed with another key; re-sign this blob with that key or upload the blob that was signed",
			ref.URL, ref.KeyChecksum)
	}
	if vr, ok := r.(Versioned); ok && vr.ETag() == info.ETag {
		c.remember(key)
	}
	log.V(1).Info("firmware signature verified", "size", size, "keyChecksum", ref.KeyChecksum)
	return nil
}

// checkKey parses the public key and checks it against KeyChecksum and the
// presence of a signature. It returns nil, nil when no key was given.
func (c *Checker) checkKey(ref Ref, der []byte) (*ecdsa.PublicKey, error) {
	if ref.PublicKey == nil {
		return nil, nil
	}
	if len(ref.PublicKey) != signing.SigKeySize {
		return nil, c.fail(ref, ReasonBadKey, nil,
			"the public key for firmware %s is %d bytes; a sig-N.key is exactly %d bytes (raw X||Y of a P-256 key, the station's own file)", ref.URL, len(ref.PublicKey), signing.SigKeySize)
	}
	if crc := signing.KeyCRC(ref.PublicKey); crc != ref.KeyChecksum {
		return nil, c.fail(ref, ReasonKeyMismatch, nil,
			"fwKeyChecksum %d does not match the public key given for firmware %s, whose CRC is %d: they name different sig-N.key files; give the key that signed the firmware or set fwKeyChecksum to %d",
			ref.KeyChecksum, ref.URL, crc, crc)
	}
	pub, err := signing.ParseSigKey(ref.PublicKey)
	if err != nil {
		return nil, c.fail(ref, ReasonBadKey, err, "the public key for firmware %s (CRC %d) is not a P-256 point: %v", ref.URL, ref.KeyChecksum, err)
	}
	if len(der) == 0 {
		return nil, c.fail(ref, ReasonBadSignature, nil,
			"firmware %s has no fwSignature but a public key was given: stations holding keys refuse unsigned updates; sign the firmware", ref.URL)
	}
	return pub, nil
}

func (c *Checker) checkSize(ref Ref, size int64) error {
	switch {
	case size == 0:
		return c.fail(ref, ReasonEmpty, nil, "firmware %s is empty (0 bytes): upload the image again", ref.URL)
	case size > c.maxSize:
		return c.fail(ref, ReasonTooLarge, nil, "firmware %s is %d bytes (%.1f MiB), over the limit of %d bytes (%.1f MiB, --firmware-max-size): check that fwUrl names the firmware image",
			ref.URL, size, float64(size)/(1<<20), c.maxSize, float64(c.maxSize)/(1<<20))
	}
	return nil
}

// storeError turns a store error into a CheckError with an actionable
// message.
func (c *Checker) storeError(ref Ref, err error) error {
	var k *KindError
	detail := ""
	if errors.As(err, &k) {
		detail = k.Detail
	}
	switch {
	case IsTransient(err):
		return c.fail(ref, ReasonUnavailable, err, "firmware %s cannot be read now (will retry): %v", ref.URL, err)
	case errors.Is(err, ErrContainerNotFound):
		return c.fail(ref, ReasonNotFound, err, "firmware %s not found: %s; create the container and upload the firmware, or correct fwUrl", ref.URL, detail)
	case errors.Is(err, ErrNotFound):
		return c.fail(ref, ReasonNotFound, err, "firmware %s not found (%s): upload it or correct fwUrl", ref.URL, detail)
	case errors.Is(err, ErrAccessDenied):
		return c.fail(ref, ReasonAccessDenied, err, "firmware %s cannot be read: %s", ref.URL, detail)
	case errors.Is(err, ErrInvalidURL), errors.Is(err, ErrOutsideRoot):
		return c.fail(ref, ReasonInvalidURL, err, "fwUrl %s cannot be used: %v", ref.URL, errors.Unwrap(err))
	default:
		return c.fail(ref, ReasonUnavailable, err, "firmware %s cannot be read now (will retry): %v", ref.URL, err)
	}
}

func (c *Checker) fail(ref Ref, reason string, err error, format string, args ...any) *CheckError {
	return &CheckError{URL: ref.URL, Reason: reason, Err: err, Message: fmt.Sprintf(format, args...)}
}

func (c *Checker) isVerified(k verifiedKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.verified[k]
	return ok
}

func (c *Checker) remember(k verifiedKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.verified) >= verifiedCacheSize {
		clear(c.verified)
	}
	c.verified[k] = struct{}{}
}
