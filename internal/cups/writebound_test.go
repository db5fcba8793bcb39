package cups

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// rawUpdateInfo is an update-info request as a station writes it.
func rawUpdateInfo(body []byte) []byte {
	return fmt.Appendf(nil, "POST /update-info HTTP/1.1\r\nHost: cups\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func hostOf(t testing.TB, raw string) string {
	u, err := url.Parse(raw)
	must(t, err)
	return u.Host
}

// A client that sends polls on a kept-alive connection but never reads the
// answers fills the socket buffers until the server's write blocks. The
// server must close that connection within about WriteTimeout, not hold
// it (and a handler) for ever: the no-change answer carries no deadline of
// its own, so this is the kernel's bound (writebound.go).
func TestServerClosesAConnectionThatNeverReads(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	tw := noCredTwinA(t)
	store.put(tw)
	const writeTimeout = time.Second
	h := startServer(t, Options{Insecure: true, WriteTimeout: writeTimeout, CacheTTL: time.Hour}, store, testBlobs(t))

	c, err := net.Dial("tcp", hostOf(t, h.url))
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	g.Expect(c.(*net.TCPConn).SetReadBuffer(4096)).To(Succeed())
	poll := bytes.Repeat(rawUpdateInfo(readVector(t, "request-package-2.0.7.json")), 64)

	// Write until the server stops taking requests (its answers fill both
	// buffers), then until the connection breaks or the writer gives up.
	const giveUp = 60 * time.Second
	start := time.Now()
	var werr error
	for werr == nil {
		_ = c.SetWriteDeadline(time.Now().Add(giveUp))
		_, werr = c.Write(poll)
	}
	took := time.Since(start)
	var ne net.Error
	g.Expect(errors.As(werr, &ne) && ne.Timeout()).To(BeFalse(),
		"the writer waited %s for a server that neither reads nor closes: %v", took.Round(time.Millisecond), werr)
	g.Expect(errors.Is(werr, os.ErrDeadlineExceeded)).To(BeFalse())
	t.Logf("connection closed by the server after %s of writing: %v", took.Round(time.Millisecond), werr)
	g.Expect(took).To(BeNumerically("<", 30*time.Second))
}

// A station that reads a large update too slowly is cut off WriteTimeout
// after its answer started, as the option says, although it keeps
// acknowledging what it reads (so the kernel's bound alone would never
// close it).
func TestServerCutsASlowFirmwareDownload(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	tw := noCredTwinA(t)
	store.put(tw)
	blobs := testBlobs(t)
	const size = 32 << 20
	blobs.put("mem://fw/2.0.7", bytes.Repeat([]byte{0xA5}, size))
	const writeTimeout = time.Second
	h := startServer(t, Options{Insecure: true, WriteTimeout: writeTimeout}, store, blobs)

	c, err := net.Dial("tcp", hostOf(t, h.url))
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	g.Expect(c.(*net.TCPConn).SetReadBuffer(4096)).To(Succeed())
	_, err = c.Write(rawUpdateInfo(readVector(t, "request-package-v1.json")))
	g.Expect(err).NotTo(HaveOccurred())

	// Read 4 KiB every 20 ms (200 KiB/s: the whole update would take
	// almost three minutes) until the server gives up on the answer.
	aborted := func() float64 {
		return counterValue(t, h.reg, "stationfleet_cups_request_duration_seconds", map[string]string{"outcome": OutcomeAborted})
	}
	start := time.Now()
	buf := make([]byte, 4096)
	read := 0
	for aborted() == 0 && time.Since(start) < 30*time.Second {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		read += n
		if err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("server gave up after %s; the station had read %d of %d bytes", took.Round(time.Millisecond), read, size)
	g.Expect(aborted()).To(BeEquivalentTo(1), "the slow download was cut off")
	g.Expect(took).To(BeNumerically("<", 10*writeTimeout))
	g.Expect(read).To(BeNumerically("<", size/2))
	g.Expect(counterValue(t, h.reg, "stationfleet_cups_bytes_streamed_total", map[string]string{"kind": "aborted"})).To(BeNumerically(">", 0))
}
