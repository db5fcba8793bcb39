package cups

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Sizes of the hostile-station attack. Each kind is far beyond what a
// 5,000-gateway network's stations do (one short connection per station per
// poll), and small enough for a shared two-core CI machine.
const (
	hostileIdleTCP       = 2000 // connections opened and left idle before TLS
	hostileIdleTLS       = 300  // connections that finish the handshake, then idle
	hostileIdleKeepAlive = 300  // connections that make one request, then idle (keep-alive)
	hostileSlowHeaders   = 100  // slow-loris: request headers one byte at a time
	hostileSlowBodies    = 50   // headers complete, body one byte at a time
	hostileFlooders      = 4    // goroutines sending malformed requests back to back
	goodStations         = 16   // well-behaved stations polling back to back
	measureFor           = 3 * time.Second
)

// TestHostileStations runs the real CUPS server (TLS, token authentication,
// production timeouts) and measures well-behaved stations' latency before
// and during an attack of oversized bodies, slow-loris senders, invalid
// UTF-8, deeply nested JSON and thousands of idle connections. The server
// must answer every good station, refuse every hostile request with a 4xx
// (never a 5xx or a crash), close the slow and idle connections by itself,
// and give back the memory the attack took.
func TestHostileStations(t *testing.T) {
	if testing.Short() {
		t.Skip("the hostile-station test takes about 20 s")
	}
	g := NewWithT(t)
	serverCA := newTestCA(t, "server CA")
	opts := writeTLSFiles(t, serverCA.issue(t, "cups", true), nil)
	store := newMemStore()
	h := startServer(t, opts, store, newMemBlobs())
	base := strings.TrimSuffix(h.url, UpdateInfoPath)
	addr := strings.TrimPrefix(base, "https://")

	// Good stations: each with its own token, polling as a real station
	// does (a new TLS connection per session).
	var stations []*stationsim.Station
	cache := tls.NewLRUClientSessionCache(64)
	for i := range goodStations {
		eui := uint64(0x0016C0FFFE100000 + i)
		tok := fmt.Sprintf("good-%d-token", i)
		cred := stationsim.CredSet{Trust: serverCA.cert.Raw, Key: []byte("Authorization: Bearer " + tok + "\r\n")}
		store.put(&twin.Twin{
			DeviceID: fmt.Sprintf("%016X", eui),
			CUPS: twin.CUPS{CupsURI: base, CupsCredCRC: u32(cred.CRC()), TcCredCRC: u32(stationsim.CredSet{}.CRC()),
				Firmware: twin.Firmware{Package: "v1"}},
			TokenSHA256: []string{sha256Hex(tok)},
		})
		stations = append(stations, stationsim.New(stationsim.State{EUI: eui, CUPSURI: base, CUPSCred: cred, Package: "v1"},
			stationsim.WithTimeout(10*time.Second), stationsim.WithTLSSessionCache(cache)))
	}
	// One authenticated station that sends hostile bodies itself.
	store.put(&twin.Twin{DeviceID: stationA, CUPS: twin.CUPS{Firmware: twin.Firmware{Package: "v1"}}, TokenSHA256: []string{sha256Hex(tokenA)}})

	measure := func(phase string) []time.Duration {
		var mu sync.Mutex
		var lat []time.Duration
		var failures []string
		ctx, cancel := context.WithTimeout(context.Background(), measureFor)
		defer cancel()
		var wg sync.WaitGroup
		for _, s := range stations {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					r := s.Poll(context.Background())
					mu.Lock()
					if r.Err != nil || r.StatusCode != 200 || r.Malformed() {
						failures = append(failures, fmt.Sprintf("status %d: %v", r.StatusCode, r.Err))
					} else {
						lat = append(lat, r.Duration)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		g.Expect(failures).To(BeEmpty(), "good stations failed %s", phase)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return lat
	}

	heapBefore, goBefore := heapInUse(), runtime.NumGoroutine()
	quiet := measure("before the attack")
	settle(t, h.srv)

	// The attack.
	atk := newAttack(addr, serverCA)
	attackCtx, stopAttack := context.WithCancel(context.Background())
	defer stopAttack()
	atk.start(attackCtx, t)
	heapPeak := heapInUse()
	attacked := measure("during the attack")
	if hp := heapInUse(); hp > heapPeak {
		heapPeak = hp
	}
	stopAttack()
	atk.wait()

	// The server closes, on its own, the connections the attackers left
	// open (ReadHeaderTimeout): none of them may still be open once the
	// timeouts have passed.
	g.Eventually(atk.openServerSide, max(DefaultReadHeaderTimeout, DefaultReadTimeout)+5*time.Second, 100*time.Millisecond).Should(BeZero(),
		"connections the server should have closed by itself (slow-loris, idle)")
	atk.closeAll()
	g.Eventually(func() int { return runtime.NumGoroutine() }, 10*time.Second, 100*time.Millisecond).Should(BeNumerically("<", goBefore+50))
	heapAfter := heapInUse()

	p := func(l []time.Duration, q float64) time.Duration { return l[min(len(l)-1, int(float64(len(l))*q))] }
	t.Logf("\n== hostile stations: %d good stations polling back to back for %s per phase\n"+
		"  %-16s %6s %10s %10s %10s\n  %-16s %6d %10s %10s %10s\n  %-16s %6d %10s %10s %10s\n"+
		"== attack: %d idle TCP + %d idle TLS + %d idle keep-alive connections, %d slow-loris header senders, %d slow body senders, %d flooders\n%s"+
		"== heap in use: before %.1f MiB, during the attack %.1f MiB, after %.1f MiB; goroutines before %d, after %d",
		goodStations, measureFor,
		"phase", "polls", "p50", "p99", "max",
		"without attack", len(quiet), p(quiet, 0.5), p(quiet, 0.99), quiet[len(quiet)-1],
		"under attack", len(attacked), p(attacked, 0.5), p(attacked, 0.99), attacked[len(attacked)-1],
		hostileIdleTCP, hostileIdleTLS, hostileIdleKeepAlive, hostileSlowHeaders, hostileSlowBodies, hostileFlooders, atk.summary(),
		mib(heapBefore), mib(heapPeak), mib(heapAfter), goBefore, runtime.NumGoroutine())

	g.Expect(atk.statuses5xx.Load()).To(BeZero(), "hostile requests answered with a server error")
	g.Expect(atk.statuses2xx.Load()).To(BeZero(), "hostile requests answered with success")
	g.Expect(atk.hostileAnswered.Load()).To(BeNumerically(">", 100), "the flooders got answers")
	// Responsive: under attack the good stations' p99 stays under a second
	// (their timeout is a minute; quiet p99 is a few ms).
	g.Expect(p(attacked, 0.99)).To(BeNumerically("<", time.Second), "good-station p99 under attack")
	// Bounded: the attack's memory is given back (the peak is several
	// times the growth allowed here; what stays is pools and the test's own
	// bookkeeping, about 12 MiB in runs on a loaded CI machine).
	g.Expect(heapAfter).To(BeNumerically("<", heapBefore+24<<20), "heap after the attack")
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC() // sync.Pool's victim cache survives one collection
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// attack holds the hostile clients' connections and counts what they got.
type attack struct {
	addr string
	tls  *tls.Config

	mu    sync.Mutex
	conns []net.Conn // left open by the attackers
	wg    sync.WaitGroup

	hostileAnswered, statuses2xx, statuses4xx, statuses5xx atomic.Int64
	byKind                                                 sync.Map // kind -> *atomic.Int64 of 4xx answers
}

func newAttack(addr string, ca *testCA) *attack {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &attack{addr: addr, tls: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1"}}
}

func (a *attack) keep(c net.Conn) {
	a.mu.Lock()
	a.conns = append(a.conns, c)
	a.mu.Unlock()
}

// openServerSide counts the kept connections the server has not closed:
// a one-byte read with a short deadline times out on an open connection
// and returns EOF or a reset on a closed one.
func (a *attack) openServerSide() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	open := 0
	var rest []net.Conn
	for _, c := range a.conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		buf := make([]byte, 512)
		_, err := c.Read(buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			open++
			rest = append(rest, c)
			continue
		}
		if err == nil { // data (a response to a keep-alive request): still open
			open++
			rest = append(rest, c)
			continue
		}
		c.Close()
	}
	a.conns = rest
	return open
}

func (a *attack) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.Close()
	}
	a.conns = nil
}

