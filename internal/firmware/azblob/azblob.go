// Package azblob is the firmware store on Azure Blob Storage: azblob://
// URLs in the configured storage account, https:// blob URLs, and http://
// URLs under a configured http:// endpoint (the Azurite emulator). It
// authenticates with a shared key, a SAS token, a connection string or Azure
// AD, streams every blob with its exact size known before the first byte,
// and resumes a broken download only on the same blob version.
package azblob

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stationfleet/stationfleet/internal/firmware"
)

// Authentication modes for Options.Auth.
const (
	// AuthAuto picks, in order: a connection string, a shared key, a SAS
	// token, else Azure AD.
	AuthAuto = "auto"
	// AuthSharedKey signs requests with the storage account key.
	AuthSharedKey = "shared-key"
	// AuthSAS appends a SAS token to every request.
	AuthSAS = "sas"
	// AuthAzureAD uses azidentity's DefaultAzureCredential (workload
	// identity, managed identity, environment, Azure CLI ...).
	AuthAzureAD = "azure-ad"
)

// Environment variables read when the corresponding file flag is unset. They
// follow the names the Azure CLI and SDKs use.
const (
	EnvAccount          = "AZURE_STORAGE_ACCOUNT"
	EnvAccountKey       = "AZURE_STORAGE_KEY"
	EnvSASToken         = "AZURE_STORAGE_SAS_TOKEN"
	EnvConnectionString = "AZURE_STORAGE_CONNECTION_STRING"
)

// Defaults of Options. The retry values are azcore's own defaults
// (policy.RetryOptions), written out so the flags show them.
const (
	DefaultMaxRetries    = 3
	DefaultRetryDelay    = 800 * time.Millisecond
	DefaultMaxRetryDelay = 60 * time.Second
	// DefaultStreamRetries is how often a broken download is resumed (with
	// If-Match on the version being streamed) before Read fails.
	DefaultStreamRetries = 3
	// DefaultUploadBlockSize and DefaultUploadConcurrency bound upload
	// memory to their product (16 MiB) whatever the blob size.
	DefaultUploadBlockSize   = 4 << 20
	DefaultUploadConcurrency = 4
	// azureHostSuffix is the public cloud's blob host suffix; sovereign
	// clouds set Endpoint.
	azureHostSuffix = ".blob.core.windows.net"
)

// Options configure the Azure Blob store. Secrets are read from files
// (Kubernetes Secret volumes) or the environment, never from flags' values,
// and are never logged: String redacts them.
type Options struct {
	// Account is the storage account azblob:// URLs refer to.
	Account string
	// Endpoint is the blob service URL; empty means
	// https://<Account>.blob.core.windows.net. For Azurite:
	// http://127.0.0.1:10000/devstoreaccount1.
	Endpoint string
	// Auth is one of AuthAuto, AuthSharedKey, AuthSAS, AuthAzureAD.
	Auth string
	// AccountKeyFile, SASTokenFile and ConnectionStringFile name files that
	// hold the secret (trailing white space is trimmed).
	AccountKeyFile       string
	SASTokenFile         string
	ConnectionStringFile string
	// AccountKey, SASToken and ConnectionString are the secrets themselves,
	// for programs and tests; when empty they are read from the files above
	// or from EnvAccountKey, EnvSASToken, EnvConnectionString.
	AccountKey       string
	SASToken         string
	ConnectionString string
	// MaxRetries, RetryDelay, MaxRetryDelay and TryTimeout configure the
	// SDK's retry policy (policy.RetryOptions). TryTimeout covers reading
	// a whole response body, so leave it 0 (off) or above the slowest
	// firmware download.
	MaxRetries    int32
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	TryTimeout    time.Duration
	// StreamRetries is how many times a broken download is resumed.
	StreamRetries int32
	// UploadBlockSize and UploadConcurrency shape Upload.
	UploadBlockSize   int64
	UploadConcurrency int
	// Transport replaces the HTTP transport (tests); nil uses the SDK's.
	Transport policy.Transporter
}

