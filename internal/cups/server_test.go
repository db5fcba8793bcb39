package cups

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// noSecrets asserts that none of the credential or firmware bytes are in b.
func noSecrets(g Gomega, t testing.TB, b []byte) {
	g.Expect(bytes.Contains(b, cupsCredSecret)).To(BeFalse(), "CUPS credential bytes leaked")
	g.Expect(bytes.Contains(b, tcCredSecret)).To(BeFalse(), "LNS credential bytes leaked")
	g.Expect(bytes.Contains(b, readVector(t, "update.bin")[:40])).To(BeFalse(), "firmware bytes leaked")
	g.Expect(bytes.Contains(b, readVector(t, "signature.der"))).To(BeFalse(), "signature leaked")
}

func TestServerAuthenticationOverTLS(t *testing.T) {
	serverCA, stationCA, otherCA := newTestCA(t, "server CA"), newTestCA(t, "station CA"), newTestCA(t, "rogue CA")
	certA := stationCA.issue(t, "11:22ff:fe33:4455", false)
	certADashed := stationCA.issue(t, "00-11-22-FF-FE-33-44-55", false)
	certAUnlisted := stationCA.issue(t, stationA, false) // valid chain, thumbprint not in the twin
	certB := stationCA.issue(t, stationB, false)
	certARogue := otherCA.issue(t, stationA, false)
	certUnknown := stationCA.issue(t, "0000000000000C0C", false)

	store := newMemStore()
	store.put(fleetTwinA(t, strings.ToUpper(certA.thumbprint), certADashed.thumbprint))
	store.put(&twin.Twin{DeviceID: stationB, ClientThumbprints: []string{certB.thumbprint}, TokenSHA256: []string{sha256Hex(tokenB)}})
	opts := writeTLSFiles(t, serverCA.issue(t, "cups", true), stationCA)
	h := startServer(t, opts, store, testBlobs(t))

	bodyA := readVector(t, "request-package-v1.json")
	bodyFor := func(router string) []byte {
		return bytes.Replace(bodyA, []byte(`"11:22ff:fe33:4455"`), []byte(`"`+router+`"`), 1)
	}
	tests := []struct {
		name    string
		cert    *issued
		body    []byte
		headers []string
		status  int  // 0: the TLS handshake must fail
		served  bool // credentials and firmware expected
	}{
		{name: "certificate of the station", cert: certA, body: bodyA, status: 200, served: true},
		{name: "certificate with the EUI in another form", cert: certADashed, body: bodyA, status: 200, served: true},
		{name: "token of the station", body: bodyA, headers: []string{"Authorization: Bearer " + tokenA}, status: 200, served: true},
		{name: "no certificate and no token", body: bodyA, status: http.StatusUnauthorized},
		{name: "certificate from another CA", cert: certARogue, body: bodyA, status: 0},
		{name: "thumbprint not in the twin", cert: certAUnlisted, body: bodyA, status: http.StatusForbidden},
		{name: "valid certificate of another station", cert: certB, body: bodyA, status: http.StatusForbidden},
		{name: "certificate of the station, another router in the body", cert: certA, body: bodyFor("0:0:0:b0b"), status: http.StatusForbidden},
		{name: "wrong token", body: bodyA, headers: []string{"Authorization: Bearer not-" + tokenA}, status: http.StatusForbidden},
		{name: "token of another station", body: bodyA, headers: []string{"Authorization: Bearer " + tokenB}, status: http.StatusForbidden},
		{name: "unknown device with a valid certificate", cert: certUnknown, body: bodyFor("::c0c"), status: http.StatusForbidden},
		{name: "unknown device with a token", body: bodyFor("::c0c"), headers: []string{"Authorization: Bearer " + tokenA}, status: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			r, err := post(client(serverCA, tt.cert), h.url, tt.body, tt.headers...)
			if tt.status == 0 {
				g.Expect(err).To(HaveOccurred(), "the handshake must fail")
				g.Expect(r).To(BeNil(), "not a byte of response")
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.status).To(Equal(tt.status), "body: %q", r.body)
			if !tt.served {
				noSecrets(g, t, r.body)
				g.Expect(string(r.body)).NotTo(ContainSubstring("2.0.7"), "no twin detail")
				g.Expect(string(r.body)).NotTo(ContainSubstring("mem://"), "no twin detail")
				return
			}
			g.Expect(r.resp.TransferEncoding).To(BeEmpty())
			g.Expect(r.resp.ContentLength).To(BeEquivalentTo(len(r.body)))
			g.Expect(bytes.Contains(r.body, cupsCredSecret)).To(BeTrue())
			g.Expect(bytes.Contains(r.body, tcCredSecret)).To(BeTrue())
			g.Expect(bytes.HasSuffix(r.body, readVector(t, "update.bin"))).To(BeTrue())
		})
	}
	g := NewWithT(t)
	g.Expect(h.logs.String()).NotTo(ContainSubstring(tokenA), "tokens are never logged")
	g.Expect(h.logs.String()).NotTo(ContainSubstring(tokenB), "tokens are never logged")
	g.Expect(h.logs.String()).NotTo(ContainSubstring(string(cupsCredSecret)))
	g.Expect(counterValue(t, h.reg, "stationfleet_cups_requests_total", map[string]string{"outcome": OutcomeForbidden})).To(BeEquivalentTo(7))
	g.Expect(counterValue(t, h.reg, "stationfleet_cups_requests_total", map[string]string{"outcome": OutcomeUnauthorized})).To(BeEquivalentTo(1))
	g.Expect(counterValue(t, h.reg, "stationfleet_cups_credentials_served_total", map[string]string{"set": "cups"})).To(BeEquivalentTo(3))
}

