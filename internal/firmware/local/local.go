// Package local is the firmware store on a local directory, for file://
// URLs: the embedded default's firmware, and credential blobs the CLI writes
// for a manager on the same machine. Every access goes through an os.Root,
// so no URL reaches a file outside the directory.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stationfleet/stationfleet/internal/firmware"
)

// uploadTempPrefix names Upload's temporary files; List skips them.
const uploadTempPrefix = ".upload-"

// Store is a firmware.Store on a local directory, for file:// URLs. Every access
// goes through an os.Root, so neither ".." nor a symlink can reach outside
// the directory; URLs with ".." segments, or absolute paths outside it, are
// refused before that with a clear error.
type Store struct {
	// dir is the directory as configured (absolute, clean); resolved is
	// the same after following symlinks. Absolute file URLs may use either.
	dir      string
	resolved string
	root     *os.Root
}

var _ firmware.Store = (*Store)(nil)

// New opens dir as the store's root. Close releases it.
func New(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local firmware directory %q: %w", dir, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("local firmware directory %q: %w", dir, err)
	}
	root, err := os.OpenRoot(resolved)
	if err != nil {
		return nil, fmt.Errorf("local firmware directory %q: %w", dir, err)
	}
	return &Store{dir: abs, resolved: resolved, root: root}, nil
}

// Dir returns the store's root directory.
func (s *Store) Dir() string { return s.dir }

// URL returns the file:// URL of a path relative to the store's root.
func (s *Store) URL(rel string) string {
	return (&fileURL{abs: true}).format(s, filepath.ToSlash(rel))
}

// Close releases the root directory.
func (s *Store) Close() error { return s.root.Close() }

// fileURL remembers the form a URL was given in, to answer List in kind.
type fileURL struct {
	abs bool
}

func (f *fileURL) format(s *Store, rel string) string {
	if f.abs {
		return "file://" + filepath.ToSlash(filepath.Join(s.dir, rel))
	}
	return "file:" + rel
}

// rel maps a parsed file URL to a path relative to the root.
func (s *Store) rel(raw string, prefix bool) (string, *fileURL, error) {
	u, err := Backend.ParseAny(raw, prefix)
	if err != nil {
		return "", nil, err
	}
	if !strings.HasPrefix(u.Path, "/") {
		return u.Path, &fileURL{}, nil
	}
	p := filepath.FromSlash(u.Path)
	for _, dir := range []string{s.dir, s.resolved} {
		if p == dir && prefix {
			return "", &fileURL{abs: true}, nil
		}
		if dir == "/" {
			return strings.TrimPrefix(p, "/"), &fileURL{abs: true}, nil
		}
		if rest, ok := strings.CutPrefix(p, dir+string(filepath.Separator)); ok {
			return filepath.ToSlash(rest), &fileURL{abs: true}, nil
		}
	}
	return "", nil, fmt.Errorf("%w: %s is outside the firmware directory %s", firmware.ErrOutsideRoot, u.Path, s.dir)
}

// checkInside follows symlinks the way the kernel will and refuses a target
// outside the root, so the error says why; the os.Root open that follows
// enforces the same even if the link changes in between.
func (s *Store) checkInside(rel string) error {
	real, err := filepath.EvalSymlinks(filepath.Join(s.resolved, filepath.FromSlash(rel)))
	if err != nil {
		return nil // a missing file is reported by the open itself
	}
	if real != s.resolved && !strings.HasPrefix(real, s.resolved+string(filepath.Separator)) {
		return fmt.Errorf("%w: %s is a symlink to %s, outside the firmware directory %s", firmware.ErrOutsideRoot, rel, real, s.dir)
	}
	return nil
}

func (s *Store) fail(op, raw string, err error) *firmware.Error {
	e := &firmware.Error{Op: op, URL: raw}
	var pe *fs.PathError
	switch {
	case errors.Is(err, firmware.ErrInvalidURL), errors.Is(err, firmware.ErrOutsideRoot), errors.Is(err, firmware.ErrNotFound), errors.Is(err, firmware.ErrExists), errors.Is(err, firmware.ErrChanged):
		e.Err = err
	case errors.Is(err, fs.ErrNotExist):
		e.Err = firmware.Kind(firmware.ErrNotFound, fmt.Sprintf("no such file in %s", s.dir), nil)
	case errors.Is(err, fs.ErrPermission):
		e.Err = firmware.Kind(firmware.ErrAccessDenied, fmt.Sprintf("permission denied in %s", s.dir), nil)
	case errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes"):
		// os.Root's refusal of a path or symlink that leaves the root.
		e.Err = firmware.Kind(firmware.ErrOutsideRoot, pe.Path, nil)
	default:
		e.Err = err
	}
	return e
}

