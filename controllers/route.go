package controllers

// ReportRouter sends a station's report to the controller that runs its
// rollout: in process through the Waker when this process's controller runs
// it (the rollout's namespace is watched and this replica leads), otherwise
// through the ReportRelay and the API server. A manager thus never wakes
// itself for a rollout outside its namespaces, and the owner hears of every
// report within about a second wherever the station polled. NotifyStation
// satisfies the CUPS server's Notifier.
type ReportRouter struct {
	// Waker wakes this process's controller.
	Waker *Waker
	// Relay reaches the controller of another process.
	Relay *ReportRelay
	// Elected is closed once this process runs its controller (the
	// manager's Elected()); nil means it always does.
	Elected <-chan struct{}
}

// NotifyStation routes the report of the station deviceID of the rollout
// "namespace/name". It never blocks.
func (r *ReportRouter) NotifyStation(rollout, deviceID string) {
	if r.Waker.Watches(rollout) && r.leading() {
		r.Waker.NotifyStation(rollout, deviceID)
		return
	}
	r.Relay.Report(rollout, deviceID)
}

func (r *ReportRouter) leading() bool {
	if r.Elected == nil {
		return true
	}
	select {
	case <-r.Elected:
		return true
	default:
		return false
	}
}
