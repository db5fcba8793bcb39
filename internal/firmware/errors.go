package firmware

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
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
	// transient marks outages (network errors, timeouts, throttling, 5xx):
	// trying again later may succeed.
	transient bool
}

// Error returns "op url: cause".
func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Op, e.URL, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Transient reports whether the error comes from an outage that may pass
// (controllers.FirmwareChecker retries these instead of stalling a rollout).
func (e *Error) Transient() bool { return e.transient }

// IsTransient reports whether err, or an error it wraps, has a
// Transient() bool method that returns true.
func IsTransient(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient()
}

// kindError pairs a sentinel with detail, so the message can say which
// container or account while errors.Is still matches the sentinel.
type kindError struct {
	kind   error
	detail string
	cause  error
}

func (k *kindError) Error() string {
	msg := k.kind.Error()
	if k.detail != "" {
		msg += ": " + k.detail
	}
	if k.cause != nil {
		msg += ": " + k.cause.Error()
	}
	return msg
}

func (k *kindError) Unwrap() []error {
	errs := []error{k.kind}
	if k.kind == ErrContainerNotFound {
		errs = append(errs, ErrNotFound)
	}
	if k.cause != nil {
		errs = append(errs, k.cause)
	}
	return errs
}

func kind(sentinel error, detail string, cause error) error {
	return &kindError{kind: sentinel, detail: detail, cause: cause}
}

// classifyAzure turns an SDK error into a store error: missing blob and
// missing container are told apart, credentials problems say what to check,
// and outages are marked transient. The SDK's own message (method, URL,
// status, error code) is kept as the cause, but never a credential.
func classifyAzure(op, url, container, account string, err error) *Error {
	e := &Error{Op: op, URL: url}
	var re *azcore.ResponseError
	switch {
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		e.Err = kind(ErrContainerNotFound, fmt.Sprintf("container %q does not exist in storage account %s", container, account), nil)
	case bloberror.HasCode(err, bloberror.BlobNotFound):
		e.Err = kind(ErrNotFound, fmt.Sprintf("no blob of that name in container %q", container), nil)
	case bloberror.HasCode(err, bloberror.BlobAlreadyExists):
		e.Err = kind(ErrExists, "pass overwrite to replace it", nil)
	case bloberror.HasCode(err, bloberror.ConditionNotMet):
		e.Err = kind(ErrChanged, "the blob was overwritten; the next attempt reads the new version", nil)
		e.transient = true
	case bloberror.HasCode(err, bloberror.AuthenticationFailed):
		e.Err = kind(ErrAccessDenied, fmt.Sprintf("storage account %s refused the credentials (AuthenticationFailed): check the account key, SAS token or Azure AD identity", account), nil)
	case bloberror.HasCode(err, bloberror.AuthorizationFailure, bloberror.AuthorizationPermissionMismatch,
		bloberror.AuthorizationResourceTypeMismatch, bloberror.AuthorizationServiceMismatch,
		bloberror.AuthorizationProtocolMismatch, bloberror.AuthorizationSourceIPMismatch, bloberror.InsufficientAccountPermissions):
		// Azure uses these when the identity or SAS lacks a permission;
		// Azurite also for a wrong account key.
		e.Err = kind(ErrAccessDenied, fmt.Sprintf("storage account %s refused the request (%s): check the account key or SAS token, and that the identity may do this (Storage Blob Data Reader to read, Contributor to upload) or the SAS permits it", account, errorCode(err)), nil)
	case errors.As(err, &re) && re.StatusCode == http.StatusForbidden:
		e.Err = kind(ErrAccessDenied, fmt.Sprintf("storage account %s answered 403 %s", account, re.ErrorCode), nil)
	case errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
		// A HEAD answer without an error code.
		e.Err = kind(ErrNotFound, fmt.Sprintf("in container %q", container), nil)
	default:
		e.Err = err
		e.transient = isOutage(err)
	}
	return e
}

func errorCode(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return "unknown"
}

// isOutage reports whether err looks like something that passes by itself:
// throttling, a server error, a timeout, a network failure.
func isOutage(err error) bool {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode == http.StatusTooManyRequests || re.StatusCode == http.StatusRequestTimeout || re.StatusCode >= 500
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if errors.Is(err, context.Canceled) {
		// The caller gave up; retrying is the caller's call, not an outage
		// of the store, but it is not a reason to stall a rollout either.
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}
