package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/controllers"
	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/signing"
)

// fakeStore is a firmware.Store with one func field per method; an unset
// method returns an error.
type fakeStore struct {
	OpenFn   func(ctx context.Context, url string) (io.ReadCloser, int64, error)
	StatFn   func(ctx context.Context, url string) (firmware.Info, error)
	ListFn   func(ctx context.Context, prefix string) ([]firmware.Info, error)
	UploadFn func(ctx context.Context, url string, r io.Reader, opts firmware.UploadOptions) (firmware.Info, error)
}

var _ firmware.Store = &fakeStore{}

var errUnset = errors.New("fakeStore: method not set")

func (f *fakeStore) Open(ctx context.Context, url string) (io.ReadCloser, int64, error) {
	if f.OpenFn == nil {
		return nil, 0, errUnset
	}
	return f.OpenFn(ctx, url)
}

func (f *fakeStore) Stat(ctx context.Context, url string) (firmware.Info, error) {
	if f.StatFn == nil {
		return firmware.Info{}, errUnset
	}
	return f.StatFn(ctx, url)
}

func (f *fakeStore) List(ctx context.Context, prefix string) ([]firmware.Info, error) {
	if f.ListFn == nil {
		return nil, errUnset
	}
	return f.ListFn(ctx, prefix)
}

func (f *fakeStore) Upload(ctx context.Context, url string, r io.Reader, opts firmware.UploadOptions) (firmware.Info, error) {
	if f.UploadFn == nil {
		return firmware.Info{}, errUnset
	}
	return f.UploadFn(ctx, url, r, opts)
}

// blobStore serves data at every URL.
func blobStore(data []byte) *fakeStore {
	return &fakeStore{
		StatFn: func(_ context.Context, url string) (firmware.Info, error) {
			return firmware.Info{URL: url, Size: int64(len(data))}, nil
		},
		OpenFn: func(context.Context, string) (io.ReadCloser, int64, error) {
			return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
		},
	}
}

// TestFirmwareCheckerAdapter: the controller's FirmwareChecker over
// firmware.Checker passes every field of the ref on, marks a store outage
// with controllers.ErrFirmwareUnavailable (so the controller retries soon)
// without changing the message the rollout's condition shows, and leaves
// every other failure (a bad signature, a missing blob) unmarked, so it
// stalls the rollout.
func TestFirmwareCheckerAdapter(t *testing.T) {
	ctx := context.Background()
	priv, err := signing.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sigKey, err := signing.MarshalSigKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	good := []byte("firmware image")
	der, err := signing.Sign(priv, bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	const url = "azblob://firmware/fw.bin"
	ref := controllers.FirmwareRef{URL: url, Signature: signing.EncodeSignature(der), KeyChecksum: signing.KeyCRC(sigKey), PublicKey: sigKey}
	outage := &fakeStore{StatFn: func(_ context.Context, url string) (firmware.Info, error) {
		return firmware.Info{}, &firmware.Error{Op: "stat", URL: url, Err: errors.New("dial tcp 127.0.0.1:10000: connect: connection refused"), Outage: true}
	}}
	missing := &fakeStore{StatFn: func(_ context.Context, url string) (firmware.Info, error) {
		return firmware.Info{}, &firmware.Error{Op: "stat", URL: url, Err: firmware.Kind(firmware.ErrNotFound, `no blob of that name in container "firmware"`, nil)}
	}}

	tests := []struct {
		name        string
		store       firmware.Store
		ref         controllers.FirmwareRef
		reason      string
		unavailable bool
		message     string
	}{
		{name: "good signature: every field of the ref reaches the checker", store: blobStore(good), ref: ref},
		{name: "store unavailable", store: outage, ref: ref, reason: firmware.ReasonUnavailable, unavailable: true,
			message: "firmware azblob://firmware/fw.bin cannot be read now (will retry): stat azblob://firmware/fw.bin: dial tcp 127.0.0.1:10000: connect: connection refused"},
		{name: "bad signature", store: blobStore([]byte("another image")), ref: ref, reason: firmware.ReasonBadSignature,
			message: "signature of firmware azblob://firmware/fw.bin does not verify with the key whose CRC is"},
		{name: "key checksum of another key", store: blobStore(good), reason: firmware.ReasonKeyMismatch,
			ref:     controllers.FirmwareRef{URL: url, Signature: ref.Signature, KeyChecksum: ref.KeyChecksum + 1, PublicKey: sigKey},
			message: "does not match the public key given"},
		{name: "missing blob", store: missing, ref: ref, reason: firmware.ReasonNotFound,
			message: "firmware azblob://firmware/fw.bin not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := newFirmwareChecker(tt.store, 0).Check(ctx, tt.ref)
			if tt.reason == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(HaveOccurred())
			g.Expect(errors.Is(err, controllers.ErrFirmwareUnavailable)).To(Equal(tt.unavailable))
			var ce *firmware.CheckError
			g.Expect(errors.As(err, &ce)).To(BeTrue(), "the checker's error is still reachable")
			g.Expect(ce.Reason).To(Equal(tt.reason))
			g.Expect(err.Error()).To(ContainSubstring(tt.message))
			// What the rollout's FirmwareVerified condition shows is the
			// checker's sentence, not the sentinel's words added to it.
			g.Expect(err.Error()).To(Equal(ce.Message))
			g.Expect(strings.Count(err.Error(), controllers.ErrFirmwareUnavailable.Error())).To(BeZero())
		})
	}

	t.Run("max size is passed on", func(t *testing.T) {
		g := NewWithT(t)
		err := newFirmwareChecker(blobStore(good), 4).Check(ctx, controllers.FirmwareRef{URL: url})
		var ce *firmware.CheckError
		g.Expect(errors.As(err, &ce)).To(BeTrue())
		g.Expect(ce.Reason).To(Equal(firmware.ReasonTooLarge))
		g.Expect(errors.Is(err, controllers.ErrFirmwareUnavailable)).To(BeFalse())
	})
}