// DefaultOptions returns the defaults, with Account from
// AZURE_STORAGE_ACCOUNT.
func DefaultOptions() Options {
	return Options{
		Account:           os.Getenv(EnvAccount),
		Auth:              AuthAuto,
		MaxRetries:        DefaultMaxRetries,
		RetryDelay:        DefaultRetryDelay,
		MaxRetryDelay:     DefaultMaxRetryDelay,
		StreamRetries:     DefaultStreamRetries,
		UploadBlockSize:   DefaultUploadBlockSize,
		UploadConcurrency: DefaultUploadConcurrency,
	}
}

// BindFlags registers the options on fs (prefix "azblob-").
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Account, "azblob-account", o.Account, "Azure storage account that azblob:// URLs refer to (default $"+EnvAccount+").")
	fs.StringVar(&o.Endpoint, "azblob-endpoint", o.Endpoint, "Blob service URL; empty means https://<account>.blob.core.windows.net (Azurite: http://127.0.0.1:10000/devstoreaccount1).")
	fs.StringVar(&o.Auth, "azblob-auth", o.Auth, "Authentication: auto, shared-key, sas or azure-ad (DefaultAzureCredential: workload/managed identity, environment, CLI).")
	fs.StringVar(&o.AccountKeyFile, "azblob-account-key-file", o.AccountKeyFile, "File holding the storage account key (default $"+EnvAccountKey+").")
	fs.StringVar(&o.SASTokenFile, "azblob-sas-token-file", o.SASTokenFile, "File holding a SAS token (default $"+EnvSASToken+").")
	fs.StringVar(&o.ConnectionStringFile, "azblob-connection-string-file", o.ConnectionStringFile, "File holding a storage connection string (default $"+EnvConnectionString+").")
	fs.Var(int32Value{&o.MaxRetries}, "azblob-max-retries", "SDK retry policy: retries per request (429, 5xx, network errors).")
	fs.DurationVar(&o.RetryDelay, "azblob-retry-delay", o.RetryDelay, "SDK retry policy: initial delay, doubled per retry.")
	fs.DurationVar(&o.MaxRetryDelay, "azblob-max-retry-delay", o.MaxRetryDelay, "SDK retry policy: longest delay between retries.")
	fs.DurationVar(&o.TryTimeout, "azblob-try-timeout", o.TryTimeout, "SDK retry policy: timeout of one try including the whole body; 0 = none. Must exceed the slowest firmware download.")
	fs.Var(int32Value{&o.StreamRetries}, "azblob-stream-retries", "Times a broken download is resumed (on the same blob version) before the stream fails.")
}

// String describes the options with secrets redacted.
func (o Options) String() string {
	set := func(s, file, env string) string {
		switch {
		case s != "":
			return "<set>"
		case file != "":
			return "file:" + file
		case os.Getenv(env) != "":
			return "$" + env
		}
		return "<none>"
	}
	return fmt.Sprintf("account=%s endpoint=%s auth=%s key=%s sas=%s connectionString=%s",
		o.Account, o.Endpoint, o.Auth,
		set(o.AccountKey, o.AccountKeyFile, EnvAccountKey),
		set(o.SASToken, o.SASTokenFile, EnvSASToken),
		set(o.ConnectionString, o.ConnectionStringFile, EnvConnectionString))
}

// GoString redacts like String, so %#v does not print secrets either.
func (o Options) GoString() string { return "azblob.Options{" + o.String() + "}" }

// Configured reports whether anything selects an Azure account.
func (o Options) Configured() bool {
	return o.Account != "" || o.Endpoint != "" || o.ConnectionString != "" || o.ConnectionStringFile != "" || os.Getenv(EnvConnectionString) != ""
}

// Store is a firmware.Store on Azure Blob Storage.
type Store struct {
	account  string
	endpoint *url.URL // service URL, path without trailing '/'
	auth     string
	client   *service.Client
	opts     Options
	clientOp *service.ClientOptions
	// cred serves other accounts' https:// URLs under Azure AD.
	cred azcore.TokenCredential

	mu     sync.Mutex
	others map[string]*service.Client
}

var _ firmware.Store = (*Store)(nil)

