package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator and the bare handler run as child processes of the
// bench (the bench binary started again with a first argument "loadgen" or
// "bare"), so that the CUPS server, the baseline and the clients each have
// their own process and their own CPU account (/proc/<pid>/stat).

// noChange is the 14 zero bytes of the CUPS "nothing to change" answer
// (DESIGN.md section 3).
var noChange = make([]byte, 14)

// runBare is the bare handler process: a net/http server answering every
// request with the same headers and 14 zero bytes the CUPS server sends
// for "nothing to change". It prints its address on stdout and serves
// until stdin closes (its parent died or is done).
func runBare(args []string) int {
	addr := "127.0.0.1:0"
	if len(args) > 0 {
		addr = args[0]
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: bareHandler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Println(ln.Addr().String())
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	_ = srv.Serve(ln)
	return 1
}

// bareHandler answers every request with the headers and the 14 zero
// bytes the CUPS server sends for "nothing to change", and nothing else.
func bareHandler() http.Handler {
	octet, length := []string{"application/octet-stream"}, []string{"14"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"], h["Content-Length"] = octet, length
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(noChange)
	})
}

// loadCmd is one command to the load generator process (a JSON line on
// its stdin).
type loadCmd struct {
	// Target is the server's host:port.
	Target string `json:"target"`
	// Conc is the number of connections, each with one request in flight.
	Conc int `json:"conc"`
	// Seconds is how long requests are started.
	Seconds float64 `json:"seconds"`
	// Rate is the open-loop rate in requests/s over all connections; 0 is
	// closed loop (each connection sends again as soon as it is answered).
	Rate float64 `json:"rate"`
}

// loadResult is the load generator's answer to a loadCmd (a JSON line on
// its stdout).
type loadResult struct {
	Requests  int64   `json:"requests"` // answered within the window
	Failures  int64   `json:"failures"`
	FirstErr  string  `json:"firstErr,omitempty"`
	Seconds   float64 `json:"seconds"`
	ReqPerSec float64 `json:"reqPerSec"`
	P50us     float64 `json:"p50us"`
	P99us     float64 `json:"p99us"`
	P999us    float64 `json:"p999us"`
	MaxUs     float64 `json:"maxUs"`
	// LateP99us is, in an open loop, the p99 of how late the generator
	// wrote requests after their scheduled time, whatever the reason (its
	// own scheduling, a connection still waiting for the previous
	// answer): the part of the tail spent before the request left.
	LateP99us float64 `json:"lateP99us"`
}

// runLoadgen is the load generator process. args[0] is a file of request
// bodies, one per line (what the stations send). It keeps a pool of
// kept-alive connections per target and answers each command on stdin
// with a result on stdout. Requests are written as a Basics Station
// writes them (DESIGN.md section 3; internal/stationsim): POST
// /update-info, Host, Content-Type, a space-padded Content-Length.
func runLoadgen(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: stationfleet-bench loadgen BODIES-FILE")
		return 2
	}
	raw, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var bodies [][]byte
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			bodies = append(bodies, l)
		}
	}
	if len(bodies) == 0 {
		fmt.Fprintln(os.Stderr, "loadgen: no request bodies")
		return 1
	}
	pools := map[string]*connPool{}
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var c loadCmd
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: bad command:", err)
			return 2
		}
		p := pools[c.Target]
		if p == nil {
			p = newConnPool(c.Target, bodies)
			pools[c.Target] = p
		}
		_ = out.Encode(p.run(c))
	}
	return 0
}

// connPool holds the kept-alive connections to one target.
type connPool struct {
	target string
	reqs   [][]byte // one prebuilt HTTP request per body
	conns  []*loadConn
}

type loadConn struct {
	c  net.Conn
	br *bufio.Reader
}

func newConnPool(target string, bodies [][]byte) *connPool {
	p := &connPool{target: target}
	for _, b := range bodies {
		var r bytes.Buffer
		fmt.Fprintf(&r, "POST /update-info HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %5d\r\n\r\n", target, len(b))
		r.Write(b)
		p.reqs = append(p.reqs, r.Bytes())
	}
	return p
}

