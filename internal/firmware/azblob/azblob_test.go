package azblob_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	sdkblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/firmware/azblob"
	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
)

// TestAzureRoundTrip uploads a 64 MiB firmware through the real SDK into
// Azurite, stats it, lists it, and streams it back with its length known
// before the first byte and its bytes checked.
func TestAzureRoundTrip(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	a := azurite.Start(t)
	g.Expect(a.CreateContainer(ctx, "firmware")).To(Succeed())
	s := newAzureStore(t, a)

	const size = 64 * mib
	url := "azblob://firmware/station/2.0.7/update.bin"
	info, err := s.Upload(ctx, url, pseudoRandom(1, size), firmware.UploadOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.Size).To(BeEquivalentTo(size))
	g.Expect(info.ETag).NotTo(BeEmpty())

	st, err := s.Stat(ctx, url)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st.Size).To(BeEquivalentTo(size))
	g.Expect(st.ETag).To(Equal(info.ETag))

	// The same blob through its https (here: endpoint) URL.
	httpURL := a.Endpoint + "/firmware/station/2.0.7/update.bin"
	for _, u := range []string{url, httpURL} {
		r, n, err := s.Open(ctx, u)
		g.Expect(err).NotTo(HaveOccurred(), u)
		g.Expect(n).To(BeEquivalentTo(size), "size is known before the first byte")
		h := sha256.New()
		copied, err := io.Copy(h, r)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(r.Close()).To(Succeed())
		g.Expect(copied).To(BeEquivalentTo(size))
		want := hashOf(1, size)
		g.Expect(h.Sum(nil)).To(Equal(want[:]), "streamed bytes equal the uploaded bytes")
	}

	_, err = s.Upload(ctx, "azblob://firmware/station/2.0.8/update.bin", strings.NewReader("small"), firmware.UploadOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	list, err := s.List(ctx, "azblob://firmware/station/")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list).To(HaveLen(2))
	g.Expect(list[0].URL).To(Equal(url))
	g.Expect(list[0].Size).To(BeEquivalentTo(size))
	g.Expect(list[1].URL).To(Equal("azblob://firmware/station/2.0.8/update.bin"))
	list, err = s.List(ctx, a.Endpoint+"/firmware/station/2.0.8/")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list).To(HaveLen(1))
	g.Expect(list[0].URL).To(Equal(a.Endpoint + "/firmware/station/2.0.8/update.bin"))

	// A published firmware is not replaced by accident.
	_, err = s.Upload(ctx, url, strings.NewReader("other"), firmware.UploadOptions{})
	g.Expect(err).To(MatchError(firmware.ErrExists))
	_, err = s.Upload(ctx, url, strings.NewReader("other"), firmware.UploadOptions{Overwrite: true})
	g.Expect(err).NotTo(HaveOccurred())
	st, err = s.Stat(ctx, url)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st.Size).To(BeEquivalentTo(5))
}