// New builds the store and its SDK client. It does not contact the service.
func New(o Options) (*Store, error) {
	if err := o.loadSecrets(); err != nil {
		return nil, err
	}
	if o.ConnectionString != "" && (o.Auth == AuthAuto || o.Auth == "") {
		if err := o.applyConnectionString(); err != nil {
			return nil, err
		}
	}
	auth := o.Auth
	if auth == "" || auth == AuthAuto {
		switch {
		case o.AccountKey != "":
			auth = AuthSharedKey
		case o.SASToken != "":
			auth = AuthSAS
		default:
			auth = AuthAzureAD
		}
	}
	if o.Endpoint == "" {
		if o.Account == "" {
			return nil, errors.New("azure blob store: set --azblob-account (or $" + EnvAccount + ") or --azblob-endpoint")
		}
		o.Endpoint = "https://" + o.Account + azureHostSuffix
	}
	ep, err := url.Parse(strings.TrimSuffix(o.Endpoint, "/"))
	if err != nil || (ep.Scheme != "https" && ep.Scheme != "http") || ep.Host == "" || ep.RawQuery != "" {
		return nil, fmt.Errorf("azure blob store: endpoint %q: want http(s)://host[/account] without a query", o.Endpoint)
	}
	if o.Account == "" {
		o.Account = accountFromEndpoint(ep)
	}
	if o.Account == "" {
		return nil, fmt.Errorf("azure blob store: cannot tell the account from endpoint %q; set --azblob-account", o.Endpoint)
	}

	s := &Store{
		account:  o.Account,
		endpoint: ep,
		auth:     auth,
		opts:     o,
		others:   map[string]*service.Client{},
		clientOp: &service.ClientOptions{ClientOptions: azcore.ClientOptions{
			Retry: policy.RetryOptions{
				MaxRetries:    o.MaxRetries,
				RetryDelay:    o.RetryDelay,
				MaxRetryDelay: o.MaxRetryDelay,
				TryTimeout:    o.TryTimeout,
			},
			Transport: o.Transport,
		}},
	}
	serviceURL := ep.String() + "/"
	switch auth {
	case AuthSharedKey:
		if o.AccountKey == "" {
			return nil, errors.New("azure blob store: shared-key authentication needs --azblob-account-key-file or $" + EnvAccountKey)
		}
		cred, err := service.NewSharedKeyCredential(o.Account, o.AccountKey)
		if err != nil {
			// The SDK's error names the key's encoding problem, not the key.
			return nil, fmt.Errorf("azure blob store: account key for %s: %w", o.Account, err)
		}
		s.client, err = service.NewClientWithSharedKeyCredential(serviceURL, cred, s.clientOp)
		if err != nil {
			return nil, fmt.Errorf("azure blob store: client: %w", err)
		}
	case AuthSAS:
		if o.SASToken == "" {
			return nil, errors.New("azure blob store: sas authentication needs --azblob-sas-token-file or $" + EnvSASToken)
		}
		s.client, err = service.NewClientWithNoCredential(serviceURL+"?"+strings.TrimPrefix(o.SASToken, "?"), s.clientOp)
		if err != nil {
			return nil, errors.New("azure blob store: client with SAS token: the token or endpoint is malformed")
		}
	case AuthAzureAD:
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("azure blob store: Azure AD credential: %w", err)
		}
		s.cred = cred
		s.client, err = service.NewClient(serviceURL, cred, s.clientOp)
		if err != nil {
			return nil, fmt.Errorf("azure blob store: client: %w", err)
		}
	default:
		return nil, fmt.Errorf("azure blob store: unknown authentication %q; want auto, shared-key, sas or azure-ad", o.Auth)
	}
	return s, nil
}

// Account returns the storage account that azblob:// URLs refer to.
func (s *Store) Account() string { return s.account }

// Auth returns the authentication mode in use.
func (s *Store) Auth() string { return s.auth }

// target is a resolved blob location.
type target struct {
	client    *service.Client
	account   string
	container string
	blob      string
	// base is how URLs in this form start, for List results.
	base string
}

func (t target) blobClient() *blob.Client {
	return t.client.NewContainerClient(t.container).NewBlobClient(t.blob)
}

