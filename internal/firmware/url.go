package firmware

import (
	"fmt"
	"net/url"
	"strings"
)

// maxURLLen bounds what we parse at all; a blob URL is at most an endpoint,
// a container and a blob name.
const maxURLLen = 2048

// BlobURL is a parsed blob URL. Which fields are set depends on the backend:
// for azblob:// URLs Container and Blob; for http(s) URLs Host and Path,
// resolved by the Azure store against its endpoint; for file URLs Path.
type BlobURL struct {
	// Scheme is the URL's scheme, lower case.
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

// checkURL applies what every blob URL must satisfy, whatever its backend:
// it refuses URLs carrying credentials (user info, a query such as a SAS
// token: those belong in the store configuration, never in a twin or a
// rollout), fragments, NUL bytes and backslashes. It returns the URL with
// its scheme in lower case, or the reason it is refused.
func checkURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("empty")
	}
	if len(raw) > maxURLLen {
		return nil, fmt.Errorf("longer than %d bytes", maxURLLen)
	}
	if strings.ContainsAny(raw, "\x00\\") {
		return nil, fmt.Errorf("contains a NUL byte or a backslash")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.User != nil {
		return nil, fmt.Errorf("user info in a blob URL is not supported; configure credentials in the store")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return nil, fmt.Errorf("has a query; a SAS token or other credential belongs in the store configuration, not in the URL")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, fmt.Errorf("has a fragment")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	return u, nil
}

// InvalidURL is the error for a URL refused for reason: it wraps
// ErrInvalidURL and the reason (which may wrap ErrOutsideRoot).
func InvalidURL(raw string, reason error) error {
	return fmt.Errorf("%w %q: %w", ErrInvalidURL, truncate(raw), reason)
}

// CheckSegments refuses empty, "." and ".." path segments in p (no leading
// '/'): they are either mistakes or attempts to climb out of a container or
// directory. The error for "." and ".." wraps ErrOutsideRoot.
func CheckSegments(p string) error {
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

// TrimSlashes drops the leading '/' of a URL path and, for List prefixes,
// one trailing '/', before CheckSegments.
func TrimSlashes(p string, prefix bool) string {
	p = strings.TrimPrefix(p, "/")
	if prefix {
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

func truncate(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
