package iothub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// newHub starts an emulator and a Client on it over HTTPS, with rate limits
// off and fast retries so tests measure behaviour, not defaults.
func newHub(t testing.TB, opts ...Option) (*hubsim.Server, *Client) {
	t.Helper()
	hub := hubsim.Start(t, hubsim.Options{})
	base := []Option{WithCAFile(hub.CAFile()), WithEndpoint(hub.Addr()), WithoutRateLimits(), WithRetry(5, 10*time.Millisecond, 50*time.Millisecond)}
	c, err := New(hub.ConnectionString(), append(base, opts...)...)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return hub, c
}

func u32(v uint32) *uint32 { return &v }

func devID(i int) string { return fmt.Sprintf("0011%012X", i) }

func TestGet(t *testing.T) {
	hub, c := newHub(t)
	g := NewWithT(t)
	g.Expect(hub.Seed("001122FFFE334455",
		map[string]any{"region": "eu", "stationfleet": map[string]any{"rollout": map[string]any{"name": "ns/r1", "uid": "u1", "batch": 2}}},
		map[string]any{"cups": map[string]any{"package": "1.0", "fwKeyChecksum": 1234, "cupsUri": "https://cups"}, "clientThumbprint": []any{"AB"}},
	)).To(Succeed())

	tw, err := c.Get(context.Background(), "001122FFFE334455")
	g.Expect(err).NotTo(HaveOccurred())
	doc, _ := hub.TwinDocument("001122FFFE334455")
	g.Expect(tw.ETag).To(Equal(doc["etag"]))
	g.Expect(tw.CUPS.Package).To(Equal("1.0"))
	g.Expect(tw.CUPS.KeyChecksum).To(Equal(u32(1234)))
	g.Expect(tw.CUPS.CupsURI).To(Equal("https://cups"))
	g.Expect(tw.ClientThumbprints).To(Equal([]string{"AB"}))
	g.Expect(tw.Tags["region"]).To(Equal("eu"))
	g.Expect(tw.Ownership).NotTo(BeNil())
	g.Expect(tw.Ownership.UID).To(Equal("u1"))
	g.Expect(c.Stats().Reads).To(BeNumerically("==", 1))

	_, err = c.Get(context.Background(), "FFFFFFFFFFFFFFFF")
	g.Expect(errors.Is(err, twin.ErrNotFound)).To(BeTrue(), "%v", err)
	g.Expect(hub.Requests(hubsim.OpGetTwin)).To(BeNumerically("==", 2), "404 is not retried")
}

func TestUpdateWritesWithETag(t *testing.T) {
	hub, c := newHub(t)
	g := NewWithT(t)
	g.Expect(hub.Seed("DEV1", map[string]any{"region": "eu"}, map[string]any{"cups": map[string]any{"package": "1.0", "fwUrl": "file:///old"}})).To(Succeed())
	before, _ := hub.TwinDocument("DEV1")

	own := &twin.Ownership{Rollout: "ns/r1", UID: "uid-1", Batch: 1}
	got, err := c.Update(context.Background(), "DEV1", func(tw *twin.Twin) (*twin.Patch, error) {
		own.Previous = tw.CUPS.Firmware
		return twin.FirmwarePatch(twin.Firmware{Package: "2.0", KeyChecksum: u32(7)}, own), nil
	})
	g.Expect(err).NotTo(HaveOccurred())
	after, _ := hub.TwinDocument("DEV1")
	g.Expect(got.ETag).To(Equal(after["etag"]))
	g.Expect(got.ETag).NotTo(Equal(before["etag"]))
	g.Expect(after["version"]).To(BeNumerically("==", before["version"].(float64)+1))
	g.Expect(got.CUPS.Package).To(Equal("2.0"))
	g.Expect(got.CUPS.URL).To(BeEmpty(), "null in the merge patch deleted fwUrl")
	g.Expect(got.Tags["region"]).To(Equal("eu"), "untouched tags kept")
	g.Expect(got.Ownership.Previous.Package).To(Equal("1.0"))
	g.Expect(hub.RolloutWrites("uid-1")).To(Equal(map[string]int{"DEV1": 1}))

	// An empty patch writes nothing.
	writes := hub.Writes()
	_, err = c.Update(context.Background(), "DEV1", func(*twin.Twin) (*twin.Patch, error) { return nil, nil })
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(hub.Writes()).To(Equal(writes))
}

