package azblob

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/stationfleet/stationfleet/internal/firmware"
)

// URL schemes the store serves.
const (
	// SchemeAzblob is azblob://container/path/to/blob in the configured
	// storage account.
	SchemeAzblob = "azblob"
	// SchemeHTTPS is https://<account>.blob.core.windows.net/container/path,
	// or a URL under the configured endpoint.
	SchemeHTTPS = "https"
	// SchemeHTTP is only accepted under a configured http:// endpoint
	// (Azurite); a rollout never names it.
	SchemeHTTP = "http"
)

// Backend registers the store's schemes; internal/firmware/stores lists it.
var Backend = &firmware.Backend{
	Name: "Azure Blob storage",
	Schemes: []firmware.Scheme{
		{Name: SchemeAzblob, Form: "azblob://CONTAINER/PATH"},
		{Name: SchemeHTTPS, Form: "https://ACCOUNT" + azureHostSuffix + "/CONTAINER/PATH"},
		{Name: SchemeHTTP, Form: "http://HOST:PORT/ACCOUNT/CONTAINER/PATH", EndpointOnly: true},
	},
	Enable: "set --azblob-account or --azblob-endpoint",
	Parse:  parse,
}

// Limits from Azure's naming rules ("Naming and Referencing Containers,
// Blobs, and Metadata").
const (
	minContainerLen = 3
	maxContainerLen = 63
	maxBlobNameLen  = 1024
)

// parse checks an azblob:// URL's container and blob name, and an http(s)
// URL's path; which account and container an http(s) URL names depends on
// the configured endpoint (Store.resolve).
func parse(u *url.URL, prefix bool) (firmware.BlobURL, error) {
	if u.Scheme == SchemeAzblob {
		if u.Opaque != "" {
			return firmware.BlobURL{}, fmt.Errorf("want azblob://container/path")
		}
		if u.Port() != "" {
			return firmware.BlobURL{}, fmt.Errorf("azblob://container/path has no port")
		}
		if err := checkContainer(u.Host); err != nil {
			return firmware.BlobURL{}, err
		}
		name := strings.TrimPrefix(u.Path, "/")
		check := checkBlobName
		if prefix {
			check = checkPrefix
		}
		if err := check(name); err != nil {
			return firmware.BlobURL{}, err
		}
		return firmware.BlobURL{Scheme: SchemeAzblob, Container: u.Host, Blob: name}, nil
	}
	if u.Opaque != "" || u.Host == "" {
		return firmware.BlobURL{}, fmt.Errorf("want %s://host/container/path", u.Scheme)
	}
	if err := firmware.CheckSegments(firmware.TrimSlashes(u.Path, prefix)); err != nil {
		return firmware.BlobURL{}, err
	}
	return firmware.BlobURL{Scheme: u.Scheme, Host: strings.ToLower(u.Host), Path: u.Path}, nil
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
	return firmware.CheckSegments(name)
}

// checkPrefix is checkBlobName for List prefixes: empty, or ending in '/'.
func checkPrefix(name string) error {
	if len(name) > maxBlobNameLen {
		return fmt.Errorf("blob prefix longer than %d characters", maxBlobNameLen)
	}
	return firmware.CheckSegments(strings.TrimSuffix(name, "/"))
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
