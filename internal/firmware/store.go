// Package firmware reads and writes firmware images and station credential
// blobs. It holds what every storage backend shares: the Store interface,
// its errors, the checks every blob URL gets, the Backend registry keyed by
// URL scheme and the Router that hands each URL to the store for its
// scheme. The backends live in their own packages (internal/firmware/azblob:
// Azure Blob Storage; internal/firmware/local: a local directory), and
// internal/firmware/stores lists them and builds the Router from the
// configuration. The CUPS server streams blobs from a Store; the rollout
// controller checks a rollout's firmware with a Checker before it writes any
// twin.
//
// The package does not know its consumers: the controller's FirmwareChecker
// is adapted to Checker in internal/app.
//
// Every blob is streamed: memory does not grow with its size. Open returns the
// exact size before the first byte, and a stream whose blob changes or breaks
// underneath ends with an error instead of delivering a different length.
package firmware

import (
	"context"
	"io"
	"time"
)

// Store is where firmware and credential blobs live. Each backend serves the
// URL schemes its Backend lists; see Registry.
type Store interface {
	// Open opens a blob for streaming and returns its exact size before the
	// first byte is read. Read returns an error, never short or extra data,
	// when the blob changes or the connection breaks and cannot be resumed
	// on the same version. The caller must Close the reader.
	Open(ctx context.Context, url string) (io.ReadCloser, int64, error)
	// Stat returns a blob's size and version without reading it.
	Stat(ctx context.Context, url string) (Info, error)
	// List returns the blobs whose URL starts with prefix (for example
	// azblob://firmware/station/ or file:///srv/firmware/), in name order.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Upload writes a blob from r (for the CLI). Unless opts.Overwrite is
	// set it refuses to replace an existing blob: a published firmware's
	// signature is bound to its bytes.
	Upload(ctx context.Context, url string, r io.Reader, opts UploadOptions) (Info, error)
}

// Info describes one blob.
type Info struct {
	// URL is the blob's URL, in the form it was asked for.
	URL string
	// Size is the blob's length in bytes.
	Size int64
	// ETag identifies the blob's version; it changes whenever its content
	// may have changed.
	ETag string
	// LastModified is when the blob was last written.
	LastModified time.Time
}

// UploadOptions tune Store.Upload.
type UploadOptions struct {
	// Overwrite allows replacing an existing blob.
	Overwrite bool
}

// Versioned is implemented by the readers a backend's Open returns: the
// version (ETag) whose bytes the reader delivers, so a Checker can remember
// what it verified.
type Versioned interface {
	ETag() string
}

// ExactReader enforces that exactly Size bytes are delivered: a short stream
// ends with an error instead of io.EOF, a long one with an error instead of
// the extra bytes. Backends wrap their streams in it.
type ExactReader struct {
	// R is the stream.
	R io.Reader
	// Size is the number of bytes announced.
	Size int64
	// Describe builds the error for a stream that ran short (got < Size)
	// or long.
	Describe func(got int64, long bool) error
	n        int64
}

// Delivered returns the number of bytes read so far.
func (c *ExactReader) Delivered() int64 { return c.n }

// Read reads from R, never past Size, and turns a short or long stream into
// Describe's error.
func (c *ExactReader) Read(p []byte) (int, error) {
	if c.n >= c.Size {
		// Everything promised was delivered; anything further is an error.
		var one [1]byte
		n, err := c.R.Read(one[:])
		if n > 0 {
			return 0, c.Describe(c.n+int64(n), true)
		}
		if err == nil {
			// A reader may return (0, nil); ask again once.
			n, err = c.R.Read(one[:])
			if n > 0 {
				return 0, c.Describe(c.n+int64(n), true)
			}
			if err == nil {
				return 0, io.EOF
			}
		}
		if err == io.EOF {
			return 0, io.EOF
		}
		return 0, err
	}
	if rest := c.Size - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.R.Read(p)
	c.n += int64(n)
	if err == io.EOF {
		if c.n < c.Size {
			return n, c.Describe(c.n, false)
		}
		// Defer EOF to the next call so the final check above runs.
		return n, nil
	}
	return n, err
}
