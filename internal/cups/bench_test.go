package cups

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// serveBench serves h on loopback until the benchmark ends and returns its
// base URL.
func serveBench(b *testing.B, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// startBenchCUPS runs a Server (insecure, plain HTTP like the baseline) and
// returns its update-info URL.
func startBenchCUPS(b *testing.B, store *memStore, blobs *memBlobs) string {
	b.Helper()
	srv, err := NewServer(Options{Insecure: true, CacheTTL: time.Hour}, store, blobs,
		WithRegisterer(prometheus.NewRegistry()), WithLogger(logr.Discard()))
	must(b, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, ln); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String() + UpdateInfoPath
}

// loadResult is what one load run measured.
type loadResult struct {
	reqPerSec float64
	p99       time.Duration
	failures  int64
	lat       []time.Duration
}

// loadClient returns a client keeping up to conc connections alive; reuse
// it across runs so that timed runs do not pay for (or trip over the
// listen backlog with) 256 simultaneous dials.
func loadClient(b *testing.B, conc int) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, ForceAttemptHTTP2: false}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// runLoad sends total requests from conc concurrent clients, each on its own
// kept-alive connection, body(i) for the i-th request.
func runLoad(c *http.Client, url string, conc, total int, body func(i int) []byte) loadResult {
	var next, failures atomic.Int64
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[w] = make([]time.Duration, 0, total/conc+1)
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				t0 := time.Now()
				resp, err := c.Post(url, "application/json", bytes.NewReader(body(i)))
				if err != nil {
					failures.Add(1)
					continue
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != noChangeBodySize {
					failures.Add(1)
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	return loadResult{reqPerSec: float64(total) / elapsed.Seconds(), failures: failures.Load(), p99: p99(all), lat: all}
}

// p99 returns the 99th percentile of lat.
func p99(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// BenchmarkNoChange measures the no-change path end to end over loopback
// with 256 concurrent stations (1024 distinct ones, twins cached), against
// a bare net/http handler writing 14 zero bytes under the same load, in
// the same run (DESIGN.md section 9: >= 0.8x, p99 <= 5 ms).
func BenchmarkNoChange(b *testing.B) {
	const conc, stations = 256, 1024
	store := newMemStore()
	bodies := make([][]byte, stations)
	for i := range stations {
		eui := EUI(0x0016C001F0000000 + uint64(i))
		store.put(&twin.Twin{DeviceID: eui.DeviceID(), CUPS: twin.CUPS{
			CupsURI: "http://127.0.0.1:7171", Firmware: twin.Firmware{Package: "v1"},
		}})
		bodies[i] = []byte(fmt.Sprintf(`{"router":"%s","cupsUri":"http://127.0.0.1:7171","tcUri":null,"cupsCredCrc":2077607535,"tcCredCrc":2077607535,"station":"2.0.6(linux/std) 2026-11-27 18:19:31","model":"linux","package":"v1","keys":[4101823099]}`, eui))
	}
	cupsURL := startBenchCUPS(b, store, nil)
	baseURL := serveBench(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "14")
		_, _ = w.Write(noChangeBody)
	})) + UpdateInfoPath
	body := func(i int) []byte { return bodies[i%stations] }
	cupsClient, baseClient := loadClient(b, conc), loadClient(b, conc)
	// Warm both: connections, and the twin cache (first sight of each station is written).
	runLoad(cupsClient, cupsURL, conc, 4*stations, body)
	runLoad(baseClient, baseURL, conc, 4*stations, body)

	// Interleave short rounds of each, so that whatever else the machine
	// runs weighs on both sides alike.
	const rounds = 8
	total := max(b.N, 24_000)
	var cups, base loadResult
	var cupsLat, baseLat []time.Duration
	var cupsTime, baseTime time.Duration
	roundRatios := make([]float64, 0, rounds)
	b.ResetTimer()
	for range rounds {
		t0 := time.Now()
		r := runLoad(baseClient, baseURL, conc, total/rounds, body)
		bt := time.Since(t0)
		baseTime += bt
		base.failures += r.failures
		baseLat = append(baseLat, r.lat...)
		t0 = time.Now()
		r = runLoad(cupsClient, cupsURL, conc, total/rounds, body)
		ct := time.Since(t0)
		cupsTime += ct
		cups.failures += r.failures
		cupsLat = append(cupsLat, r.lat...)
		roundRatios = append(roundRatios, bt.Seconds()/ct.Seconds()) // same request count: the rate ratio
	}
	b.StopTimer()
	cups.reqPerSec = float64(total/rounds*rounds) / cupsTime.Seconds()
	base.reqPerSec = float64(total/rounds*rounds) / baseTime.Seconds()
	cups.p99, base.p99 = p99(cupsLat), p99(baseLat)
	baseRate := base.reqPerSec
	if cups.failures+base.failures > 0 {
		b.Fatalf("failed requests: cups %d, baseline %d", cups.failures, base.failures)
	}
	b.ReportMetric(cups.reqPerSec, "cups-req/s")
	b.ReportMetric(baseRate, "baseline-req/s")
	b.ReportMetric(cups.reqPerSec/baseRate, "ratio")
	b.ReportMetric(slices.Min(roundRatios), "ratio-min")
	b.ReportMetric(slices.Max(roundRatios), "ratio-max")
	b.ReportMetric(float64(cups.p99.Microseconds())/1000, "cups-p99-ms")
	b.ReportMetric(float64(base.p99.Microseconds())/1000, "baseline-p99-ms")
}

