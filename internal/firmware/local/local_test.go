package local_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/firmware/internal/fwtest"
	"github.com/stationfleet/stationfleet/internal/firmware/local"
)

const mib = fwtest.MiB

var pseudoRandomBytes = fwtest.PseudoRandomBytes

// newLocal makes a firmware directory with fw/update.bin, a file outside
// it, and symlinks in and out.
func newLocal(t *testing.T) (s *local.Store, root, outside string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	outside = filepath.Join(base, "secret")
	for _, d := range []string{filepath.Join(root, "fw"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "fw", "update.bin"), []byte("firmware"), 0o644))
	must(os.WriteFile(filepath.Join(outside, "passwd"), []byte("root:x:0:0"), 0o644))
	must(os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(root, "fw", "link-out.bin")))
	must(os.Symlink("../../secret/passwd", filepath.Join(root, "fw", "relative-out.bin")))
	must(os.Symlink(outside, filepath.Join(root, "dir-out")))
	must(os.Symlink("update.bin", filepath.Join(root, "fw", "link-in.bin")))
	must(syscall.Mkfifo(filepath.Join(root, "fw", "fifo"), 0o644))
	s, err := local.New(root)
	must(err)
	t.Cleanup(func() { _ = s.Close() })
	return s, root, outside
}

// TestLocalRefusesEscapes: no URL reaches a file outside the directory, by
// "..", by an absolute path, or by a symlink.
func TestLocalRefusesEscapes(t *testing.T) {
	s, root, outside := newLocal(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		url     string
		is      error
		message string
	}{
		{name: "dot-dot out of the root", url: "file://" + root + "/../secret/passwd", is: firmware.ErrOutsideRoot, message: `".." segment`},
		{name: "dot-dot to /etc/passwd", url: "file://" + root + "/../../../../../../etc/passwd", is: firmware.ErrOutsideRoot, message: `".." segment`},
		{name: "dot-dot that stays inside", url: "file://" + root + "/fw/../fw/update.bin", is: firmware.ErrOutsideRoot, message: `".." segment`},
		{name: "percent-encoded dot-dot", url: "file://" + root + "/%2e%2e/secret/passwd", is: firmware.ErrOutsideRoot, message: `".." segment`},
		{name: "relative dot-dot", url: "file:../secret/passwd", is: firmware.ErrOutsideRoot, message: `".." segment`},
		{name: "absolute path outside", url: "file:///etc/passwd", is: firmware.ErrOutsideRoot, message: "/etc/passwd is outside the firmware directory " + root},
		{name: "absolute sibling with the root as name prefix", url: "file://" + root + "x/fw/update.bin", is: firmware.ErrOutsideRoot, message: "outside the firmware directory"},
		{name: "absolute symlink out", url: "file://" + root + "/fw/link-out.bin", is: firmware.ErrOutsideRoot, message: "fw/link-out.bin is a symlink to " + outside + "/passwd, outside the firmware directory"},
		{name: "relative symlink out", url: "file:fw/relative-out.bin", is: firmware.ErrOutsideRoot, message: "outside the firmware directory"},
		{name: "through a symlinked directory", url: "file:dir-out/passwd", is: firmware.ErrOutsideRoot, message: "outside the firmware directory"},
		{name: "remote host", url: "file://evil.example/etc/passwd", is: firmware.ErrInvalidURL, message: "is not local"},
		{name: "missing", url: "file:fw/missing.bin", is: firmware.ErrNotFound, message: "no such file"},
		{name: "a FIFO", url: "file:fw/fifo", is: firmware.ErrNotFound, message: "not a regular file"},
		{name: "a directory", url: "file:fw", is: firmware.ErrNotFound, message: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			_, _, err := s.Open(ctx, tt.url)
			g.Expect(err).To(MatchError(tt.is))
			g.Expect(err.Error()).To(ContainSubstring(tt.message))
			_, err = s.Stat(ctx, tt.url)
			g.Expect(err).To(MatchError(tt.is))
			g.Expect(err.Error()).NotTo(ContainSubstring("root:x:0:0"))
		})
	}
	t.Run("upload through a symlinked directory", func(t *testing.T) {
		g := NewWithT(t)
		_, err := s.Upload(ctx, "file:dir-out/planted.bin", strings.NewReader("x"), firmware.UploadOptions{})
		g.Expect(err).To(MatchError(firmware.ErrOutsideRoot))
		g.Expect(filepath.Join(outside, "planted.bin")).NotTo(BeAnExistingFile())
	})
}

