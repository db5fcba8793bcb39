package firmware

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Router is a Store that hands each URL to the store of the backend its
// scheme is registered to.
type Router struct {
	reg *Registry
	// stores maps each scheme of a configured backend to its store.
	stores map[string]Store
	// mounted are the configured stores, once each, in registration order.
	mounted []Store
}

var _ Store = (*Router)(nil)

// Mount pairs a registered backend with its configured store.
type Mount struct {
	// Backend is the backend, as registered.
	Backend *Backend
	// Store serves the backend's schemes.
	Store Store
}

// NewRouter returns a Router over reg's schemes, served by the mounted
// stores. A backend without a mount is not configured: URLs of its schemes
// are refused with an error saying how to configure it (Backend.Enable).
func NewRouter(reg *Registry, mounts ...Mount) (*Router, error) {
	r := &Router{reg: reg, stores: map[string]Store{}}
	for _, m := range mounts {
		if m.Store == nil || !slices.Contains(reg.backends, m.Backend) {
			return nil, fmt.Errorf("firmware router: backend %q is not registered or has no store", m.Backend.Name)
		}
		for _, s := range m.Backend.Schemes {
			if _, dup := r.stores[s.Name]; dup {
				return nil, fmt.Errorf("firmware router: backend %q mounted twice", m.Backend.Name)
			}
			r.stores[s.Name] = m.Store
		}
		r.mounted = append(r.mounted, m.Store)
	}
	return r, nil
}

// Registry returns the registry the router routes by.
func (r *Router) Registry() *Registry { return r.reg }

func (r *Router) pick(op, raw string) (Store, error) {
	scheme, _, ok := strings.Cut(raw, ":")
	if !ok {
		scheme = ""
	}
	b, err := r.reg.backendFor(strings.ToLower(scheme))
	if err != nil {
		return nil, &Error{Op: op, URL: raw, Err: fmt.Errorf("%w: %w", ErrInvalidURL, err)}
	}
	s, ok := r.stores[strings.ToLower(scheme)]
	if !ok {
		return nil, &Error{Op: op, URL: raw, Err: fmt.Errorf("%w: %s is not configured (%s)", ErrInvalidURL, b.Name, b.Enable)}
	}
	return s, nil
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

// Close releases the stores that hold resources (the local store's
// directory).
func (r *Router) Close() error {
	var errs []error
	for _, s := range r.mounted {
		if c, ok := s.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// SizeFlag returns a flag.Value for a byte size (67108864, 64Mi, 1Gi) stored
// in p; see ParseSize.
func SizeFlag(p *int64) flag.Value { return sizeValue{p} }

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