// BenchmarkFirmware streams a firmware of 8 and 64 MiB to 32 concurrent
// stations, reports throughput against http.ServeContent of the same bytes
// and the server's peak heap growth, which must not follow the firmware
// size (DESIGN.md section 9: < 16 MiB, >= 0.8x).
func BenchmarkFirmware(b *testing.B) {
	for _, size := range []int64{8 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("size=%dMiB", size>>20), func(b *testing.B) { benchFirmware(b, size) })
	}
}

func benchFirmware(b *testing.B, size int64) {
	const conc = 32
	store, blobs := newMemStore(), newMemBlobs()
	blobs.gen["mem://fw/big"] = size
	bodies := make([][]byte, conc)
	for i := range conc {
		eui := EUI(0x0016C002F0000000 + uint64(i))
		store.put(&twin.Twin{DeviceID: eui.DeviceID(), CUPS: twin.CUPS{Firmware: twin.Firmware{
			Package: "v2", URL: "mem://fw/big", Signature: testSignature, KeyChecksum: u32(vectorKeyCRC),
		}}})
		bodies[i] = []byte(fmt.Sprintf(`{"router":"%s","cupsUri":"","tcUri":null,"cupsCredCrc":2077607535,"tcCredCrc":2077607535,"station":"2.0.6(linux/std) 2026-11-27 18:19:31","model":"linux","package":"v1","keys":[4101823099]}`, eui))
	}
	cupsURL := startBenchCUPS(b, store, blobs)
	baseURL := serveBench(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, &patternReader{n: size})
	}))

	download := func(url string, post bool) time.Duration {
		tr := &http.Transport{MaxIdleConnsPerHost: conc, ForceAttemptHTTP2: false}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		var wg sync.WaitGroup
		start := time.Now()
		for i := range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var resp *http.Response
				var err error
				if post {
					resp, err = c.Post(url, "application/json", bytes.NewReader(bodies[i]))
				} else {
					resp, err = c.Get(url)
				}
				if err != nil {
					b.Error(err)
					return
				}
				defer resp.Body.Close()
				n, err := io.Copy(io.Discard, resp.Body)
				if err != nil || n < size || resp.ContentLength != n {
					b.Errorf("got %d bytes of %d (Content-Length %d): %v", n, size, resp.ContentLength, err)
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}

	// Peak heap growth while serving, sampled during both sides alike (a
	// sample stops the world), kept for the CUPS side only.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapAlloc
	var peak atomic.Uint64
	var measuring atomic.Bool
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if measuring.Load() && m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
			}
		}
	}()
	b.ResetTimer()
	var cupsTime, baseTime time.Duration
	var roundRatios []float64
	for range b.N {
		measuring.Store(true)
		ct := download(cupsURL, true)
		measuring.Store(false)
		bt := download(baseURL, false)
		cupsTime, baseTime = cupsTime+ct, baseTime+bt
		roundRatios = append(roundRatios, bt.Seconds()/ct.Seconds())
	}
	b.StopTimer()
	close(stop)
	<-sampled
	bytesMoved := float64(size * conc * int64(b.N))
	cupsRate, baseRate := bytesMoved/cupsTime.Seconds()/(1<<20), bytesMoved/baseTime.Seconds()/(1<<20)
	growth := float64(0)
	if p := peak.Load(); p > baseHeap {
		growth = float64(p-baseHeap) / (1 << 20)
	}
	b.ReportMetric(cupsRate, "cups-MiB/s")
	b.ReportMetric(baseRate, "servecontent-MiB/s")
	b.ReportMetric(cupsRate/baseRate, "ratio")
	b.ReportMetric(slices.Min(roundRatios), "ratio-min")
	b.ReportMetric(slices.Max(roundRatios), "ratio-max")
	b.ReportMetric(growth, "peak-heap-growth-MiB")
}
