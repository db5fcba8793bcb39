package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseURL feeds arbitrary URLs to the parser and the store's resolver.
// Whatever is accepted has no "." or ".." segments, never carries a query,
// and resolves to a path inside the root.
func FuzzParseURL(f *testing.F) {
	for _, seed := range []string{
		"file:///srv/firmware/fw.bin", "file:///srv/firmware/../../etc/passwd",
		"file:fw.bin", "file:../fw.bin", "file://host/fw.bin", "file:///srv/firmware/%2e%2e/x",
		"file:/abs", "file:a\\..\\b", "file:fw.bin?x=1", "ftp://x/y", "", "file:fw/\x00",
	} {
		f.Add(seed)
	}
	dir := f.TempDir()
	s, err := New(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	f.Fuzz(func(t *testing.T, raw string) {
		for _, prefix := range []bool{false, true} {
			u, err := Backend.ParseURL(raw)
			if prefix {
				u, err = Backend.ParsePrefix(raw)
			}
			if err == nil {
				if strings.Contains(raw, "?") && !strings.Contains(raw, "#") {
					if q := strings.SplitN(raw, "?", 2)[1]; q != "" {
						t.Fatalf("accepted a query: %q", raw)
					}
				}
				for _, seg := range strings.Split(u.Path, "/") {
					if seg == "." || seg == ".." {
						t.Fatalf("path %q has a %q segment", u.Path, seg)
					}
				}
			}
			if rel, _, err := s.rel(raw, prefix); err == nil {
				full := filepath.Join(s.resolved, filepath.FromSlash(rel))
				if full != s.resolved && !strings.HasPrefix(full, s.resolved+string(os.PathSeparator)) {
					t.Fatalf("%q resolved outside the root: %s", raw, full)
				}
			}
		}
	})
}
