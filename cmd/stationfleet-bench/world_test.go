package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
)

// TestSeededObservationIsCurrent: the herd's twins hold what the CUPS
// server would record for the stations' first poll, so that poll costs one
// twin read and no observation write, as row 2 says it measures. The seed
// broke twice unnoticed: once refused by the emulator (a patch's nulls in
// a document), once missing cupsCredCrc (every poll wrote its twin).
func TestSeededObservationIsCurrent(t *testing.T) {
	dir := t.TempDir()
	hub := hubsim.Start(t, hubsim.Options{CertDir: filepath.Join(dir, "hub")})
	w := &world{dir: dir, hub: hub}
	var err error
	if w.signer, err = embedded.LoadOrCreateSigner(filepath.Join(dir, "keys", "sig-0.pem")); err != nil {
		t.Fatal(err)
	}
	if w.old, err = w.signer.Publish(filepath.Join(dir, "fw"), "2.0.6", 0); err != nil {
		t.Fatal(err)
	}
	w.specs = embedded.FleetSpec(3, 0, "2.0.6", w.signer)
	if err := w.seed(true); err != nil {
		t.Fatalf("seed: %v", err)
	}
	c, err := iothub.New(hub.ConnectionString(), iothub.WithCAFile(hub.CAFile()), iothub.WithEndpoint(hub.Addr()), iothub.WithoutRateLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, st := range embedded.Stations(w.specs, "http://127.0.0.1:1") {
		tw, err := c.Get(context.Background(), embedded.DeviceID(w.specs[i].EUI))
		if err != nil {
			t.Fatal(err)
		}
		req, err := cups.ParseRequest(st.State().RequestBody())
		if err != nil {
			t.Fatal(err)
		}
		obs, record, _ := cups.Observe(tw.Observation, req, cups.Outcome{}, time.Now(), 0)
		if record {
			t.Errorf("station %d: its first poll would write its twin: seeded %+v, recorded %+v", i, *tw.Observation, obs)
		}
	}
}