func TestUpdateStaleETagRetriesOnFreshData(t *testing.T) {
	hub, c := newHub(t)
	g := NewWithT(t)
	g.Expect(hub.Seed("DEV1", nil, map[string]any{"cups": map[string]any{"package": "1.0"}})).To(Succeed())
	// Another writer changes the twin between our read and our write.
	hub.InjectConcurrentWrite("DEV1", map[string]any{"owner": "someone-else"}, map[string]any{"cups": map[string]any{"tcUri": "wss://other"}})

	var seen []*twin.Twin
	got, err := c.Update(context.Background(), "DEV1", func(tw *twin.Twin) (*twin.Patch, error) {
		seen = append(seen, tw)
		if tw.Tags["owner"] == "someone-else" {
			return &twin.Patch{Desired: map[string]any{"cups": map[string]any{"package": "2.0"}}}, nil
		}
		return &twin.Patch{Desired: map[string]any{"cups": map[string]any{"package": "2.0"}}, Tags: map[string]any{"owner": "me"}}, nil
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(seen).To(HaveLen(2))
	g.Expect(seen[0].Tags).NotTo(HaveKey("owner"))
	g.Expect(seen[1].Tags["owner"]).To(Equal("someone-else"), "mutate saw the concurrent writer's data")
	g.Expect(seen[1].CUPS.TcURI).To(Equal("wss://other"))
	g.Expect(hub.Requests(hubsim.OpPatchTwin)).To(BeNumerically("==", 2))
	g.Expect(hub.Served(hubsim.OpPatchTwin)).To(BeNumerically("==", 1), "the stale write was refused, not applied")
	g.Expect(got.Tags["owner"]).To(Equal("someone-else"), "nothing was blindly overwritten")
	g.Expect(got.CUPS.TcURI).To(Equal("wss://other"))
	g.Expect(got.CUPS.Package).To(Equal("2.0"))
	g.Expect(c.Stats().Conflicts).To(BeNumerically("==", 1))
}

func TestUpdateGivesUpOnEndlessConflicts(t *testing.T) {
	hub, c := newHub(t, WithConflictAttempts(3))
	g := NewWithT(t)
	g.Expect(hub.Seed("DEV1", nil, nil)).To(Succeed())
	calls := 0
	_, err := c.Update(context.Background(), "DEV1", func(*twin.Twin) (*twin.Patch, error) {
		calls++
		hub.InjectConcurrentWrite("DEV1", map[string]any{"n": float64(calls)}, nil)
		return &twin.Patch{Tags: map[string]any{"mine": true}}, nil
	})
	g.Expect(errors.Is(err, ErrConflict)).To(BeTrue(), "%v", err)
	g.Expect(calls).To(Equal(3))
	doc, _ := hub.TwinDocument("DEV1")
	g.Expect(doc["tags"]).NotTo(HaveKey("mine"))
}

func TestPatchRefusesEmptyETag(t *testing.T) {
	hub, c := newHub(t)
	g := NewWithT(t)
	g.Expect(hub.Seed("DEV1", nil, nil)).To(Succeed())
	_, err := c.patch(context.Background(), "DEV1", "", &twin.Patch{Tags: map[string]any{"x": "y"}})
	g.Expect(err).To(MatchError(ContainSubstring("refusing an unconditional write")))
	g.Expect(hub.Requests(hubsim.OpPatchTwin)).To(BeZero(), "no If-Match: * ever reaches the hub")
}

func TestQueryPagesThroughContinuation(t *testing.T) {
	hub, c := newHub(t, WithPageSize(100))
	g := NewWithT(t)
	const n = 1050
	for i := range n {
		ring := "a"
		if i%3 == 0 {
			ring = "b"
		}
		g.Expect(hub.Seed(devID(i), map[string]any{"region": "eu", "ring": ring}, nil)).To(Succeed())
	}
	g.Expect(hub.Seed("OTHERREGION", map[string]any{"region": "us"}, nil)).To(Succeed())

	var sizes []int
	var ids []string
	err := c.Query(context.Background(), twin.Selector{Tags: map[string]string{"region": "eu"}}, func(page []*twin.Twin) error {
		sizes = append(sizes, len(page))
		for _, tw := range page {
			ids = append(ids, tw.DeviceID)
		}
		return nil
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sizes).To(HaveLen(11))
	for _, s := range sizes[:10] {
		g.Expect(s).To(Equal(100))
	}
	g.Expect(sizes[10]).To(Equal(50))
	g.Expect(ids).To(HaveLen(n))
	g.Expect(sort.StringsAreSorted(ids)).To(BeTrue())
	g.Expect(hub.Served(hubsim.OpQuery)).To(BeNumerically("==", 11))

	// fn's error stops the walk and comes back as is.
	stop := errors.New("stop")
	pages := 0
	err = c.Query(context.Background(), twin.Selector{Tags: map[string]string{"region": "eu"}}, func([]*twin.Twin) error { pages++; return stop })
	g.Expect(err).To(BeIdenticalTo(stop))
	g.Expect(pages).To(Equal(1))

	// Explicit ids combined with tags, and a page retried after a drop.
	hub.InjectFault(hubsim.Fault{Op: hubsim.OpQuery, Drop: true, Count: 1})
	var sel []string
	err = c.Query(context.Background(), twin.Selector{DeviceIDs: []string{devID(0), devID(1), devID(3), "OTHERREGION", devID(3)}, Tags: map[string]string{"ring": "b"}},
		func(page []*twin.Twin) error {
			for _, tw := range page {
				sel = append(sel, tw.DeviceID)
			}
			return nil
		})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sel).To(Equal([]string{devID(0), devID(3)}))
}

func TestQueryLongDeviceListIsSplit(t *testing.T) {
	hub, c := newHub(t, WithPageSize(1000))
	g := NewWithT(t)
	var want []string
	for i := range 2000 {
		g.Expect(hub.Seed(devID(i), nil, nil)).To(Succeed())
		if i%2 == 0 {
			want = append(want, devID(i))
		}
	}
	var got []string
	err := c.Query(context.Background(), twin.Selector{DeviceIDs: want}, func(page []*twin.Twin) error {
		for _, tw := range page {
			got = append(got, tw.DeviceID)
		}
		return nil
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(want))
	g.Expect(hub.Served(hubsim.OpQuery)).To(BeNumerically(">", 1), "one query would exceed the query size")
}

// TestQueryNotOwnedBy: NotOwnerUID leaves out exactly the twins whose
// ownership record names the UID: unowned twins and twins another rollout
// owns are returned (a comparison with an undefined tag is never true, so
// the unowned ones need the IS_DEFINED branch).
func TestQueryNotOwnedBy(t *testing.T) {
	hub, c := newHub(t)
	g := NewWithT(t)
	owner := func(uid string) map[string]any {
		return map[string]any{"ring": "b", twin.TagRoot: map[string]any{twin.TagRollout: map[string]any{"uid": uid, "rollout": "ns/" + uid}}}
	}
	g.Expect(hub.Seed("D1", owner("u-1"), nil)).To(Succeed())
	g.Expect(hub.Seed("D2", owner("u-2"), nil)).To(Succeed())
	g.Expect(hub.Seed("D3", map[string]any{"ring": "b"}, nil)).To(Succeed())
	g.Expect(hub.Seed("D4", owner("u-1"), nil)).To(Succeed())
	g.Expect(hub.Seed("D5", map[string]any{"ring": "a"}, nil)).To(Succeed())
	var got []string
	err := c.Query(context.Background(), twin.Selector{Tags: map[string]string{"ring": "b"}, NotOwnerUID: "u-1"}, func(page []*twin.Twin) error {
		for _, tw := range page {
			got = append(got, tw.DeviceID)
		}
		return nil
	})
	g.Expect(err).NotTo(HaveOccurred())
	slices.Sort(got)
	g.Expect(got).To(Equal([]string{"D2", "D3"}))
}

func TestQueryTagValueWithQuotes(t *testing.T) {
	hub, c := newHub(t)
	g := NewWithT(t)
	sites := map[string]string{
		"D1": "O'Brien",
		"D2": "O'Brien",
		"D3": "OBrien",
		"D4": `O\'Brien`,
		"D5": "x' OR tags.site != 'y",
		"D6": "other",
	}
	for id, site := range sites {
		g.Expect(hub.Seed(id, map[string]any{"site": site}, nil)).To(Succeed())
	}
	cases := []struct {
		name  string
		value string
		want  []string
	}{
		{"apostrophe", "O'Brien", []string{"D1", "D2"}},
		{"backslash and apostrophe", `O\'Brien`, []string{"D4"}},
		{"injection attempt matches only itself", "x' OR tags.site != 'y", []string{"D5"}},
		{"injection attempt matching nothing", "' OR deviceId != '", nil},
		{"trailing backslash", `other\`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var got []string
			err := c.Query(context.Background(), twin.Selector{Tags: map[string]string{"site": tc.value}}, func(page []*twin.Twin) error {
				for _, tw := range page {
					got = append(got, tw.DeviceID)
				}
				return nil
			})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
	// Keys are validated, not quoted.
	err := c.Query(context.Background(), twin.Selector{Tags: map[string]string{"site = 'x' OR tags.a": "b"}}, func([]*twin.Twin) error { return nil })
	g.Expect(err).To(MatchError(ContainSubstring("tag key")))
	g.Expect(hub.Requests(hubsim.OpQuery)).To(BeNumerically("==", len(cases)))
}

func TestRetries(t *testing.T) {
	cases := []struct {
		name         string
		fault        hubsim.Fault
		wantErr      bool
		wantRequests int64
		minWait      time.Duration
	}{
		{"429 honours Retry-After", hubsim.Fault{Op: hubsim.OpGetTwin, Status: http.StatusTooManyRequests, RetryAfter: time.Second, Count: 1}, false, 2, time.Second},
		{"503 retried", hubsim.Fault{Op: hubsim.OpGetTwin, Status: http.StatusServiceUnavailable, Count: 2}, false, 3, 0},
		{"500 retried", hubsim.Fault{Op: hubsim.OpGetTwin, Status: http.StatusInternalServerError, Count: 1}, false, 2, 0},
		{"dropped connection retried", hubsim.Fault{Op: hubsim.OpGetTwin, Drop: true, Count: 1}, false, 2, 0},
		{"persistent 503 gives up", hubsim.Fault{Op: hubsim.OpGetTwin, Status: http.StatusServiceUnavailable}, true, 5, 0},
		{"400 not retried", hubsim.Fault{Op: hubsim.OpGetTwin, Status: http.StatusBadRequest}, true, 1, 0},
		{"401 not retried", hubsim.Fault{Op: hubsim.OpGetTwin, Status: http.StatusUnauthorized}, true, 1, 0},
		{"403 not retried", hubsim.Fault{Op: hubsim.OpGetTwin, Status: http.StatusForbidden}, true, 1, 0},
		{"404 not retried", hubsim.Fault{Op: hubsim.OpGetTwin, Status: http.StatusNotFound}, true, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub, c := newHub(t)
			g := NewWithT(t)
			g.Expect(hub.Seed("DEV1", nil, nil)).To(Succeed())
			hub.InjectFault(tc.fault)
			start := time.Now()
			_, err := c.Get(context.Background(), "DEV1")
			elapsed := time.Since(start)
			if tc.wantErr {
				g.Expect(err).To(HaveOccurred())
			} else {
				g.Expect(err).NotTo(HaveOccurred())
			}
			g.Expect(hub.Requests(hubsim.OpGetTwin)).To(Equal(tc.wantRequests))
			g.Expect(elapsed).To(BeNumerically(">=", tc.minWait))
		})
	}
}

func TestWriteRateLimit(t *testing.T) {
	hub, c := newHub(t, WithWriteRate(20))
	g := NewWithT(t)
	g.Expect(hub.Seed("DEV1", nil, nil)).To(Succeed())
	start := time.Now()
	for i := range 40 {
		_, err := c.Update(context.Background(), "DEV1", func(*twin.Twin) (*twin.Patch, error) {
			return &twin.Patch{Tags: map[string]any{"n": i}}, nil
		})
		g.Expect(err).NotTo(HaveOccurred())
	}
	// 40 writes at 20/s with a burst of 20: at least ~1s.
	g.Expect(time.Since(start)).To(BeNumerically(">=", 900*time.Millisecond))
}

func TestRegisterStation(t *testing.T) {
	hub, c := newHub(t)
	g := NewWithT(t)
	tw, err := c.RegisterStation(context.Background(), "001122FFFE334455",
		map[string]any{"region": "eu"}, map[string]any{"cups": map[string]any{"package": "1.0"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tw.CUPS.Package).To(Equal("1.0"))
	g.Expect(hub.DeviceCount()).To(Equal(1))
	// Registering again keeps the identity and merges.
	tw, err = c.RegisterStation(context.Background(), "001122FFFE334455", map[string]any{"ring": "b"}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tw.Tags).To(HaveKeyWithValue("region", "eu"))
	g.Expect(tw.Tags).To(HaveKeyWithValue("ring", "b"))
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	hub, c := newHub(t)
	g := NewWithT(t)
	g.Expect(hub.Seed("DEV1", nil, nil)).To(Succeed())
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Update(context.Background(), "DEV1", func(tw *twin.Twin) (*twin.Patch, error) {
				n, _ := tw.Tags["count"].(float64)
				return &twin.Patch{Tags: map[string]any{"count": n + 1}}, nil
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			g.Expect(errors.Is(err, ErrConflict)).To(BeTrue(), "%v", err)
		}
	}
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	doc, _ := hub.TwinDocument("DEV1")
	g.Expect(doc["tags"].(map[string]any)["count"]).To(BeNumerically("==", ok), "every successful increment counted once")
}

// TestBurstReusesBoundedConnections: a burst of concurrent twin reads far
// larger than the connection bound is served over at most that many
// connections (each a TLS handshake on both sides), counted alike by the
// client and by the emulator; the reads queue for a connection and all
// succeed. Before the bound, each read beyond the idle pool opened its own.
func TestBurstReusesBoundedConnections(t *testing.T) {
	const bound, burst = 4, 200
	hub, c := newHub(t, WithMaxConnections(bound))
	g := NewWithT(t)
	for i := range 20 {
		g.Expect(hub.Seed(devID(i), nil, map[string]any{"cups": map[string]any{"package": "1.0"}})).To(Succeed())
	}
	conns0 := hub.Connections()
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, burst)
		for i := range burst {
			wg.Go(func() {
				if _, err := c.Get(context.Background(), devID(i%20)); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: read failed: %v", round, err)
		}
	}
	g.Expect(c.Stats().Reads).To(BeNumerically("==", 3*burst))
	g.Expect(hub.Connections()-conns0).To(BeNumerically("<=", bound), "connections the emulator accepted for %d reads", 3*burst)
	g.Expect(c.Stats().Connections).To(BeNumerically("<=", bound), "connections the client opened")
	g.Expect(c.Stats().Connections).To(BeNumerically(">=", 1))
}

func TestMaxConnectionsRefusesZero(t *testing.T) {
	_, err := New("HostName=h.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey=a2V5", WithMaxConnections(0))
	if err == nil || !strings.Contains(err.Error(), "max connections 0") {
		t.Fatalf("want a refusal naming the bound, got %v", err)
	}
}
