package local

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/stationfleet/stationfleet/internal/firmware"
)

// SchemeFile is file:///absolute/path inside the store's root, or
// file:relative/path below it.
const SchemeFile = "file"

// Backend registers the store's scheme; internal/firmware/stores lists it.
var Backend = &firmware.Backend{
	Name:    "the local firmware directory",
	Schemes: []firmware.Scheme{{Name: SchemeFile, Form: "file:///PATH"}},
	Enable:  "set --firmware-dir",
	Parse:   parse,
}

// parse checks a file URL: a local path (no host but localhost), absolute
// (file:///...) or relative (file:rel/path), naming a file unless it is a
// List prefix.
func parse(u *url.URL, prefix bool) (firmware.BlobURL, error) {
	p := u.Path
	if u.Opaque != "" {
		// file:relative/path
		if strings.HasPrefix(u.Opaque, "/") {
			return firmware.BlobURL{}, fmt.Errorf("want file:///absolute/path or file:relative/path")
		}
		var err error
		p, err = url.PathUnescape(u.Opaque)
		if err != nil {
			return firmware.BlobURL{}, err
		}
		if strings.ContainsAny(p, "\x00\\") {
			return firmware.BlobURL{}, fmt.Errorf("contains a NUL byte or a backslash")
		}
	} else if u.Host != "" && u.Host != "localhost" {
		return firmware.BlobURL{}, fmt.Errorf("file URLs name a local path: file:///absolute/path (host %q is not local)", u.Host)
	}
	if !prefix && (p == "" || strings.HasSuffix(p, "/")) {
		return firmware.BlobURL{}, fmt.Errorf("no file named")
	}
	if err := firmware.CheckSegments(firmware.TrimSlashes(p, prefix)); err != nil {
		return firmware.BlobURL{}, err
	}
	return firmware.BlobURL{Scheme: SchemeFile, Path: p}, nil
}