// resolve maps a URL (or List prefix) to a client, container and blob name.
func (s *Store) resolve(raw string, prefix bool) (target, error) {
	u, err := Backend.ParseAny(raw, prefix)
	if err != nil {
		return target{}, err
	}
	if u.Scheme == SchemeAzblob {
		return target{client: s.client, account: s.account, container: u.Container, blob: u.Blob, base: SchemeAzblob + "://"}, nil
	}
	// http or https
	epPath := strings.TrimSuffix(s.endpoint.Path, "/")
	if u.Scheme == s.endpoint.Scheme && u.Host == strings.ToLower(s.endpoint.Host) && strings.HasPrefix(u.Path, epPath+"/") {
		c, b, err := splitContainer(strings.TrimPrefix(u.Path, epPath+"/"))
		if err != nil {
			return target{}, firmware.InvalidURL(raw, err)
		}
		return s.checkBlob(raw, target{client: s.client, account: s.account, container: c, blob: b, base: s.endpoint.String() + "/"}, prefix)
	}
	host := u.Host
	if u.Scheme == SchemeHTTPS && strings.HasSuffix(host, azureHostSuffix) && !strings.Contains(host, ":") {
		account := strings.TrimSuffix(host, azureHostSuffix)
		c, b, err := splitContainer(strings.TrimPrefix(u.Path, "/"))
		if err != nil {
			return target{}, firmware.InvalidURL(raw, err)
		}
		client, err := s.clientFor(account)
		if err != nil {
			return target{}, firmware.InvalidURL(raw, err)
		}
		return s.checkBlob(raw, target{client: client, account: account, container: c, blob: b, base: "https://" + host + "/"}, prefix)
	}
	return target{}, firmware.InvalidURL(raw, fmt.Errorf("not under the configured blob endpoint %s nor an https://<account>%s URL", s.endpoint, azureHostSuffix))
}

func (s *Store) checkBlob(raw string, t target, prefix bool) (target, error) {
	check := checkBlobName
	if prefix {
		check = checkPrefix
	}
	if err := check(t.blob); err != nil {
		return target{}, firmware.InvalidURL(raw, err)
	}
	return t, nil
}

