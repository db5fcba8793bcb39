package stationcreds

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// HomeFiles are the files of a station's home directory that enrolment
// writes, ready to copy to the gateway.
type HomeFiles struct {
	// RouterID is the station's EUI in ID6 form, written as station.conf's
	// station_conf.routerid.
	RouterID string
	// CUPSURI is cups.uri.
	CUPSURI string
	// TCURI is tc.uri; empty writes none.
	TCURI string
	// Cred is the regular CUPS credential set (cups.trust, cups.crt,
	// cups.key); nil writes none (plain-HTTP CUPS).
	Cred *Credential
	// SigKeys are the 64-byte sig-0.key, sig-1.key, ... files.
	SigKeys [][]byte
}

// File is one file to write.
type File struct {
	// Name is the file name in the home directory.
	Name string
	// Data is its content.
	Data []byte
	// Secret marks a file holding a private key or token.
	Secret bool
}

// Files returns the files of h in the order they are written.
func (h HomeFiles) Files() ([]File, error) {
	conf, err := json.MarshalIndent(map[string]any{"station_conf": map[string]any{"routerid": h.RouterID}}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode station.conf: %w", err)
	}
	files := []File{{Name: "cups.uri", Data: []byte(h.CUPSURI + "\n")}}
	if h.TCURI != "" {
		files = append(files, File{Name: "tc.uri", Data: []byte(h.TCURI + "\n")})
	}
	if c := h.Cred; c != nil {
		files = append(files, File{Name: "cups.trust", Data: c.Trust})
		if len(c.Cert) > 0 {
			files = append(files, File{Name: "cups.crt", Data: c.Cert})
		}
		files = append(files, File{Name: "cups.key", Data: c.Key, Secret: true})
	}
	for i, k := range h.SigKeys {
		files = append(files, File{Name: fmt.Sprintf("sig-%d.key", i), Data: k})
	}
	return append(files, File{Name: "station.conf", Data: append(conf, '\n')}), nil
}

// WriteNew writes files into dir (created 0700 if missing), each 0600 and
// created exclusively: it refuses to replace any existing file, and removes
// what it wrote when one write fails, so a half-written home never remains.
func WriteNew(dir string, files []File) ([]string, error) {
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%s already exists: station files are never overwritten; choose an empty --out directory", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("check %s: %w", p, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var written []string
	undo := func() {
		for _, w := range written {
			_ = os.Remove(w)
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := WriteExclusive(p, f.Data, 0o600); err != nil {
			undo()
			return nil, err
		}
		written = append(written, p)
	}
	return written, nil
}

// WriteExclusive creates path with mode, never replacing an existing file
// (the error then wraps fs.ErrExist), and removes what it wrote when the
// write fails.
func WriteExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