// TestAzureErrors: each failure says which thing is wrong, and only outages
// are transient.
func TestAzureErrors(t *testing.T) {
	ctx := context.Background()
	a := azurite.Start(t)
	if err := a.CreateContainer(ctx, "firmware"); err != nil {
		t.Fatal(err)
	}
	good := newAzureStore(t, a)
	if _, err := good.Upload(ctx, "azblob://firmware/fw.bin", strings.NewReader("firmware"), firmware.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	wrongKey := newAzureStore(t, a, func(o *azblob.Options) {
		o.AccountKey = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ=="
	})
	down := newAzureStore(t, a, func(o *azblob.Options) {
		o.Endpoint = "http://127.0.0.1:1/devstoreaccount1" // nothing listens on port 1
		o.MaxRetries = -1
	})

	tests := []struct {
		name      string
		store     firmware.Store
		url       string
		is        error
		message   string
		transient bool
	}{
		{name: "missing blob", store: good, url: "azblob://firmware/nope.bin", is: firmware.ErrNotFound,
			message: `stat azblob://firmware/nope.bin: not found: no blob of that name in container "firmware"`},
		{name: "missing container", store: good, url: "azblob://nocontainer/fw.bin", is: firmware.ErrContainerNotFound,
			message: `stat azblob://nocontainer/fw.bin: container not found: container "nocontainer" does not exist in storage account devstoreaccount1`},
		{name: "wrong key", store: wrongKey, url: "azblob://firmware/fw.bin", is: firmware.ErrAccessDenied,
			message: "storage account devstoreaccount1 refused the"},
		{name: "service down", store: down, url: "azblob://firmware/fw.bin", transient: true,
			message: "connection refused"},
		{name: "other host", store: good, url: "https://example.com/firmware/fw.bin", is: firmware.ErrInvalidURL,
			message: "not under the configured blob endpoint"},
		{name: "other account with shared key", store: good, url: "https://otheraccount.blob.core.windows.net/firmware/fw.bin", is: firmware.ErrInvalidURL,
			message: "storage account otheraccount is not the configured account devstoreaccount1"},
		{name: "SAS in the URL", store: good, url: "azblob://firmware/fw.bin?sv=2020&sig=abc", is: firmware.ErrInvalidURL,
			message: "a SAS token or other credential belongs in the store configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			for _, op := range []string{"stat", "open"} {
				var err error
				if op == "stat" {
					_, err = tt.store.Stat(ctx, tt.url)
				} else {
					_, _, err = tt.store.Open(ctx, tt.url)
				}
				g.Expect(err).To(HaveOccurred(), op)
				if tt.is != nil {
					g.Expect(errors.Is(err, tt.is)).To(BeTrue(), "%s: %v", op, err)
				}
				msg := strings.Replace(tt.message, "stat ", op+" ", 1)
				g.Expect(err.Error()).To(ContainSubstring(msg), op)
				if tt.is == firmware.ErrAccessDenied {
					g.Expect(err.Error()).To(ContainSubstring("check the account key"), op)
				}
				g.Expect(firmware.IsTransient(err)).To(Equal(tt.transient), "%s transient: %v", op, err)
				g.Expect(err.Error()).NotTo(ContainSubstring(azurite.AccountKey))
			}
		})
	}
	// Missing blob and missing container are both "not found".
	_, err := good.Stat(ctx, "azblob://nocontainer/fw.bin")
	NewWithT(t).Expect(errors.Is(err, firmware.ErrNotFound)).To(BeTrue())
}

// TestAzureAuthModes: SAS tokens and connection strings reach the same blob
// as the shared key; secrets come from files and never show in String.
func TestAzureAuthModes(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	a := azurite.Start(t)
	g.Expect(a.CreateContainer(ctx, "firmware")).To(Succeed())
	_, err := newAzureStore(t, a).Upload(ctx, "azblob://firmware/fw.bin", strings.NewReader("firmware"), firmware.UploadOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	cred, err := sdkblob.NewSharedKeyCredential(azurite.Account, azurite.AccountKey)
	g.Expect(err).NotTo(HaveOccurred())
	perms := sas.AccountPermissions{Read: true, List: true}
	types := sas.AccountResourceTypes{Container: true, Object: true}
	q, err := sas.AccountSignatureValues{
		Protocol: sas.ProtocolHTTPSandHTTP, ExpiryTime: time.Now().Add(time.Hour),
		Permissions: perms.String(), ResourceTypes: types.String(),
	}.SignWithSharedKey(cred)
	g.Expect(err).NotTo(HaveOccurred())
	dir := t.TempDir()
	sasFile := dir + "/sas"
	connFile := dir + "/conn"
	g.Expect(writeFile(sasFile, q.Encode()+"\n")).To(Succeed())
	g.Expect(writeFile(connFile, a.ConnectionString())).To(Succeed())

	tests := []struct {
		name string
		opts azblob.Options
		auth string
	}{
		{name: "sas from file", auth: azblob.AuthSAS, opts: azblob.Options{
			Account: azurite.Account, Endpoint: a.Endpoint, Auth: azblob.AuthSAS, SASTokenFile: sasFile}},
		{name: "auto with a connection string file", auth: azblob.AuthSharedKey, opts: azblob.Options{
			Auth: azblob.AuthAuto, ConnectionStringFile: connFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			s, err := azblob.New(tt.opts)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.Auth()).To(Equal(tt.auth))
			r, n, err := s.Open(ctx, "azblob://firmware/fw.bin")
			g.Expect(err).NotTo(HaveOccurred())
			b, err := io.ReadAll(r)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(n).To(BeEquivalentTo(len("firmware")))
			g.Expect(string(b)).To(Equal("firmware"))
			printed := fmt.Sprintf("%v %+v %#v", tt.opts, tt.opts, tt.opts)
			g.Expect(printed).NotTo(ContainSubstring(azurite.AccountKey))
			g.Expect(printed).NotTo(ContainSubstring("sig="))
		})
	}
	t.Run("read-only SAS cannot upload", func(t *testing.T) {
		g := NewWithT(t)
		s, err := azblob.New(tests[0].opts)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = s.Upload(ctx, "azblob://firmware/new.bin", strings.NewReader("x"), firmware.UploadOptions{})
		g.Expect(err).To(MatchError(firmware.ErrAccessDenied))
	})
}

