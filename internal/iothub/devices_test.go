package iothub

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
)

// TestStationIdentity creates, finds and deletes a device through the real
// client against the emulator; creating an existing device is not an error.
func TestStationIdentity(t *testing.T) {
	g := NewWithT(t)
	hub := hubsim.Start(t, hubsim.Options{})
	c, err := New(hub.ConnectionString(), WithCAFile(hub.CAFile()), WithEndpoint(hub.Addr()), WithoutRateLimits())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	const id = "0016C0FFFE00D001"

	ok, err := c.StationExists(ctx, id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ok).To(BeFalse())
	created, err := c.CreateStation(ctx, id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(created).To(BeTrue())
	created, err = c.CreateStation(ctx, id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(created).To(BeFalse(), "an existing device is reported, not an error")
	ok, err = c.StationExists(ctx, id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ok).To(BeTrue())
	_, err = c.Get(ctx, id)
	g.Expect(err).NotTo(HaveOccurred(), "the device has a twin")

	g.Expect(c.DeleteStation(ctx, id)).To(Succeed())
	ok, err = c.StationExists(ctx, id)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ok).To(BeFalse())
	g.Expect(c.DeleteStation(ctx, id)).To(Succeed(), "deleting a missing device is not an error")
}
