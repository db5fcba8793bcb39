package firmware

import (
	"fmt"
	"net/url"
	"strings"
)

// URL schemes the stores serve.
const (
	// SchemeAzblob is azblob://container/path/to/blob in the configured
	// storage account.
	SchemeAzblob = "azblob"
	// SchemeHTTPS is https://<account>.blob.core.windows.net/container/path,
	// or a URL under the configured endpoint.
	SchemeHTTPS = "https"
	// SchemeHTTP is only accepted under a configured http:// endpoint
	// (Azurite).
	SchemeHTTP = "http"
	// SchemeFile is file:///absolute/path inside the local store's root, or
	// file:relative/path below it.
	SchemeFile = "file"
)

// Limits from Azure's naming rules ("Naming and Referencing Containers,
// Blobs, and Metadata").
const (
	minContainerLen = 3
	maxContainerLen = 63
	maxBlobNameLen  = 1024
	// maxURLLen bounds what we parse at all; a blob URL is at most the
	// endpoint, a container and a blob name.
	maxURLLen = 2048
)

// BlobURL is a parsed blob URL. For azblob:// URLs Container and Blob are
// set; for http(s) URLs Host and Path are set and an AzureStore resolves them
// against its endpoint; for file URLs Path is set.
type BlobURL struct {
	// Scheme is one of the Scheme constants.
	Scheme string
	// Host is the URL's host[:port] for http(s) URLs.
	Host string
	// Container is the container of an azblob:// URL.
	Container string
	// Blob is the blob name of an azblob:// URL (may contain '/').
	Blob string
	// Path is the decoded path of http(s) and file URLs. For file URLs it
	// is absolute (file:///...) or relative (file:rel/path), never with
	// "." or ".." segments.
	Path string
}

// ParseURL parses and validates a blob URL without knowing the store's
// configuration. It refuses URLs carrying credentials (user info, a query
// such as a SAS token: those belong in the store configuration, never in a
// twin or a rollout), fragments, "." and ".." segments, empty segments and
// invalid container names.
func ParseURL(raw string) (BlobURL, error) {
	return parse(raw, false)
}

// ParsePrefix parses a URL prefix for Store.List: like ParseURL, but the
// blob name or path may be empty or end with '/'.
func ParsePrefix(raw string) (BlobURL, error) {
	return parse(raw, true)
}

func parse(raw string, prefix bool) (BlobURL, error) {
	bad := func(format string, args ...any) (BlobURL, error) {
		return BlobURL{}, fmt.Errorf("%w %q: %s", ErrInvalidURL, truncate(raw), fmt.Sprintf(format, args...))
	}
	badErr := func(err error) (BlobURL, error) {
		return BlobURL{}, fmt.Errorf("%w %q: %w", ErrInvalidURL, truncate(raw), err)
	}
	if raw == "" {
		return bad("empty")
	}
	if len(raw) > maxURLLen {
		return bad("longer than %d bytes", maxURLLen)
	}
	if strings.ContainsAny(raw, "\x00\\") {
		return bad("contains a NUL byte or a backslash")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return badErr(err)
	}
	if u.User != nil {
		return bad("user info in a blob URL is not supported; configure credentials in the store")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return bad("has a query; a SAS token or other credential belongs in the store configuration, not in the URL")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return bad("has a fragment")
	}
	switch strings.ToLower(u.Scheme) {
	case SchemeAzblob:
		if u.Opaque != "" {
			return bad("want azblob://container/path")
		}
		if u.Port() != "" {
			return bad("azblob://container/path has no port")
		}
		if err := checkContainer(u.Host); err != nil {
			return badErr(err)
		}
		name := strings.TrimPrefix(u.Path, "/")
		check := checkBlobName
		if prefix {
			check = checkPrefix
		}
		if err := check(name); err != nil {
			return badErr(err)
		}
		return BlobURL{Scheme: SchemeAzblob, Container: u.Host, Blob: name}, nil
	case SchemeHTTPS, SchemeHTTP:
		if u.Opaque != "" || u.Host == "" {
			return bad("want %s://host/container/path", u.Scheme)
		}
		if err := checkSegments(trimSlashes(u.Path, prefix)); err != nil {
			return badErr(err)
		}
		return BlobURL{Scheme: strings.ToLower(u.Scheme), Host: strings.ToLower(u.Host), Path: u.Path}, nil
	case SchemeFile:
		p := u.Path
		if u.Opaque != "" {
			// file:relative/path
			if strings.HasPrefix(u.Opaque, "/") {
				return bad("want file:///absolute/path or file:relative/path")
			}
			p, err = url.PathUnescape(u.Opaque)
			if err != nil {
				return badErr(err)
			}
			if strings.ContainsAny(p, "\x00\\") {
				return bad("contains a NUL byte or a backslash")
			}
		} else if u.Host != "" && u.Host != "localhost" {
			return bad("file URLs name a local path: file:///absolute/path (host %q is not local)", u.Host)
		}
		if !prefix && (p == "" || strings.HasSuffix(p, "/")) {
			return bad("no file named")
		}
		if err := checkSegments(trimSlashes(p, prefix)); err != nil {
			return badErr(err)
		}
		return BlobURL{Scheme: SchemeFile, Path: p}, nil
	case "":
		return bad("no scheme; want azblob://, https:// or file://")
	default:
		return bad("unsupported scheme %q; want azblob://, https:// or file://", u.Scheme)
	}
}