// TestAzureStreamConsistency: a stream delivers exactly the version it
// started on, or ends with an error; never a different length or mixed
// bytes.
func TestAzureStreamConsistency(t *testing.T) {
	ctx := context.Background()
	a := azurite.Start(t)
	if err := a.CreateContainer(ctx, "firmware"); err != nil {
		t.Fatal(err)
	}
	direct := newAzureStore(t, a)
	const size = 64 * mib
	const url = "azblob://firmware/fw.bin"
	upload := func(t *testing.T, seed uint64, n int64) {
		t.Helper()
		if _, err := direct.Upload(ctx, url, pseudoRandom(seed, n), firmware.UploadOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name      string
		overwrite bool
		cut       bool
		wantErr   error
	}{
		// The connection breaks and the blob is overwritten: the resume is
		// conditional on the first version's ETag and fails.
		{name: "overwritten mid-stream, connection broken", overwrite: true, cut: true, wantErr: firmware.ErrChanged},
		// The connection breaks, the blob is unchanged: resumed, exact bytes.
		{name: "connection broken, blob unchanged", cut: true},
		// Overwritten, connection intact: Azurite (like Azure) serves the
		// GET from the version it started on; the bytes are the old blob's.
		{name: "overwritten mid-stream, connection intact", overwrite: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			upload(t, 1, size)
			proxy := startCutProxy(t, fmt.Sprintf("127.0.0.1:%d", a.Port))
			s := newAzureStore(t, a, func(o *azblob.Options) {
				o.Endpoint = "http://" + proxy.Addr() + "/" + azurite.Account
			})
			r, n, err := s.Open(ctx, "http://"+proxy.Addr()+"/"+azurite.Account+"/firmware/fw.bin")
			g.Expect(err).NotTo(HaveOccurred())
			defer func() { _ = r.Close() }()
			g.Expect(n).To(BeEquivalentTo(size))
			h := sha256.New()
			_, err = io.CopyN(h, r, 1*mib)
			g.Expect(err).NotTo(HaveOccurred())
			if tt.overwrite {
				upload(t, 2, 3*mib) // a different length and content
			}
			if tt.cut {
				proxy.Cut()
			}
			rest, err := io.Copy(h, r)
			total := 1*mib + rest
			if tt.wantErr != nil {
				g.Expect(err).To(MatchError(tt.wantErr), "stream must end with an error")
				g.Expect(total).To(BeNumerically("<", size), "no more bytes than announced")
				g.Expect(firmware.IsTransient(err)).To(BeTrue(), "the next poll may try again")
				g.Expect(err.Error()).To(ContainSubstring("blob changed while streaming"))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(total).To(BeEquivalentTo(size))
			want := hashOf(1, size)
			g.Expect(h.Sum(nil)).To(Equal(want[:]), "exactly the version the stream started on")
		})
	}
}

func writeFile(name, content string) error {
	return writeBytes(name, []byte(content))
}
