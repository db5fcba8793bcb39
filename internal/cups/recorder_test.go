package cups

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stationfleet/stationfleet/internal/twin"
)

func TestRecorderCoalescesWrites(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	tw := fleetTwinA(t)
	tw.Ownership = &twin.Ownership{Rollout: "fleet/spring"}
	store.put(tw)
	var woken []string
	srv, err := NewServer(Options{Insecure: true}, store, nil, WithRegisterer(prometheus.NewRegistry()),
		WithNotifier(NotifierFunc(func(r, _ string) { woken = append(woken, r) })))
	g.Expect(err).NotTo(HaveOccurred())
	rec := srv.rec
	rec.running.Store(true) // queue without workers, to see what piles up
	now := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	served := Decision{Outcome: Outcome{Served: "2.0.7"}, Record: true, Notify: true}
	for range 3 {
		rec.record(context.Background(), stationA, stationRequest(), served, now, tw, logr.Discard())
	}
	g.Expect(rec.queue).To(HaveLen(1), "one queued write per station, however many polls")
	g.Expect(store.writes.Load()).To(BeZero(), "nothing written on the request path")

	rec.write(context.Background(), <-rec.queue)
	g.Expect(store.writes.Load()).To(BeEquivalentTo(1))
	obs := store.observation(t, srv, stationA)
	g.Expect(obs.UpdatesServed).To(Equal(3), "every served update counts, even coalesced")
	g.Expect(woken).To(Equal([]string{"fleet/spring"}))
	g.Expect(rec.busy.Load()).To(BeZero())

	// Not running (a Server used only as a Handler): written at once.
	rec.running.Store(false)
	rec.record(context.Background(), stationA, stationRequest(), served, now, tw, logr.Discard())
	g.Expect(store.writes.Load()).To(BeEquivalentTo(2))
	g.Expect(store.observation(t, srv, stationA).UpdatesServed).To(Equal(4))
}