// Open opens the file through the root. The file is opened non-blocking so
// a FIFO cannot hang the caller, and anything but a regular file is refused.
// The reader fails if the file's size or modification time changes while it
// is read (replace firmware by renaming a new file over it: readers of the
// old one then finish undisturbed).
func (s *Store) Open(ctx context.Context, raw string) (io.ReadCloser, int64, error) {
	rel, _, err := s.rel(raw, false)
	if err != nil {
		return nil, 0, s.fail("open", raw, err)
	}
	if err := s.checkInside(rel); err != nil {
		return nil, 0, s.fail("open", raw, err)
	}
	f, err := s.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, s.fail("open", raw, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, s.fail("open", raw, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, 0, s.fail("open", raw, firmware.Kind(firmware.ErrNotFound, fmt.Sprintf("%s is a %s, not a regular file", rel, fi.Mode().Type()), nil))
	}
	r := &localReader{f: f, start: fi, etag: fileETag(fi)}
	r.cr = firmware.ExactReader{R: f, Size: fi.Size(), Describe: func(got int64, long bool) error {
		what := "shrank"
		if long {
			what = "grew"
		}
		return &firmware.Error{Op: "read", URL: raw, Outage: true,
			Err: firmware.Kind(firmware.ErrChanged, fmt.Sprintf("file %s while being read: %d bytes against %d at open", what, got, fi.Size()), nil)}
	}}
	r.raw = raw
	return r, fi.Size(), nil
}

// localReader is the stream Store.Open returns.
type localReader struct {
	f     *os.File
	cr    firmware.ExactReader
	start fs.FileInfo
	etag  string
	raw   string
}

func (r *localReader) Read(p []byte) (int, error) {
	n, err := r.cr.Read(p)
	if err == io.EOF {
		// Same length is not the same content: a rewrite in place shows
		// in the modification time.
		if fi, serr := r.f.Stat(); serr == nil && fileETag(fi) != r.etag {
			return n, &firmware.Error{Op: "read", URL: r.raw, Outage: true,
				Err: firmware.Kind(firmware.ErrChanged, "file modified while being read", nil)}
		}
	}
	return n, err
}

func (r *localReader) Close() error { return r.f.Close() }
func (r *localReader) ETag() string { return r.etag }

// fileETag is a version tag from inode, size and modification time.
func fileETag(fi fs.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("\"%x-%x-%x\"", ino, fi.Size(), fi.ModTime().UnixNano())
}

// Stat reports the file's size and version.
func (s *Store) Stat(ctx context.Context, raw string) (firmware.Info, error) {
	rel, _, err := s.rel(raw, false)
	if err != nil {
		return firmware.Info{}, s.fail("stat", raw, err)
	}
	if err := s.checkInside(rel); err != nil {
		return firmware.Info{}, s.fail("stat", raw, err)
	}
	fi, err := s.root.Stat(rel)
	if err != nil {
		return firmware.Info{}, s.fail("stat", raw, err)
	}
	if !fi.Mode().IsRegular() {
		return firmware.Info{}, s.fail("stat", raw, firmware.Kind(firmware.ErrNotFound, fmt.Sprintf("%s is a %s, not a regular file", rel, fi.Mode().Type()), nil))
	}
	return firmware.Info{URL: raw, Size: fi.Size(), ETag: fileETag(fi), LastModified: fi.ModTime()}, nil
}

// List walks the directory that holds the prefix and returns the regular
// files whose path starts with it. Symlinks are not followed.
func (s *Store) List(ctx context.Context, prefix string) ([]firmware.Info, error) {
	rel, form, err := s.rel(prefix, true)
	if err != nil {
		return nil, s.fail("list", prefix, err)
	}
	start := "."
	if i := strings.LastIndex(rel, "/"); i >= 0 {
		start = rel[:i]
	}
	var out []firmware.Info
	err = fs.WalkDir(s.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == start {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), uploadTempPrefix) || !strings.HasPrefix(p, rel) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		out = append(out, firmware.Info{URL: form.format(s, p), Size: fi.Size(), ETag: fileETag(fi), LastModified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, s.fail("list", prefix, err)
	}
	return out, nil
}

// Upload writes r to a temporary file next to the target and moves it into
// place atomically, so readers see the old file or the whole new one. Without
// Overwrite the move is a hard link, which fails if the target exists.
func (s *Store) Upload(ctx context.Context, raw string, r io.Reader, opts firmware.UploadOptions) (firmware.Info, error) {
	rel, _, err := s.rel(raw, false)
	if err != nil {
		return firmware.Info{}, s.fail("upload", raw, err)
	}
	dir := path.Dir(rel)
	if dir != "." {
		if err := s.checkInside(dir); err != nil {
			return firmware.Info{}, s.fail("upload", raw, err)
		}
		if err := s.root.MkdirAll(dir, 0o755); err != nil {
			return firmware.Info{}, s.fail("upload", raw, err)
		}
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(dir, uploadTempPrefix+hex.EncodeToString(rnd[:]))
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return firmware.Info{}, s.fail("upload", raw, err)
	}
	defer func() { _ = s.root.Remove(tmp) }()
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return firmware.Info{}, s.fail("upload", raw, fmt.Errorf("write %s: %w", tmp, err))
	}
	if opts.Overwrite {
		err = s.root.Rename(tmp, rel)
	} else {
		err = s.root.Link(tmp, rel)
		if errors.Is(err, fs.ErrExist) {
			err = firmware.Kind(firmware.ErrExists, "pass overwrite to replace it", nil)
		}
	}
	if err != nil {
		return firmware.Info{}, s.fail("upload", raw, err)
	}
	ctrllog.FromContext(ctx).V(1).Info("stored firmware file", "url", raw)
	return s.Stat(ctx, raw)
}
