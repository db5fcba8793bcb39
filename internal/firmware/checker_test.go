package firmware_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"fmt"
	"io"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/firmware/azblob"
	"github.com/stationfleet/stationfleet/internal/firmware/internal/fwtest"
	"github.com/stationfleet/stationfleet/internal/firmware/local"
	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
)

const mib = fwtest.MiB

var (
	pseudoRandom      = fwtest.PseudoRandom
	pseudoRandomBytes = fwtest.PseudoRandomBytes
	newAzureStore     = fwtest.NewAzureStore
)

type keyPair struct {
	priv   *ecdsa.PrivateKey
	sigKey []byte
	crc    uint32
}

func newKeyPair(t *testing.T) keyPair {
	t.Helper()
	priv, err := signing.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sigKey, err := signing.MarshalSigKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{priv: priv, sigKey: sigKey, crc: signing.KeyCRC(sigKey)}
}

func sign(t *testing.T, k keyPair, data []byte) string {
	t.Helper()
	der, err := signing.Sign(k.priv, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return signing.EncodeSignature(der)
}

// TestChecker runs the same cases against the local store and Azurite: a
// good signature passes; everything else fails with a sentence that says
// what to fix.
func TestChecker(t *testing.T) {
	ctx := context.Background()
	key, other := newKeyPair(t), newKeyPair(t)
	good := pseudoRandomBytes(7, 3*mib)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	goodSig := sign(t, key, good)
	otherSig := sign(t, other, good)

	a := azurite.Start(t)
	if err := a.CreateContainer(ctx, "firmware"); err != nil {
		t.Fatal(err)
	}
	dir, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dir.Close() })
	stores := []struct {
		name  string
		store firmware.Store
		base  string
	}{
		{name: "local", store: dir, base: "file:"},
		{name: "azurite", store: newAzureStore(t, a), base: "azblob://firmware/"},
	}

	for _, st := range stores {
		upload := func(name string, data []byte) string {
			url := st.base + name
			if _, err := st.store.Upload(ctx, url, bytes.NewReader(data), firmware.UploadOptions{Overwrite: true}); err != nil {
				t.Fatal(err)
			}
			return url
		}
		goodURL := upload("good.bin", good)
		flippedURL := upload("flipped.bin", flipped)
		emptyURL := upload("empty.bin", nil)
		missingURL := st.base + "missing.bin"

		tests := []struct {
			name      string
			ref       firmware.Ref
			maxSize   int64
			reason    string
			message   string
			transient bool
		}{
			{name: "good signature",
				ref: firmware.Ref{URL: goodURL, Signature: goodSig, KeyChecksum: key.crc, PublicKey: key.sigKey}},
			{name: "no key: only presence and size",
				ref: firmware.Ref{URL: goodURL, Signature: goodSig, KeyChecksum: key.crc}},
			{name: "flipped byte in the blob",
				ref:    firmware.Ref{URL: flippedURL, Signature: goodSig, KeyChecksum: key.crc, PublicKey: key.sigKey},
				reason: firmware.ReasonBadSignature,
				message: fmt.Sprintf("signature of firmware %s does not verify with the key whose CRC is %d: the blob changed or was signed with another key",
					flippedURL, key.crc)},
			{name: "signed with another key",
				ref:    firmware.Ref{URL: goodURL, Signature: otherSig, KeyChecksum: key.crc, PublicKey: key.sigKey},
				reason: firmware.ReasonBadSignature,
				message: fmt.Sprintf("signature of firmware %s does not verify with the key whose CRC is %d: the blob changed or was signed with another key",
					goodURL, key.crc)},
			{name: "key CRC mismatch",
				ref:    firmware.Ref{URL: goodURL, Signature: goodSig, KeyChecksum: other.crc, PublicKey: key.sigKey},
				reason: firmware.ReasonKeyMismatch,
				message: fmt.Sprintf("fwKeyChecksum %d does not match the public key given for firmware %s, whose CRC is %d: they name different sig-N.key files",
					other.crc, goodURL, key.crc)},
			{name: "missing blob",
				ref:     firmware.Ref{URL: missingURL, Signature: goodSig, KeyChecksum: key.crc, PublicKey: key.sigKey},
				reason:  firmware.ReasonNotFound,
				message: fmt.Sprintf("firmware %s not found", missingURL)},
			{name: "unsigned with a key",
				ref:     firmware.Ref{URL: goodURL, KeyChecksum: key.crc, PublicKey: key.sigKey},
				reason:  firmware.ReasonBadSignature,
				message: "has no fwSignature but a public key was given: stations holding keys refuse unsigned updates"},
			{name: "signature not base64",
				ref:     firmware.Ref{URL: goodURL, Signature: "not base64!", KeyChecksum: key.crc, PublicKey: key.sigKey},
				reason:  firmware.ReasonBadSignature,
				message: "is not valid base64"},
			{name: "key not 64 bytes",
				ref:     firmware.Ref{URL: goodURL, Signature: goodSig, KeyChecksum: key.crc, PublicKey: key.sigKey[:32]},
				reason:  firmware.ReasonBadKey,
				message: "is 32 bytes; a sig-N.key is exactly 64 bytes"},
			{name: "over the size bound", maxSize: 1 * mib,
				ref:     firmware.Ref{URL: goodURL},
				reason:  firmware.ReasonTooLarge,
				message: fmt.Sprintf("firmware %s is %d bytes (3.0 MiB), over the limit of %d bytes (1.0 MiB, --firmware-max-size)", goodURL, 3*mib, mib)},
			{name: "empty",
				ref:     firmware.Ref{URL: emptyURL},
				reason:  firmware.ReasonEmpty,
				message: "is empty (0 bytes)"},
		}
		for _, tt := range tests {
			t.Run(st.name+"/"+tt.name, func(t *testing.T) {
				g := NewWithT(t)
				var opts []firmware.CheckerOption
				if tt.maxSize != 0 {
					opts = append(opts, firmware.WithMaxSize(tt.maxSize))
				}
				err := firmware.NewChecker(st.store, opts...).Check(ctx, tt.ref)
				if tt.reason == "" {
					g.Expect(err).NotTo(HaveOccurred())
					return
				}
				var ce *firmware.CheckError
				g.Expect(err).To(BeAssignableToTypeOf(ce))
				ce = err.(*firmware.CheckError)
				g.Expect(ce.Reason).To(Equal(tt.reason))
				g.Expect(err.Error()).To(ContainSubstring(tt.message))
				g.Expect(firmware.IsTransient(err)).To(Equal(tt.transient))
			})
		}
	}

	t.Run("outage is transient", func(t *testing.T) {
		g := NewWithT(t)
		down := newAzureStore(t, a, func(o *azblob.Options) {
			o.Endpoint = "http://127.0.0.1:1/devstoreaccount1"
			o.MaxRetries = -1
		})
		err := firmware.NewChecker(down).Check(ctx, firmware.Ref{URL: "azblob://firmware/good.bin"})
		g.Expect(err).To(HaveOccurred())
		g.Expect(err.Error()).To(ContainSubstring("cannot be read now (will retry)"))
		g.Expect(firmware.IsTransient(err)).To(BeTrue())
	})

	t.Run("a verified version is not downloaded again; a new version is", func(t *testing.T) {
		g := NewWithT(t)
		counting := &countingStore{Store: dir}
		c := firmware.NewChecker(counting)
		url := "file:cached.bin"
		_, err := dir.Upload(ctx, url, bytes.NewReader(good), firmware.UploadOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		ref := firmware.Ref{URL: url, Signature: goodSig, KeyChecksum: key.crc, PublicKey: key.sigKey}
		g.Expect(c.Check(ctx, ref)).To(Succeed())
		g.Expect(c.Check(ctx, ref)).To(Succeed())
		g.Expect(counting.opens).To(Equal(1))
		_, err = dir.Upload(ctx, url, bytes.NewReader(flipped), firmware.UploadOptions{Overwrite: true})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.Check(ctx, ref)).To(MatchError(ContainSubstring("does not verify")))
		g.Expect(counting.opens).To(Equal(2))
	})
}

type countingStore struct {
	firmware.Store
	opens int
}

func (c *countingStore) Open(ctx context.Context, url string) (io.ReadCloser, int64, error) {
	c.opens++
	return c.Store.Open(ctx, url)
}
