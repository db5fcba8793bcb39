package iothub

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// BenchmarkTwinPatch measures twin patches per second through the adapter
// (rate limiting off) against the same emulator, over the same TLS setup,
// with a plain loop of raw conditional HTTP PATCHes as the baseline, in one
// run. It reports:
//
//	raw-patches/s       the baseline: one PATCH per write, ETag chained from the response
//	adapter-patches/s   the adapter's conditional write path (metrics, retry wrapper, iotservice)
//	update-writes/s     Update: read, mutate, conditional write (two requests per write)
//	adapter/raw         the ratio of the first two
func BenchmarkTwinPatch(b *testing.B) {
	hub, c := newHub(b)
	if err := hub.Seed("DEV1", nil, nil); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: hub.ClientTLSConfig(), MaxIdleConnsPerHost: 64}}
	key := connKey(b, hub.ConnectionString())
	url := "https://" + hub.Addr() + "/twins/DEV1?api-version=2020-09-30"

	cur, err := c.Get(ctx, "DEV1")
	if err != nil {
		b.Fatal(err)
	}
	etag := cur.ETag
	rawPatch := func(i int) {
		body, _ := json.Marshal(map[string]any{"tags": map[string]any{"n": i}})
		req, _ := http.NewRequest(http.MethodPatch, url, bytes.NewReader(body))
		tok, err := hubsim.SASToken(hub.HostName(), hubsim.DefaultPolicyName, key, time.Now().Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", tok)
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("If-Match", `"`+etag+`"`)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var out struct {
			ETag string `json:"etag"`
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &out) != nil {
			b.Fatalf("raw patch: %d %s", resp.StatusCode, data)
		}
		etag = out.ETag
	}
	rawPatch(-1) // warm the connection

	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		rawPatch(i)
	}
	raw := time.Since(start)

	start = time.Now()
	for i := 0; i < b.N; i++ {
		t, err := c.patch(ctx, "DEV1", etag, &twin.Patch{Tags: map[string]any{"n": i}})
		if err != nil {
			b.Fatal(err)
		}
		etag = t.ETag
	}
	adapter := time.Since(start)

	start = time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := c.Update(ctx, "DEV1", func(*twin.Twin) (*twin.Patch, error) {
			return &twin.Patch{Tags: map[string]any{"n": i}}, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	update := time.Since(start)
	b.StopTimer()

	n := float64(b.N)
	b.ReportMetric(n/raw.Seconds(), "raw-patches/s")
	b.ReportMetric(n/adapter.Seconds(), "adapter-patches/s")
	b.ReportMetric(n/update.Seconds(), "update-writes/s")
	b.ReportMetric(raw.Seconds()/adapter.Seconds(), "adapter/raw")
}

func connKey(b *testing.B, cs string) string {
	for _, kv := range bytes.Split([]byte(cs), []byte(";")) {
		if k, v, ok := bytes.Cut(kv, []byte("=")); ok && string(k) == "SharedAccessKey" {
			return string(v)
		}
	}
	b.Fatal("no key in connection string")
	return ""
}