// clientFor returns the client for another account's https:// URL: only
// Azure AD credentials reach more than one account.
func (s *Store) clientFor(account string) (*service.Client, error) {
	if account == s.account {
		return s.client, nil
	}
	if s.cred == nil {
		return nil, fmt.Errorf("storage account %s is not the configured account %s, and %s credentials only reach that one", account, s.account, s.auth)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.others[account]; ok {
		return c, nil
	}
	c, err := service.NewClient("https://"+account+azureHostSuffix+"/", s.cred, s.clientOp)
	if err != nil {
		return nil, fmt.Errorf("client for storage account %s: %w", account, err)
	}
	s.others[account] = c
	return c, nil
}

func (s *Store) fail(op, raw string, t target, err error) error {
	return classify(op, raw, t.container, t.account, err)
}

// Open starts one GET of the whole blob; its Content-Length is the size. The
// body is wrapped in the SDK's retry reader, which resumes a broken
// connection with a ranged GET conditioned on the ETag of the first response
// (If-Match): if the blob was overwritten meanwhile the resume fails with 412
// and Read returns an error wrapping ErrChanged. A final check refuses a body
// shorter or longer than announced.
func (s *Store) Open(ctx context.Context, raw string) (io.ReadCloser, int64, error) {
	t, err := s.resolve(raw, false)
	if err != nil {
		return nil, 0, &firmware.Error{Op: "open", URL: raw, Err: err}
	}
	resp, err := t.blobClient().DownloadStream(ctx, nil)
	if err != nil {
		return nil, 0, s.fail("open", raw, t, err)
	}
	if resp.ContentLength == nil || *resp.ContentLength < 0 || resp.ETag == nil {
		_ = resp.Body.Close()
		return nil, 0, &firmware.Error{Op: "open", URL: raw, Err: errors.New("the service sent no Content-Length or ETag")}
	}
	size := *resp.ContentLength
	etag := string(*resp.ETag)
	log := ctrllog.FromContext(ctx).WithValues("url", raw)
	rr := resp.NewRetryReader(ctx, &blob.RetryReaderOptions{
		MaxRetries: s.opts.StreamRetries,
		OnFailedRead: func(failures int32, lastErr error, rng blob.HTTPRange, willRetry bool) {
			log.Info("blob download interrupted", "failures", failures, "offset", rng.Offset, "willResume", willRetry, "error", lastErr.Error())
		},
	})
	r := &azureReader{rr: rr, etag: etag}
	r.cr = firmware.ExactReader{R: readFunc(func(p []byte) (int, error) {
		n, err := rr.Read(p)
		if err != nil && err != io.EOF {
			err = s.fail("read", raw, t, err)
			var se *firmware.Error
			if errors.As(err, &se) && !errors.Is(se.Err, firmware.ErrChanged) {
				// The stream broke for good: whatever the cause, the
				// next attempt starts over.
				se.Err = firmware.Kind(firmware.ErrInterrupted, fmt.Sprintf("after %d of %d bytes", r.cr.Delivered()+int64(n), size), se.Err)
				se.Outage = true
			}
		}
		return n, err
	}), Size: size, Describe: func(got int64, long bool) error {
		what := "ended early"
		if long {
			what = "ran past its announced end"
		}
		return &firmware.Error{Op: "read", URL: raw, Outage: true,
			Err: firmware.Kind(firmware.ErrChanged, fmt.Sprintf("download %s: %d bytes against a Content-Length of %d", what, got, size), nil)}
	}}
	return r, size, nil
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// azureReader is the stream Open returns.
type azureReader struct {
	rr   *blob.RetryReader
	cr   firmware.ExactReader
	etag string
}

func (r *azureReader) Read(p []byte) (int, error) { return r.cr.Read(p) }
func (r *azureReader) Close() error               { return r.rr.Close() }
func (r *azureReader) ETag() string               { return r.etag }

// Stat reads the blob's properties.
func (s *Store) Stat(ctx context.Context, raw string) (firmware.Info, error) {
	t, err := s.resolve(raw, false)
	if err != nil {
		return firmware.Info{}, &firmware.Error{Op: "stat", URL: raw, Err: err}
	}
	p, err := t.blobClient().GetProperties(ctx, nil)
	if err != nil {
		return firmware.Info{}, s.fail("stat", raw, t, err)
	}
	info := firmware.Info{URL: raw}
	if p.ContentLength != nil {
		info.Size = *p.ContentLength
	}
	if p.ETag != nil {
		info.ETag = string(*p.ETag)
	}
	if p.LastModified != nil {
		info.LastModified = *p.LastModified
	}
	return info, nil
}

// List lists the blobs of one container whose names start with the
// prefix's blob part.
func (s *Store) List(ctx context.Context, prefix string) ([]firmware.Info, error) {
	t, err := s.resolve(prefix, true)
	if err != nil {
		return nil, &firmware.Error{Op: "list", URL: prefix, Err: err}
	}
	opts := &container.ListBlobsFlatOptions{}
	if t.blob != "" {
		opts.Prefix = &t.blob
	}
	var out []firmware.Info
	pager := t.client.NewContainerClient(t.container).NewListBlobsFlatPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, s.fail("list", prefix, t, err)
		}
		for _, item := range page.Segment.BlobItems {
			if item.Name == nil {
				continue
			}
			info := firmware.Info{URL: t.base + t.container + "/" + escapeBlobPath(*item.Name)}
			if t.base == SchemeAzblob+"://" {
				info.URL = t.base + t.container + "/" + *item.Name
			}
			if p := item.Properties; p != nil {
				if p.ContentLength != nil {
					info.Size = *p.ContentLength
				}
				if p.ETag != nil {
					info.ETag = string(*p.ETag)
				}
				if p.LastModified != nil {
					info.LastModified = *p.LastModified
				}
			}
			out = append(out, info)
		}
	}
	return out, nil
}

