package hubsim

import (
	"net/http"
	"testing"
)

// BenchmarkHerd100k seeds 100,000 devices and measures twin GETs and a
// selective query page against it: neither may cost O(devices) per GET.
func BenchmarkHerd100k(b *testing.B) {
	hub := Start(b, Options{PolicyKey: testKey})
	for i := range 100_000 {
		if err := hub.Seed(devID(i), map[string]any{"region": "eu"}, map[string]any{"cups": map[string]any{"package": "1.0"}}); err != nil {
			b.Fatal(err)
		}
	}
	c := newRaw(hub)
	tok := c.token(b)
	b.Run("getTwin", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				code, _, _ := c.doB(b, http.MethodGet, "/twins/"+devID(i%100_000), tok, nil)
				if code != http.StatusOK {
					b.Errorf("status %d", code)
				}
				i += 7919
			}
		})
	})
	b.Run("queryPage", func(b *testing.B) {
		for range b.N {
			code, _, _ := c.doB(b, http.MethodPost, "/devices/query", tok,
				map[string]any{"query": "SELECT * FROM devices WHERE deviceId IN ['" + devID(99_999) + "', '" + devID(5) + "']"})
			if code != http.StatusOK {
				b.Errorf("status %d", code)
			}
		}
	})
}
