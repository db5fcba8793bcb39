package firmware

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Scheme is one URL scheme a Backend serves.
type Scheme struct {
	// Name is the scheme without "://", lower case: "azblob".
	Name string
	// Form shows a URL of the scheme in help texts, with upper-case
	// placeholders: "azblob://CONTAINER/PATH".
	Form string
	// EndpointOnly marks a scheme served only under a configured endpoint
	// (http:// for the Azurite emulator). A rollout never names one: the
	// API refuses it, and Registry.Schemes and the messages built from it
	// leave it out.
	EndpointOnly bool
}

// Backend describes one kind of blob storage: the URL schemes it serves, how
// to configure it, and how to parse its URLs. Each backend package exports
// one (azblob.Backend, local.Backend); a Registry holds them all.
type Backend struct {
	// Name names the backend in messages: "Azure Blob Storage".
	Name string
	// Schemes are the URL schemes it serves, in the order messages list
	// them.
	Schemes []Scheme
	// Enable says how to configure it, for the error a URL of its schemes
	// gets when it is not: "set --azblob-account or --azblob-endpoint".
	Enable string
	// Parse checks a URL of one of Schemes (u.Scheme, lower case) after the
	// checks every blob URL gets, without knowing the store's
	// configuration. A List prefix (prefix true) may end with '/' or name
	// nothing below the container or directory. The error is the reason
	// the URL is refused; ParseURL wraps it with ErrInvalidURL.
	Parse func(u *url.URL, prefix bool) (BlobURL, error)
}

// Serves reports whether scheme (lower case) is one of b's.
func (b *Backend) Serves(scheme string) bool {
	return slices.ContainsFunc(b.Schemes, func(s Scheme) bool { return s.Name == scheme })
}

// ParseURL parses a blob URL of one of b's schemes. It refuses URLs carrying
// credentials (user info, a query such as a SAS token: those belong in the
// store configuration, never in a twin or a rollout), fragments, "." and
// ".." segments and whatever b.Parse refuses, with an error wrapping
// ErrInvalidURL.
func (b *Backend) ParseURL(raw string) (BlobURL, error) { return b.parse(raw, false) }

// ParsePrefix parses a URL prefix for Store.List: like ParseURL, but the
// blob name or path may be empty or end with '/'.
func (b *Backend) ParsePrefix(raw string) (BlobURL, error) { return b.parse(raw, true) }

// ParseAny is ParsePrefix when prefix is true (a List prefix), ParseURL
// otherwise.
func (b *Backend) ParseAny(raw string, prefix bool) (BlobURL, error) { return b.parse(raw, prefix) }

func (b *Backend) parse(raw string, prefix bool) (BlobURL, error) {
	u, err := checkURL(raw)
	if err != nil {
		return BlobURL{}, InvalidURL(raw, err)
	}
	if !b.Serves(u.Scheme) {
		return BlobURL{}, InvalidURL(raw, fmt.Errorf("%s serves %s URLs", b.Name, join(b.schemes(false), "and")))
	}
	bu, err := b.Parse(u, prefix)
	if err != nil {
		return BlobURL{}, InvalidURL(raw, err)
	}
	return bu, nil
}

// schemes returns b's scheme names, with the endpoint-only ones when all.
func (b *Backend) schemes(all bool) []string {
	var out []string
	for _, s := range b.Schemes {
		if all || !s.EndpointOnly {
			out = append(out, s.Name)
		}
	}
	return out
}

// Registry maps each URL scheme to the backend that serves it. It is the one
// place the schemes come from: the Router's choice, the errors for an
// unknown or unconfigured scheme, and the help texts are built from it, and a
// test holds the API's firmware.url rule to it.
type Registry struct {
	backends []*Backend
	byScheme map[string]*Backend
}

// NewRegistry returns the registry of the given backends. A scheme served by
// two backends, or a backend without schemes or a parser, is an error.
func NewRegistry(backends ...*Backend) (*Registry, error) {
	r := &Registry{byScheme: map[string]*Backend{}}
	for _, b := range backends {
		if len(b.Schemes) == 0 || b.Parse == nil {
			return nil, fmt.Errorf("firmware backend %q: needs schemes and a parser", b.Name)
		}
		for _, s := range b.Schemes {
			if s.Name == "" || s.Name != strings.ToLower(s.Name) || strings.Contains(s.Name, ":") {
				return nil, fmt.Errorf("firmware backend %q: scheme %q: want a lower-case scheme name without ':'", b.Name, s.Name)
			}
			if other, ok := r.byScheme[s.Name]; ok {
				return nil, fmt.Errorf("firmware backends %q and %q both serve %s://", other.Name, b.Name, s.Name)
			}
			r.byScheme[s.Name] = b
		}
		r.backends = append(r.backends, b)
	}
	return r, nil
}

// Backends returns the registered backends in registration order.
func (r *Registry) Backends() []*Backend { return slices.Clone(r.backends) }

// Lookup returns the backend serving scheme (any case).
func (r *Registry) Lookup(scheme string) (*Backend, bool) {
	b, ok := r.byScheme[strings.ToLower(scheme)]
	return b, ok
}

// Schemes returns the schemes a rollout's firmware.url may use (every
// registered scheme but the endpoint-only ones), in registration order.
func (r *Registry) Schemes() []string {
	var out []string
	for _, b := range r.backends {
		out = append(out, b.schemes(false)...)
	}
	return out
}

// Want lists Schemes for messages: "azblob://, https:// or file://".
func (r *Registry) Want() string { return join(r.Schemes(), "or") }

// Forms lists each scheme's Form with suffix appended, for help texts:
// "azblob://CONTAINER/PATH, ... or file:///PATH".
func (r *Registry) Forms(suffix string) string {
	var forms []string
	for _, b := range r.backends {
		for _, s := range b.Schemes {
			if !s.EndpointOnly {
				forms = append(forms, s.Form+suffix)
			}
		}
	}
	return joinWords(forms, "or")
}

// ParseURL parses and validates a blob URL of any registered scheme without
// knowing the stores' configuration; see Backend.ParseURL. An unknown
// scheme is refused with an error listing the registered ones.
func (r *Registry) ParseURL(raw string) (BlobURL, error) { return r.parse(raw, false) }

// ParsePrefix is ParseURL for Store.List prefixes; see Backend.ParsePrefix.
func (r *Registry) ParsePrefix(raw string) (BlobURL, error) { return r.parse(raw, true) }

func (r *Registry) parse(raw string, prefix bool) (BlobURL, error) {
	u, err := checkURL(raw)
	if err != nil {
		return BlobURL{}, InvalidURL(raw, err)
	}
	b, err := r.backendFor(u.Scheme)
	if err != nil {
		return BlobURL{}, InvalidURL(raw, err)
	}
	return b.parse(raw, prefix)
}

// backendFor returns the backend for a scheme, or the reason there is none.
func (r *Registry) backendFor(scheme string) (*Backend, error) {
	if scheme == "" {
		return nil, fmt.Errorf("no scheme; want %s", r.Want())
	}
	b, ok := r.Lookup(scheme)
	if !ok {
		return nil, fmt.Errorf("unsupported scheme %q; want %s", scheme, r.Want())
	}
	return b, nil
}

// join lists schemes as "a://, b:// or c://".
func join(schemes []string, conj string) string {
	words := make([]string, len(schemes))
	for i, s := range schemes {
		words[i] = s + "://"
	}
	return joinWords(words, conj)
}

func joinWords(words []string, conj string) string {
	switch len(words) {
	case 0:
		return "nothing"
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " " + conj + " " + words[len(words)-1]
}
