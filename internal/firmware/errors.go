package firmware

import (
	"errors"
	"fmt"
)

// Sentinel errors; match them with errors.Is. The errors the store returns
// are *Error values that wrap one of these (or the cause of an outage).
var (
	// ErrNotFound: the blob does not exist. Also matched by
	// ErrContainerNotFound errors.
	ErrNotFound = errors.New("not found")
	// ErrContainerNotFound: the blob's container does not exist.
	ErrContainerNotFound = errors.New("container not found")
	// ErrAccessDenied: the store refused the credentials or they lack a
	// permission.
	ErrAccessDenied = errors.New("access denied")
	// ErrChanged: the blob changed or broke while it was being read; the
	// stream was ended rather than deliver other bytes than announced.
	ErrChanged = errors.New("blob changed while streaming")
	// ErrInterrupted: the download broke and could not be resumed.
	ErrInterrupted = errors.New("download interrupted")
	// ErrExists: Upload without Overwrite found the blob already there.
	ErrExists = errors.New("already exists")
	// ErrInvalidURL: the URL is malformed, has an unknown scheme, or names
	// something this store does not serve.
	ErrInvalidURL = errors.New("invalid blob URL")
	// ErrOutsideRoot: a file:// URL escapes the local store's root.
	ErrOutsideRoot = errors.New("path escapes the firmware directory")
)

// Error is the error type of every Store operation.
type Error struct {
	// Op is the operation: open, stat, list, upload, read.
	Op string
	// URL is the blob the operation was about.
	URL string
	// Err is the cause: one of the sentinel errors, possibly wrapping the
	// SDK's or the OS's error, or an outage's error.
	Err error
	// Outage marks errors from an outage (network errors, timeouts,
	// throttling, 5xx, a blob replaced while it was read): trying again
	// later may succeed.
	Outage bool
}

// Error returns "op url: cause".
func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Op, e.URL, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Transient reports whether the error comes from an outage that may pass
// (the rollout controller retries these instead of stalling a rollout).
func (e *Error) Transient() bool { return e.Outage }

// IsTransient reports whether err, or an error it wraps, has a
// Transient() bool method that returns true.
func IsTransient(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient()
}

// KindError pairs a sentinel with detail, so the message can say which
// container or account while errors.Is still matches the sentinel. Backends
// build them with Kind.
type KindError struct {
	// Kind is one of the sentinel errors.
	Kind error
	// Detail says what exactly, for a person: which container, account or
	// directory.
	Detail string
	// Cause is the underlying error, if any.
	Cause error
}

// Error returns "kind: detail: cause", leaving out what is empty.
func (k *KindError) Error() string {
	msg := k.Kind.Error()
	if k.Detail != "" {
		msg += ": " + k.Detail
	}
	if k.Cause != nil {
		msg += ": " + k.Cause.Error()
	}
	return msg
}

// Unwrap returns the sentinel (and ErrNotFound for ErrContainerNotFound)
// and the cause.
func (k *KindError) Unwrap() []error {
	errs := []error{k.Kind}
	if k.Kind == ErrContainerNotFound {
		errs = append(errs, ErrNotFound)
	}
	if k.Cause != nil {
		errs = append(errs, k.Cause)
	}
	return errs
}

// Kind returns a *KindError: the sentinel, what exactly, and the cause (may
// be nil).
func Kind(sentinel error, detail string, cause error) error {
	return &KindError{Kind: sentinel, Detail: detail, Cause: cause}
}
