package v1alpha1

// WrittenCounts counts the stations a rollout wrote by outcome. A batch's
// status holds it (a batch holds only written stations), and so does the
// rollout's, inside StationCounts.
type WrittenCounts struct {
	// inProgress is how many are written and have no outcome yet.
	// +optional
	InProgress int32 `json:"inProgress"`
	// updated is how many reported the new package.
	// +optional
	Updated int32 `json:"updated"`
	// failed is how many failed (status.failures lists the latest reasons).
	// +optional
	Failed int32 `json:"failed"`
}

// Add counts one station with outcome o and reports whether it did: a
// Pending or Skipped station (never written) is not counted.
func (c *WrittenCounts) Add(o StationOutcome) bool {
	switch o {
	case OutcomeInProgress:
		c.InProgress++
	case OutcomeUpdated:
		c.Updated++
	case OutcomeFailed:
		c.Failed++
	default:
		return false
	}
	return true
}

// Each calls f with every outcome the counts hold and its count, in the
// order InProgress, Updated, Failed (zero counts included).
func (c WrittenCounts) Each(f func(StationOutcome, int32)) {
	f(OutcomeInProgress, c.InProgress)
	f(OutcomeUpdated, c.Updated)
	f(OutcomeFailed, c.Failed)
}

// Total is how many stations the counts hold.
func (c WrittenCounts) Total() int32 { return c.InProgress + c.Updated + c.Failed }

// StationCounts counts every target of a rollout by outcome: the stations
// not yet written, the written ones (WrittenCounts), and those skipped.
type StationCounts struct {
	// pending is how many targets are not yet written.
	// +optional
	Pending int32 `json:"pending"`

	WrittenCounts `json:",inline"`

	// skipped is how many are owned by another active rollout or report a
	// package firmware.upgradeFrom does not list (skippedNotOnUpgradePath).
	// +optional
	Skipped int32 `json:"skipped"`
}

// Add counts one station with outcome o and reports whether it did (false
// only for a value that is no StationOutcome).
func (c *StationCounts) Add(o StationOutcome) bool {
	switch o {
	case OutcomePending:
		c.Pending++
	case OutcomeSkipped:
		c.Skipped++
	default:
		return c.WrittenCounts.Add(o)
	}
	return true
}

// Each calls f with every outcome and its count, in the order Pending,
// InProgress, Updated, Failed, Skipped (zero counts included).
func (c StationCounts) Each(f func(StationOutcome, int32)) {
	f(OutcomePending, c.Pending)
	c.WrittenCounts.Each(f)
	f(OutcomeSkipped, c.Skipped)
}

// Total is how many stations the counts hold; for a rollout's status it
// equals status.targets.
func (c StationCounts) Total() int32 { return c.Pending + c.WrittenCounts.Total() + c.Skipped }
