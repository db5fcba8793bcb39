package cups

import (
	"context"
	"io"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// TwinStore is what the CUPS server needs from the twin registry: read a
// station's twin, and durably record what it observed of the station. Its
// methods have exactly the shapes of controllers.TwinRegistry's Get and
// Update, so the IoT Hub adapter (internal/iothub) satisfies it.
type TwinStore interface {
	// Get reads one twin. An error wrapping twin.ErrNotFound means the
	// device does not exist.
	Get(ctx context.Context, deviceID string) (*twin.Twin, error)
	// Update reads the twin, calls mutate with it, and writes the patch mutate
	// returns with the twin's ETag, calling mutate again on a stale ETag. A
	// nil patch writes nothing. It returns the twin as written.
	Update(ctx context.Context, deviceID string, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error)
}

// TwinGetter is the read half of TwinStore, the part TwinCache wraps.
type TwinGetter interface {
	// Get reads one twin; see TwinStore.Get.
	Get(ctx context.Context, deviceID string) (*twin.Twin, error)
}

// BlobOpener opens firmware and credential blobs for streaming.
// internal/firmware's store implements it.
type BlobOpener interface {
	// Open returns a reader of the blob at url and its exact size, known
	// before the first byte is read. The caller closes the reader.
	Open(ctx context.Context, url string) (io.ReadCloser, int64, error)
}

// Notifier is told, in process, that a station owned by a rollout reported
// something new, so that the controller wakes at once instead of at its
// next periodic check. Notify must not block.
type Notifier interface {
	// Notify is called with the owning rollout as "namespace/name"
	// (twin.Ownership.Rollout) and the station's device id, so that the
	// controller re-reads just that station's twin.
	Notify(rollout, deviceID string)
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(rollout, deviceID string)

// Notify implements Notifier.
func (f NotifierFunc) Notify(rollout, deviceID string) { f(rollout, deviceID) }
