package controllers

import (
	"context"
	"errors"

	"github.com/stationfleet/stationfleet/internal/analysis"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Analyzer takes one measurement of an analysis step: it sends the rendered
// query to Prometheus and evaluates the success condition over the result.
// Every problem is a measurement that ended in an error, never an error of
// the pass. internal/analysis's Client implements it.
type Analyzer interface {
	Measure(ctx context.Context, req analysis.Request) analysis.Outcome
}

// TwinRegistry is what the rollout controller needs from IoT Hub. The adapter
// in internal/iothub implements it on the real service client; it rate-limits
// and retries transient failures (429, 5xx) itself.
type TwinRegistry interface {
	// Query calls fn with each page of twins matching sel, in the registry's
	// order. It stops early when fn returns an error and returns that error.
	Query(ctx context.Context, sel twin.Selector, fn func(page []*twin.Twin) error) error
	// Get reads one twin. A missing device gives an error wrapping
	// twin.ErrNotFound.
	Get(ctx context.Context, deviceID string) (*twin.Twin, error)
	// Update reads the twin, calls mutate with it, and writes the patch mutate
	// returns with the twin's ETag (If-Match). When the ETag is stale it reads
	// the twin again and calls mutate again: a write is never blind. A nil
	// patch means nothing to write. It returns the twin as written.
	Update(ctx context.Context, deviceID string, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error)
	// UpdateKnown is Update on a twin the caller holds with its ETag (a
	// Query page's): mutate is called with it and the patch written with
	// its ETag, without reading it again. When the ETag is stale it reads
	// the twin and goes on as Update, so mutate decides on the fresh twin.
	UpdateKnown(ctx context.Context, t *twin.Twin, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error)
}

// FirmwareChecker checks, before any twin is written, that a rollout's
// firmware can be served: the blob exists, its size is within bounds, and
// (when a public key is given) the signature verifies over its content.
// internal/app adapts internal/firmware's Checker to it.
type FirmwareChecker interface {
	// Check returns nil when the firmware is good; otherwise an error whose
	// message tells a person what to fix. An error wrapping
	// ErrFirmwareUnavailable (a store outage) is retried soon; every other
	// error stalls the rollout until it is checked again.
	Check(ctx context.Context, ref FirmwareRef) error
}

// ErrFirmwareUnavailable is wrapped by a FirmwareChecker's error when the
// firmware could not be checked because its store was unavailable: the
// check is retried after StatusResync instead of PreflightRetry.
var ErrFirmwareUnavailable = errors.New("firmware store unavailable")

// FirmwareRef is what FirmwareChecker needs to know about a rollout's firmware.
type FirmwareRef struct {
	// URL is the blob's location, in a scheme a firmware backend
	// registered (internal/firmware/stores).
	URL string
	// Signature is base64 of the DER ECDSA signature.
	Signature string
	// KeyChecksum is the CRC32 of the verifying sig-N.key.
	KeyChecksum uint32
	// PublicKey is the 64-byte sig-N.key, or nil when none was given.
	PublicKey []byte
}

// TwinCache is the CUPS server's short-lived twin cache; the controller
// invalidates a station's entry after writing its twin so that the next poll
// on this replica sees the new firmware at once.
type TwinCache interface {
	Invalidate(deviceID string)
}