// TestLocalServes: the forms that stay inside are served with their exact
// size, and uploads land atomically.
func TestLocalServes(t *testing.T) {
	s, root, _ := newLocal(t)
	ctx := context.Background()
	for _, url := range []string{
		"file://" + root + "/fw/update.bin",
		"file://localhost" + root + "/fw/update.bin",
		"file:fw/update.bin",
		"file:fw/link-in.bin",
	} {
		t.Run(url, func(t *testing.T) {
			g := NewWithT(t)
			r, n, err := s.Open(ctx, url)
			g.Expect(err).NotTo(HaveOccurred())
			b, err := io.ReadAll(r)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.Close()).To(Succeed())
			g.Expect(n).To(BeEquivalentTo(8))
			g.Expect(string(b)).To(Equal("firmware"))
		})
	}
	t.Run("upload, list, refuse overwrite", func(t *testing.T) {
		g := NewWithT(t)
		info, err := s.Upload(ctx, "file:fw/2.0.8/update.bin", strings.NewReader("new firmware"), firmware.UploadOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(info.Size).To(BeEquivalentTo(12))
		_, err = s.Upload(ctx, "file:fw/2.0.8/update.bin", strings.NewReader("other"), firmware.UploadOptions{})
		g.Expect(err).To(MatchError(firmware.ErrExists))
		_, err = s.Upload(ctx, "file:fw/2.0.8/update.bin", strings.NewReader("other"), firmware.UploadOptions{Overwrite: true})
		g.Expect(err).NotTo(HaveOccurred())
		list, err := s.List(ctx, "file://"+root+"/fw/")
		g.Expect(err).NotTo(HaveOccurred())
		var urls []string
		for _, i := range list {
			urls = append(urls, i.URL)
		}
		g.Expect(urls).To(Equal([]string{"file://" + root + "/fw/2.0.8/update.bin", "file://" + root + "/fw/update.bin"}))
		list, err = s.List(ctx, "file:fw/2.")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(list).To(HaveLen(1))
		g.Expect(list[0].URL).To(Equal("file:fw/2.0.8/update.bin"))
		g.Expect(list[0].Size).To(BeEquivalentTo(5))
		entries, err := os.ReadDir(filepath.Join(root, "fw", "2.0.8"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(entries).To(HaveLen(1), "no temporary files left behind")
	})
}

// TestLocalDetectsChange: a file that grows, shrinks or is rewritten while
// streamed ends the stream with an error; one replaced by rename is read
// to the end in its old version.
func TestLocalDetectsChange(t *testing.T) {
	tests := []struct {
		name    string
		change  func(path string) error
		wantErr string
	}{
		{name: "grows", wantErr: "file grew while being read", change: func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.Write([]byte("more"))
			return errors.Join(err, f.Close())
		}},
		{name: "shrinks", wantErr: "file shrank while being read", change: func(p string) error { return os.Truncate(p, 2*mib) }},
		{name: "rewritten in place, same size", wantErr: "file modified while being read", change: func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteAt([]byte("X"), 5*mib)
			return errors.Join(err, f.Close())
		}},
		{name: "replaced by rename", change: func(p string) error {
			if err := os.WriteFile(p+".new", []byte("other"), 0o644); err != nil {
				return err
			}
			return os.Rename(p+".new", p)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			dir := t.TempDir()
			content := pseudoRandomBytes(3, 8*mib)
			g.Expect(os.WriteFile(filepath.Join(dir, "fw.bin"), content, 0o644)).To(Succeed())
			s, err := local.New(dir)
			g.Expect(err).NotTo(HaveOccurred())
			defer func() { _ = s.Close() }()
			r, n, err := s.Open(context.Background(), "file:fw.bin")
			g.Expect(err).NotTo(HaveOccurred())
			defer func() { _ = r.Close() }()
			head := make([]byte, 4*mib)
			_, err = io.ReadFull(r, head)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(tt.change(filepath.Join(dir, "fw.bin"))).To(Succeed())
			rest, err := io.ReadAll(r)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(firmware.ErrChanged))
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				g.Expect(firmware.IsTransient(err)).To(BeTrue())
				g.Expect(int64(len(head)+len(rest))).To(BeNumerically("<=", n), "never more than announced")
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(append(head, rest...)).To(Equal(content))
		})
	}
}
