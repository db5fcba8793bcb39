package app

import (
	"context"

	"github.com/stationfleet/stationfleet/controllers"
	"github.com/stationfleet/stationfleet/internal/analysis"
	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/firmware"
)

// The CUPS server streams blobs from the firmware router.
var _ cups.BlobOpener = (*firmware.Router)(nil)

// The controller's analysis steps measure with the Prometheus adapter.
var _ controllers.Analyzer = (*analysis.Client)(nil)

// firmwareChecker adapts firmware.Checker to the controller's
// FirmwareChecker: it converts the controller's FirmwareRef and marks a
// check that failed because the store was unavailable with
// controllers.ErrFirmwareUnavailable, so the controller retries it soon
// instead of stalling the rollout. The firmware package does not know the
// controller; this is where the two meet.
type firmwareChecker struct {
	checker *firmware.Checker
}

var _ controllers.FirmwareChecker = firmwareChecker{}

// newFirmwareChecker returns the controller's FirmwareChecker over a
// firmware.Checker reading from store, with maxSize (when positive) as the
// largest firmware accepted.
func newFirmwareChecker(store firmware.Store, maxSize int64) firmwareChecker {
	var opts []firmware.CheckerOption
	if maxSize > 0 {
		opts = append(opts, firmware.WithMaxSize(maxSize))
	}
	return firmwareChecker{checker: firmware.NewChecker(store, opts...)}
}

// Check checks the firmware ref names; see firmware.Checker.Check.
func (c firmwareChecker) Check(ctx context.Context, ref controllers.FirmwareRef) error {
	err := c.checker.Check(ctx, firmware.Ref{
		URL:         ref.URL,
		Signature:   ref.Signature,
		KeyChecksum: ref.KeyChecksum,
		PublicKey:   ref.PublicKey,
	})
	if err != nil && firmware.IsTransient(err) {
		return unavailableError{err}
	}
	return err
}

// unavailableError marks a firmware check that failed because its store was
// unavailable. Its message is the checker's own ("firmware X cannot be read
// now (will retry): ..."): the sentinel's words would only repeat it in the
// rollout's condition and events.
type unavailableError struct {
	err error
}

// Error returns the checker's message.
func (e unavailableError) Error() string { return e.err.Error() }

// Unwrap returns controllers.ErrFirmwareUnavailable and the checker's error.
func (e unavailableError) Unwrap() []error {
	return []error{controllers.ErrFirmwareUnavailable, e.err}
}
