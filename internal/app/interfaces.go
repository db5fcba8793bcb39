package app

import (
	"github.com/stationfleet/stationfleet/controllers"
	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/iothub"
)

// The adapters satisfy the interfaces their consumers declare. The
// assertions live here, where the adapters are wired, so that no adapter
// imports its consumer (docs/interfaces.md).
var (
	_ controllers.TwinRegistry = (*iothub.Client)(nil)
	_ controllers.TwinCache    = (*cups.TwinCache)(nil)
	_ cups.TwinStore           = (*iothub.Client)(nil)
)
