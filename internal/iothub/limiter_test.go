package iothub

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestLimiterNeverExceedsTheRateInAnyWindow: after a lull, a client that asks
// as fast as it can still gets at most the configured rate in every window
// (a bucket with a whole window of burst would let through nearly twice).
func TestLimiterNeverExceedsTheRateInAnyWindow(t *testing.T) {
	cases := []struct {
		perSecond float64
		window    time.Duration
	}{
		{2000, time.Second},      // reads of a 5 x S3 hub at 80%
		{40, time.Second},        // writes, S1
		{16.0 / 60, time.Minute}, // query pages, S1
	}
	for _, tc := range cases {
		g := NewWithT(t)
		lim := limiter(tc.perSecond, tc.window)
		start := time.Unix(0, 0).Add(time.Hour) // a full bucket: the lull
		step := tc.window / 1000
		var allowed []time.Time
		for now := start; now.Before(start.Add(4 * tc.window)); now = now.Add(step) {
			for lim.AllowN(now, 1) {
				allowed = append(allowed, now)
			}
		}
		limit := int(tc.perSecond * tc.window.Seconds())
		if limit < 1 {
			limit = 1
		}
		for i := range allowed {
			j := i
			for j < len(allowed) && allowed[j].Sub(allowed[i]) < tc.window {
				j++
			}
			g.Expect(j-i).To(BeNumerically("<=", limit), "%v/s: %d requests in the window starting at %v", tc.perSecond, j-i, allowed[i].Sub(start))
		}
		// And it is not starved: over 4 windows it lets through at least 3.5
		// windows' worth.
		g.Expect(len(allowed)).To(BeNumerically(">=", int(3.5*float64(limit))))
	}
}
