package azblob

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/stationfleet/stationfleet/internal/firmware"
)

// classify turns an SDK error into a store error: missing blob and
// missing container are told apart, credentials problems say what to check,
// and outages are marked transient. The SDK's own message (method, URL,
// status, error code) is kept as the cause, but never a credential.
func classify(op, url, container, account string, err error) *firmware.Error {
	e := &firmware.Error{Op: op, URL: url}
	var re *azcore.ResponseError
	switch {
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		e.Err = firmware.Kind(firmware.ErrContainerNotFound, fmt.Sprintf("container %q does not exist in storage account %s", container, account), nil)
	case bloberror.HasCode(err, bloberror.BlobNotFound):
		e.Err = firmware.Kind(firmware.ErrNotFound, fmt.Sprintf("no blob of that name in container %q", container), nil)
	case bloberror.HasCode(err, bloberror.BlobAlreadyExists):
		e.Err = firmware.Kind(firmware.ErrExists, "pass overwrite to replace it", nil)
	case bloberror.HasCode(err, bloberror.ConditionNotMet):
		e.Err = firmware.Kind(firmware.ErrChanged, "the blob was overwritten; the next attempt reads the new version", nil)
		e.Outage = true
	case bloberror.HasCode(err, bloberror.AuthenticationFailed):
		e.Err = firmware.Kind(firmware.ErrAccessDenied, fmt.Sprintf("storage account %s refused the credentials (AuthenticationFailed): check the account key, SAS token or Azure AD identity", account), nil)
	case bloberror.HasCode(err, bloberror.AuthorizationFailure, bloberror.AuthorizationPermissionMismatch,
		bloberror.AuthorizationResourceTypeMismatch, bloberror.AuthorizationServiceMismatch,
		bloberror.AuthorizationProtocolMismatch, bloberror.AuthorizationSourceIPMismatch, bloberror.InsufficientAccountPermissions):
		// Azure uses these when the identity or SAS lacks a permission;
		// Azurite also for a wrong account key.
		e.Err = firmware.Kind(firmware.ErrAccessDenied, fmt.Sprintf("storage account %s refused the request (%s): check the account key or SAS token, and that the identity may do this (Storage Blob Data Reader to read, Contributor to upload) or the SAS permits it", account, errorCode(err)), nil)
	case errors.As(err, &re) && re.StatusCode == http.StatusForbidden:
		e.Err = firmware.Kind(firmware.ErrAccessDenied, fmt.Sprintf("storage account %s answered 403 %s", account, re.ErrorCode), nil)
	case errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
		// A HEAD answer without an error code.
		e.Err = firmware.Kind(firmware.ErrNotFound, fmt.Sprintf("in container %q", container), nil)
	default:
		e.Err = err
		e.Outage = isOutage(err)
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