// checkSegments refuses empty, "." and ".." path segments: they are either
// mistakes or attempts to climb out of a container or directory.
func checkSegments(p string) error {
	if p == "" {
		return nil
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("empty path segment (\"//\") in %q", p)
		case ".", "..":
			return fmt.Errorf("%w: %q segment in %q", ErrOutsideRoot, seg, p)
		}
	}
	return nil
}

// checkContainer applies Azure's container naming rules: 3-63 characters,
// lower-case letters, digits and single hyphens, starting and ending with a
// letter or digit; or the special $root and $web containers.
func checkContainer(c string) error {
	if c == "$root" || c == "$web" {
		return nil
	}
	if len(c) < minContainerLen || len(c) > maxContainerLen {
		return fmt.Errorf("container name %q must be %d-%d characters", c, minContainerLen, maxContainerLen)
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
		case ch == '-' && i > 0 && i < len(c)-1 && c[i-1] != '-':
		default:
			return fmt.Errorf("container name %q: only lower-case letters, digits and single hyphens inside the name", c)
		}
	}
	return nil
}

// checkBlobName requires a non-empty name of at most 1024 characters with no
// empty, "." or ".." segments.
func checkBlobName(name string) error {
	if name == "" {
		return fmt.Errorf("no blob name after the container")
	}
	if len(name) > maxBlobNameLen {
		return fmt.Errorf("blob name longer than %d characters", maxBlobNameLen)
	}
	if strings.HasSuffix(name, "/") {
		return fmt.Errorf("blob name %q ends with '/'", name)
	}
	return checkSegments(name)
}

// checkPrefix is checkBlobName for List prefixes: empty, or ending in '/'.
func checkPrefix(name string) error {
	if len(name) > maxBlobNameLen {
		return fmt.Errorf("blob prefix longer than %d characters", maxBlobNameLen)
	}
	return checkSegments(strings.TrimSuffix(name, "/"))
}

// trimSlashes drops the leading '/' and, for prefixes, one trailing '/'.
func trimSlashes(p string, prefix bool) string {
	p = strings.TrimPrefix(p, "/")
	if prefix {
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

// splitContainer splits "container/blob/name" (no leading slash).
func splitContainer(p string) (container, blob string, err error) {
	container, blob, _ = strings.Cut(p, "/")
	if err := checkContainer(container); err != nil {
		return "", "", err
	}
	return container, blob, nil
}

// escapeBlobPath escapes each segment of a blob name for use in a URL path.
func escapeBlobPath(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func truncate(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
