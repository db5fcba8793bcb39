package firmware_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/firmware/local"
	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
)

// streamSizes are the two blob sizes compared: if memory grew with the blob,
// 64 MiB would allocate about 8x what 8 MiB does.
var streamSizes = []int64{8 * mib, 64 * mib}

// streamFixture stores a blob of each size in each backend.
type streamFixture struct {
	name  string
	store firmware.Store
	urls  map[int64]string
}

func newStreamFixtures(tb testing.TB) []streamFixture {
	tb.Helper()
	ctx := context.Background()
	dir, err := local.New(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = dir.Close() })
	a := azurite.Start(tb)
	if err := a.CreateContainer(ctx, "firmware"); err != nil {
		tb.Fatal(err)
	}
	fixtures := []streamFixture{
		{name: "local", store: dir, urls: map[int64]string{}},
		{name: "azurite", store: newAzureStore(tb, a), urls: map[int64]string{}},
	}
	for _, f := range fixtures {
		base := "file:"
		if f.name == "azurite" {
			base = "azblob://firmware/"
		}
		for _, size := range streamSizes {
			url := fmt.Sprintf("%sfw-%dMiB.bin", base, size/mib)
			if _, err := f.store.Upload(ctx, url, pseudoRandom(uint64(size), size), firmware.UploadOptions{}); err != nil {
				tb.Fatal(err)
			}
			f.urls[size] = url
		}
	}
	return fixtures
}

// discard is io.Discard without ReadFrom, so copying uses our buffer only.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// serveOnce streams a blob the way the CUPS server does: open, then copy
// through one fixed 32 KiB buffer.
func serveOnce(ctx context.Context, s firmware.Store, url string, buf []byte) error {
	r, n, err := s.Open(ctx, url)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	copied, err := io.CopyBuffer(discard{}, r, buf)
	if err != nil {
		return err
	}
	if copied != n {
		return fmt.Errorf("copied %d of %d bytes", copied, n)
	}
	return nil
}

// BenchmarkServeBlob streams 8 MiB and 64 MiB blobs from each backend and
// reports bytes allocated per operation; the log line gives the 64/8 ratio.
func BenchmarkServeBlob(b *testing.B) {
	ctx := context.Background()
	buf := make([]byte, 32<<10)
	for _, f := range newStreamFixtures(b) {
		allocs := map[int64]float64{}
		for _, size := range streamSizes {
			b.Run(fmt.Sprintf("%s/%dMiB", f.name, size/mib), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(size)
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for b.Loop() {
					if err := serveOnce(ctx, f.store, f.urls[size], buf); err != nil {
						b.Fatal(err)
					}
				}
				runtime.ReadMemStats(&after)
				allocs[size] = float64(after.TotalAlloc-before.TotalAlloc) / float64(b.N)
			})
		}
		if allocs[8*mib] > 0 {
			b.Logf("%s: B/op 8MiB=%.0f 64MiB=%.0f ratio(64/8)=%.2f (8.00 would mean proportional to size)",
				f.name, allocs[8*mib], allocs[64*mib], allocs[64*mib]/allocs[8*mib])
		}
	}
}

// TestServeBlobMemoryDoesNotScale: streaming a 64 MiB blob allocates about
// what an 8 MiB one does, and far less than the blob, on both backends.
func TestServeBlobMemoryDoesNotScale(t *testing.T) {
	ctx := context.Background()
	buf := make([]byte, 32<<10)
	const runs = 3
	for _, f := range newStreamFixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			g := NewWithT(t)
			perOp := map[int64]float64{}
			for _, size := range streamSizes {
				g.Expect(serveOnce(ctx, f.store, f.urls[size], buf)).To(Succeed()) // warm up connections
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for range runs {
					g.Expect(serveOnce(ctx, f.store, f.urls[size], buf)).To(Succeed())
				}
				runtime.ReadMemStats(&after)
				perOp[size] = float64(after.TotalAlloc-before.TotalAlloc) / runs
			}
			ratio := perOp[64*mib] / perOp[8*mib]
			t.Logf("%s: bytes allocated per stream: 8 MiB blob %.0f, 64 MiB blob %.0f, ratio %.2f", f.name, perOp[8*mib], perOp[64*mib], ratio)
			g.Expect(perOp[64*mib]).To(BeNumerically("<", 1*mib), "a 64 MiB stream allocates under 1 MiB")
			g.Expect(ratio).To(BeNumerically("<", 2), "allocations do not grow with blob size (8x the size would be ~8x)")
		})
	}
}