// Upload streams r into a block blob with bounded memory
// (UploadBlockSize x UploadConcurrency). Without Overwrite it sends
// If-None-Match: * so an existing blob is never replaced.
func (s *Store) Upload(ctx context.Context, raw string, r io.Reader, opts firmware.UploadOptions) (firmware.Info, error) {
	t, err := s.resolve(raw, false)
	if err != nil {
		return firmware.Info{}, &firmware.Error{Op: "upload", URL: raw, Err: err}
	}
	uo := &blockblob.UploadStreamOptions{
		BlockSize:   s.opts.UploadBlockSize,
		Concurrency: s.opts.UploadConcurrency,
	}
	if !opts.Overwrite {
		anyETag := azcore.ETagAny
		uo.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: &anyETag}}
	}
	cr := &byteCounter{r: r}
	bb := t.client.NewContainerClient(t.container).NewBlockBlobClient(t.blob)
	resp, err := bb.UploadStream(ctx, cr, uo)
	if err != nil {
		return firmware.Info{}, s.fail("upload", raw, t, err)
	}
	info := firmware.Info{URL: raw, Size: cr.n}
	if resp.ETag != nil {
		info.ETag = string(*resp.ETag)
	}
	if resp.LastModified != nil {
		info.LastModified = *resp.LastModified
	}
	ctrllog.FromContext(ctx).V(1).Info("uploaded blob", "url", raw, "size", cr.n)
	return info, nil
}

type byteCounter struct {
	r io.Reader
	n int64
}

func (c *byteCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// loadSecrets fills empty secrets from their files, then the environment.
func (o *Options) loadSecrets() error {
	for _, sec := range []struct {
		val        *string
		file, env  string
		what, flag string
	}{
		{&o.AccountKey, o.AccountKeyFile, EnvAccountKey, "account key", "azblob-account-key-file"},
		{&o.SASToken, o.SASTokenFile, EnvSASToken, "SAS token", "azblob-sas-token-file"},
		{&o.ConnectionString, o.ConnectionStringFile, EnvConnectionString, "connection string", "azblob-connection-string-file"},
	} {
		if *sec.val != "" {
			continue
		}
		if sec.file != "" {
			b, err := os.ReadFile(sec.file)
			if err != nil {
				// The path is not secret; the content never appears.
				return fmt.Errorf("azure blob store: read %s from --%s: %w", sec.what, sec.flag, err)
			}
			*sec.val = strings.TrimSpace(string(b))
			continue
		}
		*sec.val = strings.TrimSpace(os.Getenv(sec.env))
	}
	return nil
}

// applyConnectionString takes account, key, SAS and endpoint from a
// connection string (AccountName=...;AccountKey=...;BlobEndpoint=...).
func (o *Options) applyConnectionString() error {
	fields := map[string]string{}
	for _, part := range strings.Split(o.ConnectionString, ";") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return errors.New("azure blob store: connection string: a part is not key=value")
		}
		fields[strings.ToLower(k)] = v
	}
	if v := fields["accountname"]; v != "" {
		o.Account = v
	}
	if v := fields["accountkey"]; v != "" && o.AccountKey == "" {
		o.AccountKey = v
	}
	if v := fields["sharedaccesssignature"]; v != "" && o.SASToken == "" {
		o.SASToken = v
	}
	if v := fields["blobendpoint"]; v != "" && o.Endpoint == "" {
		o.Endpoint = v
	} else if o.Endpoint == "" && o.Account != "" {
		proto := fields["defaultendpointsprotocol"]
		if proto == "" {
			proto = "https"
		}
		suffix := fields["endpointsuffix"]
		if suffix == "" {
			suffix = "core.windows.net"
		}
		o.Endpoint = proto + "://" + o.Account + ".blob." + suffix
	}
	return nil
}

// accountFromEndpoint reads the account from https://<account>.blob.<suffix>
// or from an emulator's path-style http://host:port/<account>.
func accountFromEndpoint(ep *url.URL) string {
	if name, _, ok := strings.Cut(ep.Hostname(), ".blob."); ok {
		return name
	}
	return strings.Trim(ep.Path, "/")
}

// int32Value is a flag.Value for int32 fields.
type int32Value struct{ p *int32 }

func (v int32Value) String() string {
	if v.p == nil {
		return "0"
	}
	return fmt.Sprint(*v.p)
}

func (v int32Value) Set(s string) error {
	var n int32
	if _, err := fmt.Sscan(s, &n); err != nil {
		return fmt.Errorf("not an integer: %q", s)
	}
	*v.p = n
	return nil
}
