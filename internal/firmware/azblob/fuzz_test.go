package azblob

import (
	"strings"
	"testing"
)

// FuzzParseURL feeds arbitrary URLs to the parser and the store's resolver.
// Whatever is accepted names a valid container and a blob without "." or
// ".." segments, and never carries a query.
func FuzzParseURL(f *testing.F) {
	for _, seed := range []string{
		"azblob://firmware/station/2.0.7/update.bin",
		"azblob://Firmware/x", "azblob://fw/../x", "azblob://firmware/", "azblob://firmware/a//b",
		"https://acct.blob.core.windows.net/firmware/fw.bin",
		"https://acct.blob.core.windows.net/firmware/fw.bin?sv=1&sig=x",
		"http://127.0.0.1:10000/devstoreaccount1/firmware/fw%20x.bin",
		"http://127.0.0.1:10000/devstoreaccount1/../other/fw.bin",
		"file:///srv/firmware/fw.bin", "ftp://x/y", "", "azblob:opaque", "azblob://firmware/\x00",
	} {
		f.Add(seed)
	}
	az, err := New(Options{Account: "devstoreaccount1", Endpoint: "http://127.0.0.1:10000/devstoreaccount1",
		Auth: AuthSharedKey, AccountKey: "a2V5"})
	if err != nil {
		f.Fatal(err)
	}
	noDots := func(t *testing.T, what, p string) {
		for _, seg := range strings.Split(p, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%s %q has a %q segment", what, p, seg)
			}
		}
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, prefix := range []bool{false, true} {
			u, err := Backend.ParseURL(raw)
			if prefix {
				u, err = Backend.ParsePrefix(raw)
			}
			if err == nil {
				if strings.Contains(raw, "?") && !strings.Contains(raw, "#") {
					// A query is never accepted (credentials in URLs).
					if q := strings.SplitN(raw, "?", 2)[1]; q != "" {
						t.Fatalf("accepted a query: %q", raw)
					}
				}
				noDots(t, "path", u.Path)
				noDots(t, "blob", u.Blob)
				if u.Scheme == SchemeAzblob {
					if err := checkContainer(u.Container); err != nil {
						t.Fatalf("accepted container: %v", err)
					}
				}
			}
			if tg, err := az.resolve(raw, prefix); err == nil {
				if err := checkContainer(tg.container); err != nil {
					t.Fatalf("resolved %q to container %q: %v", raw, tg.container, err)
				}
				noDots(t, "blob", tg.blob)
			}
		}
	})
}