func (a *attack) wait() { a.wg.Wait() }

func (a *attack) count(kind string, status int) {
	a.hostileAnswered.Add(1)
	switch {
	case status >= 500:
		a.statuses5xx.Add(1)
	case status >= 200 && status < 300:
		a.statuses2xx.Add(1)
	case status >= 400:
		a.statuses4xx.Add(1)
	}
	v, _ := a.byKind.LoadOrStore(fmt.Sprintf("%s -> %d", kind, status), new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (a *attack) summary() string {
	var lines []string
	a.byKind.Range(func(k, v any) bool {
		lines = append(lines, fmt.Sprintf("  %-58s %6d\n", k.(string), v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(lines)
	return strings.Join(lines, "")
}

func (a *attack) dialTLS() (net.Conn, error) {
	c, err := net.DialTimeout("tcp", a.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, a.tls)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// start opens the idle and slow connections and starts the flooders.
func (a *attack) start(ctx context.Context, t *testing.T) {
	// Idle TCP connections that never start TLS.
	for range hostileIdleTCP {
		c, err := net.DialTimeout("tcp", a.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("open idle connection: %v", err)
		}
		a.keep(c)
	}
	// Idle TLS connections and keep-alive connections after one request.
	for i := range hostileIdleTLS + hostileIdleKeepAlive {
		c, err := a.dialTLS()
		if err != nil {
			t.Fatalf("open idle TLS connection: %v", err)
		}
		if i >= hostileIdleTLS {
			body := `{"router":"1:2:3:4"}`
			fmt.Fprintf(c, "POST /update-info HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			if st, err := readStatus(c); err == nil {
				a.count("one request, then idle keep-alive", st)
			}
		}
		a.keep(c)
	}
	// Slow-loris senders: headers, then a body, one byte at a time.
	slow := func(kind, msg string) {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			c, err := a.dialTLS()
			if err != nil {
				return
			}
			a.keep(c)
			for i := 0; i < len(msg) && ctx.Err() == nil; i++ {
				if _, err := c.Write([]byte{msg[i]}); err != nil {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
	for range hostileSlowHeaders {
		slow("slow headers", "POST /update-info HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Padding: "+strings.Repeat("a", 4096)+"\r\n\r\n")
	}
	for range hostileSlowBodies {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			c, err := a.dialTLS()
			if err != nil {
				return
			}
			a.keep(c)
			fmt.Fprintf(c, "POST /update-info HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n{")
			for ctx.Err() == nil {
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
	// Flooders: malformed requests back to back, each on a new connection.
	nested := func(depth int) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }
	deepObj := `{"router":"1:2:3:4","x":` + strings.Repeat(`{"a":`, 400) + "1" + strings.Repeat("}", 400) + "}"
	bad := []struct {
		kind    string
		headers string
		body    func(w io.Writer)
	}{
		{"oversized body (Content-Length 16 MiB)", "Content-Length: 16777216\r\n\r\n", func(w io.Writer) { _, _ = w.Write(make([]byte, 64<<10)) }},
		{"oversized body (chunked, 1 MiB)", "Transfer-Encoding: chunked\r\n\r\n", func(w io.Writer) {
			for range 16 {
				fmt.Fprintf(w, "10000\r\n%s\r\n", bytes.Repeat([]byte{'['}, 0x10000))
			}
			_, _ = io.WriteString(w, "0\r\n\r\n")
		}},
		{"oversized headers (1 MiB)", "X-Big: " + strings.Repeat("b", 1<<20) + "\r\nContent-Length: 2\r\n\r\n", func(w io.Writer) { _, _ = io.WriteString(w, "{}") }},
		{"invalid UTF-8 router", "", body(`{"router":"` + "\xff\xfe\xc3\x28" + `","package":"v1"}`)},
		{"invalid UTF-8 everywhere", "", body("\xff\xfe{\"router\":\xc3\x28}")},
		{"deeply nested JSON array", "", body(nested(1000))},
		{"deeply nested JSON object", "", body(deepObj)},
		{"nested JSON as router", "", body(`{"router":` + nested(900) + `}`)},
		{"authenticated, invalid UTF-8 fields", "Authorization: Bearer " + tokenA + "\r\n",
			body(`{"router":"11:22ff:fe33:4455","station":"` + "\xff\xfe" + `","model":"` + "\xc3\x28" + `","package":"v1\xff","keys":[]}`)},
		{"authenticated, nested JSON fields", "Authorization: Bearer " + tokenA + "\r\n",
			body(`{"router":"11:22ff:fe33:4455","keys":` + nested(500) + `}`)},
	}
	for f := range hostileFlooders {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for i := f; ctx.Err() == nil; i++ {
				b := bad[i%len(bad)]
				c, err := a.dialTLS()
				if err != nil {
					continue
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				w := &errWriter{w: c}
				fmt.Fprintf(w, "POST /update-info HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s", b.headers)
				b.body(w)
				if st, err := readStatus(c); err == nil {
					a.count(b.kind, st)
				} else if w.err == nil {
					a.count(b.kind+" (no answer: "+shortErr(err)+")", 0)
				} else {
					a.count(b.kind+" (server closed while sending)", 0)
				}
				c.Close()
			}
		}()
	}
}

// body returns a writer of a JSON body with its Content-Length header.
func body(s string) func(io.Writer) {
	return func(w io.Writer) { fmt.Fprintf(w, "Content-Length: %d\r\n\r\n%s", len(s), s) }
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return len(p), nil
	}
	_, e.err = e.w.Write(p)
	return len(p), nil
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// readStatus reads an HTTP response's status code (and its body).
func readStatus(c net.Conn) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	resp, err := http.ReadResponse(bufioReader(c), nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