func TestServerTokenOnlyTLS(t *testing.T) {
	g := NewWithT(t)
	serverCA := newTestCA(t, "server CA")
	store := newMemStore()
	store.put(fleetTwinA(t))
	h := startServer(t, writeTLSFiles(t, serverCA.issue(t, "cups", true), nil), store, testBlobs(t))
	r, err := post(client(serverCA, nil), h.url, readVector(t, "request-package-v1.json"), "authorization: bearer "+tokenA)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(200))
	g.Expect(bytes.Contains(r.body, tcCredSecret)).To(BeTrue())
}

func TestServerGoldenBytesOverHTTP(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	tw := noCredTwinA(t)
	store.put(tw)
	h := startServer(t, Options{Insecure: true}, store, testBlobs(t))
	c := client(nil, nil)

	r, err := post(c, h.url, readVector(t, "request-package-v1.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(200))
	g.Expect(r.body).To(Equal(readVector(t, "response-update.bin")), "the response the real station verified and ran, byte for byte")
	g.Expect(r.resp.ContentLength).To(BeEquivalentTo(219))
	g.Expect(r.resp.TransferEncoding).To(BeEmpty(), "never chunked")
	g.Expect(r.resp.Header.Get("Content-Type")).To(Equal("application/octet-stream"))

	r, err = post(c, h.url, readVector(t, "request-package-2.0.7.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(200))
	g.Expect(r.body).To(Equal(readVector(t, "response-nochange.bin")))
	g.Expect(r.resp.ContentLength).To(BeEquivalentTo(14))
	g.Expect(r.resp.TransferEncoding).To(BeEmpty())

	obs := store.observation(t, h.srv, stationA)
	g.Expect(obs.Package).To(Equal("2.0.7"))
	g.Expect(obs.ServedPackage).To(Equal("2.0.7"))
	g.Expect(obs.UpdatesServed).To(Equal(1))
	g.Expect(counterValue(t, h.reg, "stationfleet_cups_updates_served_total", nil)).To(BeEquivalentTo(1))
	g.Expect(counterValue(t, h.reg, "stationfleet_cups_bytes_streamed_total", map[string]string{"kind": "update"})).To(BeEquivalentTo(130))
	g.Expect(counterValue(t, h.reg, "stationfleet_cups_request_duration_seconds", map[string]string{"outcome": OutcomeNoChange})).To(BeEquivalentTo(1))
	g.Expect(h.logs.String()).To(ContainSubstring("WITHOUT TLS AND WITHOUT STATION AUTHENTICATION"))
}

func TestServerInsecureNeverSendsCredentials(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	store.put(fleetTwinA(t))
	h := startServer(t, Options{Insecure: true}, store, testBlobs(t))
	r, err := post(client(nil, nil), h.url, readVector(t, "request-package-2.0.7.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(200))
	g.Expect(r.body).To(Equal(readVector(t, "response-nochange.bin")), "credential CRCs differ, but the caller is not authenticated")

	r, err = post(client(nil, nil), h.url, readVector(t, "request-package-2.0.7.json"), "Authorization: Bearer wrong")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(http.StatusForbidden), "a token, when given, is checked even in insecure mode")

	r, err = post(client(nil, nil), h.url, readVector(t, "request-package-2.0.7.json"), "Authorization: Bearer "+tokenA)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Contains(r.body, cupsCredSecret)).To(BeTrue(), "a station that proves itself gets its credentials")
}

func TestServerRefusesBadRequests(t *testing.T) {
	store := newMemStore()
	store.put(fleetTwinA(t))
	h := startServer(t, Options{Insecure: true, BodyLimit: 512}, store, testBlobs(t))
	valid := string(readVector(t, "request-package-v1.json"))
	tests := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"GET", http.MethodGet, UpdateInfoPath, "", http.StatusMethodNotAllowed, "method not allowed"},
		{"PUT", http.MethodPut, UpdateInfoPath, valid, http.StatusMethodNotAllowed, "method not allowed"},
		{"other path", http.MethodPost, "/update-info/x", valid, http.StatusNotFound, "not found"},
		{"root", http.MethodPost, "/", valid, http.StatusNotFound, "not found"},
		{"malformed JSON", http.MethodPost, UpdateInfoPath, valid[:50], http.StatusBadRequest, "malformed JSON"},
		{"wrong type", http.MethodPost, UpdateInfoPath, strings.Replace(valid, `"cupsCredCrc":2077607535`, `"cupsCredCrc":"x"`, 1),
			http.StatusBadRequest, `field "cupsCredCrc": want an unsigned 32-bit integer, got a string`},
		{"CRC out of range", http.MethodPost, UpdateInfoPath, strings.Replace(valid, `"tcCredCrc":2077607535`, `"tcCredCrc":4294967296`, 1),
			http.StatusBadRequest, `field "tcCredCrc"`},
		{"bad EUI", http.MethodPost, UpdateInfoPath, strings.Replace(valid, `11:22ff:fe33:4455`, `11:22ff:fe33:4455:66`, 1),
			http.StatusBadRequest, `field "router": not an EUI`},
		{"body over the limit", http.MethodPost, UpdateInfoPath, valid[:len(valid)-1] + `,"pad":"` + strings.Repeat("x", 600) + `"}`,
			http.StatusBadRequest, "exceeds the limit of 512"},
		{"unknown device", http.MethodPost, UpdateInfoPath, strings.Replace(valid, `11:22ff:fe33:4455`, `::1`, 1), http.StatusNotFound, "Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			req, err := http.NewRequest(tt.method, strings.TrimSuffix(h.url, UpdateInfoPath)+tt.path, strings.NewReader(tt.body))
			g.Expect(err).NotTo(HaveOccurred())
			resp, err := client(nil, nil).Do(req)
			g.Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			buf := new(bytes.Buffer)
			_, _ = buf.ReadFrom(resp.Body)
			g.Expect(resp.StatusCode).To(Equal(tt.status))
			g.Expect(buf.String()).To(ContainSubstring(tt.msg))
			noSecrets(g, t, buf.Bytes())
			if tt.status == http.StatusMethodNotAllowed {
				g.Expect(resp.Header.Get("Allow")).To(Equal(http.MethodPost))
			}
		})
	}
	g := NewWithT(t)
	g.Expect(h.logs.String()).To(ContainSubstring("refused malformed update-info request"), "every 400 leaves a log line")
	g.Expect(counterValue(t, h.reg, "stationfleet_cups_requests_total", map[string]string{"outcome": OutcomeBadRequest})).To(BeEquivalentTo(5))
	settle(t, h.srv)
	g.Expect(store.writes.Load()).To(BeZero(), "refused requests record nothing")
}

func TestServerObservationWrittenOnlyOnChange(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	tw := fleetTwinA(t)
	tw.CUPS.Package = "v1"
	tw.Ownership = &twin.Ownership{Rollout: "fleet/spring", UID: "u1"}
	store.put(tw)
	h := startServer(t, Options{Insecure: true, CacheTTL: time.Hour}, store, testBlobs(t))
	c := client(nil, nil)
	for range 20 {
		r, err := post(c, h.url, readVector(t, "request-package-v1.json"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(r.body).To(Equal(readVector(t, "response-nochange.bin")))
	}
	settle(t, h.srv)
	g.Expect(store.writes.Load()).To(BeEquivalentTo(1), "the first sight of the station is written, then nothing")
	g.Expect(store.gets.Load()).To(BeEquivalentTo(1), "twenty polls, one registry read")
	g.Expect(h.notified).To(Receive(Equal("fleet/spring")))

	// The rollout writes 2.0.7 and invalidates the cache; the next poll gets it.
	store.patchDesired(stationA, map[string]any{"cups": map[string]any{"package": "2.0.7"}})
	h.srv.Cache().Invalidate(stationA)
	r, err := post(c, h.url, readVector(t, "request-package-v1.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.HasSuffix(r.body, readVector(t, "update.bin"))).To(BeTrue())
	settle(t, h.srv)
	g.Expect(h.notified).To(Receive(Equal("fleet/spring")), "an update served wakes the controller")
	// The station runs it and reports 2.0.7.
	r, err = post(c, h.url, readVector(t, "request-package-2.0.7.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.body).To(Equal(readVector(t, "response-nochange.bin")))
	settle(t, h.srv)
	g.Expect(h.notified).To(Receive(Equal("fleet/spring")), "the new package wakes the controller")
	obs := store.observation(t, h.srv, stationA)
	g.Expect(obs.Package).To(Equal("2.0.7"))
	g.Expect(obs.UpdatesServed).To(Equal(1))
	g.Expect(store.writes.Load()).To(BeEquivalentTo(3))
}

func TestServerPollStormOneRead(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	tw := fleetTwinA(t)
	tw.CUPS.Package = "v1"
	store.put(tw)
	h := startServer(t, Options{Insecure: true, CacheTTL: time.Minute}, store, testBlobs(t))
	c := client(nil, nil)
	defer c.CloseIdleConnections() // connections dialed but never used would hold up shutdown
	body := readVector(t, "request-package-v1.json")
	var wg sync.WaitGroup
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := post(c, h.url, body)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.status).To(Equal(200))
		}()
	}
	wg.Wait()
	settle(t, h.srv)
	g.Expect(store.gets.Load()).To(BeEquivalentTo(1), "256 concurrent polls of one station cost one registry read")
	g.Expect(store.writes.Load()).To(BeEquivalentTo(1))
}

func TestServerAbortsOnBlobFailure(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	tw := noCredTwinA(t)
	tw.CUPS.URL = "mem://fw/broken"
	store.put(tw)
	blobs := testBlobs(t)
	blobs.put("mem://fw/broken", bytes.Repeat([]byte("F"), 1<<20))
	blobs.fail["mem://fw/broken"] = 300 << 10
	h := startServer(t, Options{Insecure: true}, store, blobs)
	_, err := post(client(nil, nil), h.url, readVector(t, "request-package-v1.json"))
	g.Expect(err).To(HaveOccurred(), "the station sees a broken connection, never a short body it could take as complete")
	g.Expect(errors.Is(err, context.DeadlineExceeded)).To(BeFalse())
	g.Eventually(func() float64 {
		return counterValue(t, h.reg, "stationfleet_cups_requests_total", map[string]string{"outcome": OutcomeAborted})
	}).Should(BeEquivalentTo(1))

	// A blob that cannot be opened: 503, so the station retries soon.
	tw.CUPS.URL = "mem://fw/missing"
	store.put(tw)
	h.srv.Cache().Invalidate(stationA)
	r, err := post(client(nil, nil), h.url, readVector(t, "request-package-v1.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(http.StatusServiceUnavailable))
}

func TestServerRegistryFailure(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	store.getErr = errors.New("iothub: 503 service unavailable")
	h := startServer(t, Options{Insecure: true}, store, nil)
	r, err := post(client(nil, nil), h.url, readVector(t, "request-package-v1.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(http.StatusServiceUnavailable))
	g.Expect(string(r.body)).NotTo(ContainSubstring("iothub"), "no internal detail to the caller")
}

func TestServerStartAndShutdown(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	store.put(fleetTwinA(t))
	// Two servers on the default (controller-runtime) registry: no panic.
	_, err := NewServer(Options{Insecure: true}, store, nil)
	g.Expect(err).NotTo(HaveOccurred())
	srv, err := NewServer(Options{Insecure: true, Addr: "127.0.0.1:0"}, store, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(srv.NeedLeaderElection()).To(BeFalse(), "every replica serves stations")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	g.Eventually(srv.Addr).ShouldNot(BeNil())
	r, err := post(client(nil, nil), "http://"+srv.Addr().String()+UpdateInfoPath, readVector(t, "request-package-2.0.7.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(200))
	cancel()
	g.Eventually(done, 5*time.Second).Should(Receive(BeNil()))
}

func TestNewServerValidation(t *testing.T) {
	store := newMemStore()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"TLS without files", Options{}, "needs a certificate and a key file"},
		{"insecure with TLS files", Options{Insecure: true, CertFile: "a", KeyFile: "b"}, "exclusive"},
		{"missing certificate file", Options{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}, "load TLS certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := NewServer(tt.opts, store, nil, WithRegisterer(prometheus.NewRegistry()))
			g.Expect(err).To(MatchError(ContainSubstring(tt.want)))
		})
	}
}

func TestOptionsBindFlags(t *testing.T) {
	g := NewWithT(t)
	var o Options
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	o.BindFlags(fs)
	g.Expect(o.Addr).To(Equal(":5002"))
	g.Expect(o.BodyLimit).To(BeEquivalentTo(2048))
	g.Expect(o.CacheTTL).To(Equal(DefaultCacheTTL))
	g.Expect(fs.Parse([]string{"--cups-insecure", "--cups-twin-cache-ttl=2s", "--cups-body-limit=4096", "--cups-bind-address=127.0.0.1:7000"})).To(Succeed())
	g.Expect(o.Insecure).To(BeTrue())
	g.Expect(o.CacheTTL).To(Equal(2 * time.Second))
	g.Expect(o.BodyLimit).To(BeEquivalentTo(4096))
	g.Expect(o.Addr).To(Equal("127.0.0.1:7000"))
}

func TestServerReloadsRotatedCertificate(t *testing.T) {
	g := NewWithT(t)
	oldCA, newCA, stCA := newTestCA(t, "old server CA"), newTestCA(t, "new server CA"), newTestCA(t, "station CA")
	store := newMemStore()
	store.put(fleetTwinA(t))
	opts := writeTLSFiles(t, oldCA.issue(t, "cups", true), stCA)
	h := startServer(t, opts, store, testBlobs(t))
	body := readVector(t, "request-package-2.0.7.json")
	r, err := post(client(oldCA, nil), h.url, body, "Authorization: Bearer "+tokenA)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(200))

	// cert-manager rotates the Secret in place.
	next := newCA.issue(t, "cups", true)
	must(t, os.WriteFile(opts.CertFile, next.certPEM, 0o600))
	must(t, os.WriteFile(opts.KeyFile, next.keyPEM, 0o600))
	h.srv.tls.mu.Lock()
	h.srv.tls.checked = time.Time{} // do not wait tlsCheckPeriod
	h.srv.tls.mu.Unlock()
	r, err = post(client(newCA, nil), h.url, body, "Authorization: Bearer "+tokenA)
	g.Expect(err).NotTo(HaveOccurred(), "the new certificate is served without a restart")
	g.Expect(r.status).To(Equal(200))
	_, err = post(client(oldCA, nil), h.url, body, "Authorization: Bearer "+tokenA)
	g.Expect(err).To(HaveOccurred(), "the old certificate is gone")
}

// TestBlobOutageIsNotASend: while the firmware blob cannot be opened, the
// station gets a 503 and its attempts (maxUpdateAttempts) are not used up;
// once the store is back it is sent the update, counted once.
func TestBlobOutageIsNotASend(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	tw := noCredTwinA(t)
	tw.Ownership = &twin.Ownership{Rollout: "ns/fw-2-0-7", UID: "uid-1", Batch: 1, MaxUpdateAttempts: 1}
	store.put(tw)
	blobs := newMemBlobs() // the firmware is not there yet: the store is "down"
	h := startServer(t, Options{Insecure: true}, store, blobs)
	body := readVector(t, "request-package-v1.json")
	for range 3 {
		r, err := post(client(nil, nil), h.url, body)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(r.status).To(Equal(http.StatusServiceUnavailable))
	}
	blobs.put("mem://fw/2.0.7", readVector(t, "update.bin"))
	r, err := post(client(nil, nil), h.url, body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(http.StatusOK))
	g.Expect(len(r.body)).To(BeNumerically(">", noChangeBodySize), "the update is sent once the store is back")
	g.Eventually(func() int {
		got, err := store.Get(context.Background(), stationA)
		if err != nil || got.Observation == nil {
			return -1
		}
		return got.Observation.UpdatesServed
	}).Should(Equal(1), "only the answer that carried the update counts as a send")
}

// TestAnswerGivenUpIsNotASend: while the server is slow to answer (here the
// blob store; a busy machine or a slow IoT Hub are alike), a station that
// gives up before the answer was not sent the update: its attempts
// (maxUpdateAttempts) are not used up, and it gets the update once the
// server keeps up, counted once, with the time of that send. Before, each
// answer the station gave up on counted as a send, and the station was
// refused NotApplied without ever receiving the firmware.
func TestAnswerGivenUpIsNotASend(t *testing.T) {
	g := NewWithT(t)
	store := newMemStore()
	tw := noCredTwinA(t)
	tw.Ownership = &twin.Ownership{Rollout: "ns/fw-2-0-7", UID: "uid-1", Batch: 1, MaxUpdateAttempts: 1}
	store.put(tw)
	blobs := newMemBlobs()
	blobs.put("mem://fw/2.0.7", readVector(t, "update.bin"))
	blobs.delay.Store(int64(time.Second))
	h := startServer(t, Options{Insecure: true}, store, blobs)
	body := readVector(t, "request-package-v1.json")
	impatient := client(nil, nil)
	impatient.Timeout = 200 * time.Millisecond
	for range 3 {
		_, err := post(impatient, h.url, body)
		g.Expect(err).To(HaveOccurred(), "the station gives up")
	}
	time.Sleep(1500 * time.Millisecond) // the server finishes the answers nobody waits for
	blobs.delay.Store(0)
	before := time.Now()
	r, err := post(client(nil, nil), h.url, body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.status).To(Equal(http.StatusOK))
	g.Expect(len(r.body)).To(BeNumerically(">", noChangeBodySize), "the update is sent once the server keeps up")
	g.Eventually(func() int {
		got, err := store.Get(context.Background(), stationA)
		if err != nil || got.Observation == nil {
			return -1
		}
		return got.Observation.UpdatesServed
	}).Should(Equal(1), "only the answer the station got counts as a send")
	got, err := store.Get(context.Background(), stationA)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Observation.ServedAt).NotTo(BeNil())
	g.Expect(got.Observation.ServedAt.After(before.Add(-time.Second))).To(BeTrue(), "servedAt is the send's time")
}