// exchange sends one request on connection i (dialling it when needed)
// and reads the answer, which must be 200 with the 14 zero bytes.
func (p *connPool) exchange(i int, req []byte) error {
	lc := p.conns[i]
	if lc == nil {
		c, err := net.DialTimeout("tcp", p.target, 10*time.Second)
		if err != nil {
			return err
		}
		lc = &loadConn{c: c, br: bufio.NewReaderSize(c, 4096)}
		p.conns[i] = lc
	}
	err := lc.roundTrip(req)
	if err != nil {
		_ = lc.c.Close()
		p.conns[i] = nil
	}
	return err
}

var errKeepAlive = errors.New("server closes the connection")

func (lc *loadConn) roundTrip(req []byte) error {
	_ = lc.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := lc.c.Write(req); err != nil {
		return err
	}
	line, err := lc.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status %q", bytes.TrimSpace(line))
	}
	clen, closing := -1, false
	for {
		line, err = lc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if clen, err = strconv.Atoi(string(v)); err != nil {
				return fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.EqualFold(v, []byte("close"))
		}
	}
	if clen != len(noChange) {
		return fmt.Errorf("Content-Length %d, want %d", clen, len(noChange))
	}
	var body [14]byte
	if _, err := io.ReadFull(lc.br, body[:]); err != nil {
		return err
	}
	if body != [14]byte{} {
		return fmt.Errorf("answer is not the no-change body: %x", body)
	}
	if closing {
		return errKeepAlive
	}
	return nil
}

// run runs one command: closed loop when c.Rate is 0, otherwise open loop
// at c.Rate, each connection sending on its own schedule and each
// latency counted from the request's scheduled time (a late send counts
// its wait).
func (p *connPool) run(c loadCmd) loadResult {
	if len(p.conns) < c.Conc {
		p.conns = append(p.conns, make([]*loadConn, c.Conc-len(p.conns))...)
	}
	window := time.Duration(c.Seconds * float64(time.Second))
	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		errOnce  sync.Once
		firstErr string
		lat      = make([][]time.Duration, c.Conc)
		late     = make([][]time.Duration, c.Conc)
	)
	start := time.Now()
	end := start.Add(window)
	for i := range c.Conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own, ownLate := make([]time.Duration, 0, 1024), make([]time.Duration, 0, 1024)
			for k := 0; ; k++ {
				n := k*c.Conc + i
				at := time.Now()
				if c.Rate > 0 {
					at = start.Add(time.Duration(float64(n) / c.Rate * float64(time.Second)))
					if d := time.Until(at); d > 0 {
						time.Sleep(d)
					}
				}
				if !at.Before(end) {
					break
				}
				if c.Rate > 0 {
					ownLate = append(ownLate, time.Since(at))
				}
				err := p.exchange(i, p.reqs[n%len(p.reqs)])
				done := time.Now()
				if err != nil && !errors.Is(err, errKeepAlive) {
					failures.Add(1)
					errOnce.Do(func() { firstErr = err.Error() })
					continue
				}
				if done.After(end) && c.Rate == 0 {
					break // closed loop: count what was answered within the window
				}
				own = append(own, done.Sub(at))
			}
			lat[i], late[i] = own, ownLate
		}()
	}
	wg.Wait()
	all, lt := slices.Concat(lat...), slices.Concat(late...)
	slices.Sort(all)
	slices.Sort(lt)
	r := loadResult{Requests: int64(len(all)), Failures: failures.Load(), FirstErr: firstErr, Seconds: window.Seconds(),
		P50us: quantileUs(all, 0.50), P99us: quantileUs(all, 0.99), P999us: quantileUs(all, 0.999), MaxUs: quantileUs(all, 1),
		LateP99us: quantileUs(lt, 0.99)}
	r.ReqPerSec = float64(r.Requests) / window.Seconds()
	return r
}

// quantile returns the q quantile (0 to 1) of sorted, 0 when it is empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(float64(len(sorted))*q), len(sorted)-1)]
}

// quantileUs is quantile in microseconds.
func quantileUs(sorted []time.Duration, q float64) float64 {
	return float64(quantile(sorted, q)) / 1e3
}
