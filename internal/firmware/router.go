package firmware

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Router is a Store that hands each URL to the store for its scheme:
// azblob, https and http to Azure, file to the local directory.
type Router struct {
	azure Store
	local Store
}

var _ Store = (*Router)(nil)

// NewRouter returns a Router over the given stores; either may be nil when
// that kind of storage is not configured, and URLs for it are refused with
// an error saying what to configure.
func NewRouter(azure, local Store) *Router {
	return &Router{azure: azure, local: local}
}

func (r *Router) pick(op, raw string) (Store, error) {
	scheme, _, ok := strings.Cut(raw, ":")
	if !ok {
		return nil, &Error{Op: op, URL: raw, Err: fmt.Errorf("%w: no scheme; want azblob://, https:// or file://", ErrInvalidURL)}
	}
	switch strings.ToLower(scheme) {
	case SchemeAzblob, SchemeHTTPS, SchemeHTTP:
		if r.azure == nil {
			return nil, &Error{Op: op, URL: raw, Err: fmt.Errorf("%w: Azure Blob storage is not configured (set --azblob-account or --azblob-endpoint)", ErrInvalidURL)}
		}
		return r.azure, nil
	case SchemeFile:
		if r.local == nil {
			return nil, &Error{Op: op, URL: raw, Err: fmt.Errorf("%w: no local firmware directory is configured (set --firmware-dir)", ErrInvalidURL)}
		}
		return r.local, nil
	default:
		return nil, &Error{Op: op, URL: raw, Err: fmt.Errorf("%w: unsupported scheme %q; want azblob://, https:// or file://", ErrInvalidURL, scheme)}
	}
}

// Open opens the blob in the store for its scheme.
func (r *Router) Open(ctx context.Context, url string) (io.ReadCloser, int64, error) {
	s, err := r.pick("open", url)
	if err != nil {
		return nil, 0, err
	}
	return s.Open(ctx, url)
}

// Stat stats the blob in the store for its scheme.
func (r *Router) Stat(ctx context.Context, url string) (Info, error) {
	s, err := r.pick("stat", url)
	if err != nil {
		return Info{}, err
	}
	return s.Stat(ctx, url)
}

// List lists in the store for the prefix's scheme.
func (r *Router) List(ctx context.Context, prefix string) ([]Info, error) {
	s, err := r.pick("list", prefix)
	if err != nil {
		return nil, err
	}
	return s.List(ctx, prefix)
}

// Upload uploads to the store for the URL's scheme.
func (r *Router) Upload(ctx context.Context, url string, rd io.Reader, opts UploadOptions) (Info, error) {
	s, err := r.pick("upload", url)
	if err != nil {
		return Info{}, err
	}
	return s.Upload(ctx, url, rd, opts)
}

// Close releases the local store's directory, if any.
func (r *Router) Close() error {
	if c, ok := r.local.(io.Closer); ok && c != nil {
		return c.Close()
	}
	return nil
}

// Options configure the stores and the checker of a program (manager, CLI).
type Options struct {
	// Azure configures Azure Blob storage; it is used when Configured.
	Azure AzureOptions
	// Dir is the local firmware directory for file:// URLs; empty disables
	// them.
	Dir string
	// MaxSize is the largest firmware the Checker accepts, in bytes.
	MaxSize int64
}

// DefaultOptions returns Options with defaults filled in.
func DefaultOptions() Options {
	return Options{Azure: DefaultAzureOptions(), MaxSize: DefaultMaxSize}
}

// BindFlags registers all options on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	o.Azure.BindFlags(fs)
	fs.StringVar(&o.Dir, "firmware-dir", o.Dir, "Local directory served for file:// firmware and credential URLs; empty disables file:// URLs.")
	fs.Var(sizeValue{&o.MaxSize}, "firmware-max-size", "Largest firmware a rollout may use, in bytes or with a Ki/Mi/Gi suffix.")
}

// NewStore builds the Router for the options: Azure when configured, the
// local directory when set.
func NewStore(o Options) (*Router, error) {
	var azure, local Store
	if o.Azure.Configured() {
		s, err := NewAzureStore(o.Azure)
		if err != nil {
			return nil, err
		}
		azure = s
	}
	if o.Dir != "" {
		s, err := NewLocalStore(o.Dir)
		if err != nil {
			return nil, err
		}
		local = s
	}
	if azure == nil && local == nil {
		return nil, errors.New("no firmware storage configured: set --azblob-account/--azblob-endpoint or --firmware-dir")
	}
	return NewRouter(azure, local), nil
}

// sizeValue is a flag.Value for byte sizes: 67108864, 64Mi, 1Gi.
type sizeValue struct{ p *int64 }

func (v sizeValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatInt(*v.p, 10)
}

func (v sizeValue) Set(s string) error {
	n, err := ParseSize(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

// ParseSize parses a byte count with an optional binary suffix Ki, Mi or Gi
// (64Mi = 67108864).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a non-negative byte count, optionally with Ki, Mi or Gi", s)
	}
	return n * mult, nil
}
