// Package firmware reads and writes firmware images and station credential
// blobs: Azure Blob Storage in production (azblob:// and https:// URLs) and a
// local directory in the embedded default (file:// URLs). The CUPS server
// streams blobs from a Store; the rollout controller checks a rollout's
// firmware with a Checker before it writes any twin.
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

// Store is where firmware and credential blobs live. URLs are azblob://,
// https:// (or the configured endpoint's http://) and file:// URLs; see
// ParseURL.
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

// versioned is implemented by the readers Open returns: the version (ETag)
// whose bytes the reader delivers, so a Checker can remember what it
// verified.
type versioned interface {
	ETag() string
}

// countingReader enforces that exactly size bytes are delivered: a short
// stream ends with an error instead of io.EOF, a long one with an error
// instead of the extra bytes.
type countingReader struct {
	r    io.Reader
	size int64
	n    int64
	// describe builds the error for a stream that ran short or long.
	describe func(got int64, long bool) error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.size {
		// Everything promised was delivered; anything further is an error.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, c.describe(c.n+int64(n), true)
		}
		if err == nil {
			// A reader may return (0, nil); ask again once.
			n, err = c.r.Read(one[:])
			if n > 0 {
				return 0, c.describe(c.n+int64(n), true)
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
	if rest := c.size - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err == io.EOF {
		if c.n < c.size {
			return n, c.describe(c.n, false)
		}
		// Defer EOF to the next call so the final check above runs.
		return n, nil
	}
	return n, err
}
