package stationsim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/testutil/testpki"
)

// vectorServer is a tiny CUPS stand-in (not internal/cups) that answers
// every POST /update-info with whatever respond returns and records requests.
type vectorServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests [][]byte
	headers  []http.Header
	respond  func(req []byte) []byte
}

func newVectorServer(t *testing.T, respond func(req []byte) []byte) *vectorServer {
	vs := &vectorServer{respond: respond}
	vs.Server = httptest.NewServer(vs)
	t.Cleanup(vs.Close)
	return vs
}

func (vs *vectorServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/update-info" || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	req, _ := io.ReadAll(r.Body)
	vs.mu.Lock()
	vs.requests = append(vs.requests, req)
	vs.headers = append(vs.headers, r.Header.Clone())
	respond := vs.respond
	vs.mu.Unlock()
	body := respond(req)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

func (vs *vectorServer) lastRequest() []byte {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	return vs.requests[len(vs.requests)-1]
}

func constant(b []byte) func([]byte) []byte { return func([]byte) []byte { return b } }

func TestPollVectors(t *testing.T) {
	sigKey := readTestdata(t, "sig-0.key")
	update := readTestdata(t, "update.bin")
	priv, err := signing.ParsePrivateKeyPEM(readTestdata(t, "sig-0.pem"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := signing.GenerateKey()
	otherKey, _ := signing.MarshalSigKey(&other.PublicKey)
	sigSeg := func(key *ecdsa.PrivateKey, crc uint32, data []byte) []byte {
		der, err := signing.Sign(key, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		return append(binaryLE32(crc), der...)
	}
	credBlob := concat([]byte{0x30, 0x03, 1, 2, 3}, []byte{0, 0, 0, 0}, []byte("Authorization: Bearer new\r\n"))

	tests := []struct {
		name     string
		keys     [][]byte
		behavior Behavior
		body     []byte
		check    func(g Gomega, res Result, st State)
	}{
		{
			name: "nothing to change",
			keys: [][]byte{sigKey},
			body: readTestdata(t, "response-nochange.bin"),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Response.NothingToChange()).To(BeTrue())
				g.Expect(res.Update).To(Equal(UpdateNone))
				g.Expect(trimEnd(st.Package)).To(Equal("v1"))
			},
		},
		{
			name: "the captured signed update is verified and installed",
			keys: [][]byte{sigKey},
			body: readTestdata(t, "response-update.bin"),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Update).To(Equal(UpdateApplied), res.UpdateReason)
				g.Expect(res.VerifiedKey).To(Equal(0))
				g.Expect(res.PackageAfter).To(Equal("2.0.7"))
				g.Expect(res.BytesRead).To(Equal(int64(219)))
				g.Expect(st.Package).To(Equal("2.0.7"))
			},
		},
		{
			name: "a second key verifies when the first does not",
			keys: [][]byte{otherKey, sigKey},
			body: readTestdata(t, "response-update.bin"),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Update).To(Equal(UpdateApplied))
				g.Expect(res.VerifiedKey).To(Equal(1))
			},
		},
		{
			name: "wrong key: refused",
			keys: [][]byte{otherKey},
			body: readTestdata(t, "response-update.bin"),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Err).NotTo(HaveOccurred())
				g.Expect(res.Update).To(Equal(UpdateRefused))
				g.Expect(res.UpdateReason).To(ContainSubstring("no key could verify"))
				g.Expect(trimEnd(st.Package)).To(Equal("v1"))
			},
		},
		{
			name: "the key CRC in the segment is only logged",
			keys: [][]byte{sigKey},
			body: body("", "", nil, nil, sigSeg(priv, 12345, update), update),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Update).To(Equal(UpdateApplied))
				g.Expect(st.Package).To(Equal("2.0.7"))
			},
		},
		{
			name: "keys but no signature: refused",
			keys: [][]byte{sigKey},
			body: body("", "", nil, nil, nil, update),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Update).To(Equal(UpdateRefused))
				g.Expect(res.UpdateReason).To(ContainSubstring("no signature"))
				g.Expect(trimEnd(st.Package)).To(Equal("v1"))
			},
		},
		{
			name: "no keys and no signature: run unsigned",
			body: body("", "", nil, nil, nil, update),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Update).To(Equal(UpdateApplied))
				g.Expect(st.Package).To(Equal("2.0.7"))
			},
		},
		{
			name:     "never apply",
			keys:     [][]byte{sigKey},
			behavior: Behavior{NeverApply: true},
			body:     readTestdata(t, "response-update.bin"),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Update).To(Equal(UpdateNotInstalled))
				g.Expect(trimEnd(st.Package)).To(Equal("v1"))
			},
		},
		{
			name:     "apply a different version",
			keys:     [][]byte{sigKey},
			behavior: Behavior{ApplyVersion: "6.6.6"},
			body:     readTestdata(t, "response-update.bin"),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Update).To(Equal(UpdateApplied))
				g.Expect(st.Package).To(Equal("6.6.6"))
			},
		},
		{
			name:     "stop polling",
			behavior: Behavior{StopPolling: true},
			body:     readTestdata(t, "response-update.bin"),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Skipped).To(BeTrue())
				g.Expect(res.Request).To(BeNil())
			},
		},
		{
			name: "URI change",
			keys: [][]byte{sigKey},
			body: body("http://127.0.0.1:9999", "wss://lns.example:443", nil, nil, nil, nil),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.CUPSURIChanged).To(BeTrue())
				g.Expect(res.TCURIChanged).To(BeTrue())
				g.Expect(st.CUPSURI).To(Equal("http://127.0.0.1:9999"))
				g.Expect(st.TCURI).To(Equal("wss://lns.example:443"))
				g.Expect(string(st.RequestBody())).To(ContainSubstring(`"cupsUri":"http://127.0.0.1:9999","tcUri":"wss://lns.example:443"`))
			},
		},
		{
			name: "credential change: the CRC changes on the next request",
			keys: [][]byte{sigKey},
			body: body("", "", credBlob, credBlob, nil, nil),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.CUPSCredChanged).To(BeTrue())
				g.Expect(res.TCCredChanged).To(BeTrue())
				g.Expect(res.Violations).To(BeEmpty())
				g.Expect(st.CUPSCred.Key).To(Equal([]byte("Authorization: Bearer new\r\n")))
				g.Expect(st.CUPSCred.CRC()).NotTo(Equal(uint32(2077607535)))
				g.Expect(string(st.RequestBody())).To(ContainSubstring(`"cupsCredCrc":` + strconv.FormatUint(uint64(st.CUPSCred.CRC()), 10) + `,`))
			},
		},
		{
			name: "malformed credential blob: ignored by the station, reported",
			body: body("", "", []byte{1, 2, 3}, nil, nil, nil),
			check: func(g Gomega, res Result, st State) {
				g.Expect(res.Err).NotTo(HaveOccurred())
				g.Expect(res.CUPSCredChanged).To(BeFalse())
				g.Expect(res.Malformed()).To(BeTrue())
				g.Expect(res.Violations[0]).To(ContainSubstring("cupsCred segment ignored"))
			},
		},
		{
			name: "signature segment too long: protocol error, nothing applied",
			keys: [][]byte{sigKey},
			body: body("http://127.0.0.1:1", "", nil, nil, make([]byte, 140), update),
			check: func(g Gomega, res Result, st State) {
				var pe *ProtocolError
				g.Expect(errors.As(res.Err, &pe)).To(BeTrue())
				g.Expect(res.Malformed()).To(BeTrue())
				g.Expect(st.CUPSURI).NotTo(Equal("http://127.0.0.1:1"))
				g.Expect(trimEnd(st.Package)).To(Equal("v1"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			srv := newVectorServer(t, constant(tt.body))
			st := vectorState(t)
			st.CUPSURI = srv.URL
			st.SigKeys = tt.keys
			s := New(st, WithBehavior(tt.behavior), WithTimeout(5*time.Second))
			res := s.Poll(context.Background())
			if !tt.behavior.StopPolling && tt.check != nil && res.Err == nil {
				g.Expect(srv.lastRequest()).To(Equal(res.Request))
			}
			tt.check(g, res, s.State())
		})
	}
}

func binaryLE32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// TestPollGoldenSequence replays the captured exchange: the station sends
// request-package-v1.json, gets response-update.bin, and its next request is
// request-package-2.0.7.json.
func TestPollGoldenSequence(t *testing.T) {
	g := NewWithT(t)
	var n atomic.Int32
	srv := newVectorServer(t, func([]byte) []byte {
		if n.Add(1) == 1 {
			return readTestdata(t, "response-update.bin")
		}
		return readTestdata(t, "response-nochange.bin")
	})
	st := vectorState(t)
	st.CUPSURI = srv.URL
	s := New(st)
	fix := func(b []byte) string { return strings.Replace(string(b), "http://127.0.0.1:7171", srv.URL, 1) }

	res := s.Poll(context.Background())
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(string(srv.lastRequest())).To(Equal(fix(readTestdata(t, "request-package-v1.json"))))
	g.Expect(res.Update).To(Equal(UpdateApplied))

	res = s.Poll(context.Background())
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(string(srv.lastRequest())).To(Equal(fix(readTestdata(t, "request-package-2.0.7.json"))))
	g.Expect(res.Response.NothingToChange()).To(BeTrue())
	g.Expect(s.Stats()).To(Equal(Stats{Polls: 2, UpdatesApplied: 1, BytesRead: 219 + 14}))
}

// rawServer answers one connection with raw bytes after reading the request
// header and body, and returns the raw request.
func rawServer(t *testing.T, answer func(req []byte) []byte) (string, <-chan []byte) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var hdr bytes.Buffer
		clen := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			hdr.WriteString(line)
			if v, ok := strings.CutPrefix(line, "Content-Length:"); ok {
				clen, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if line == "\r\n" {
				break
			}
		}
		b := make([]byte, clen)
		_, _ = io.ReadFull(br, b)
		req := append(hdr.Bytes(), b...)
		got <- req
		_, _ = c.Write(answer(req))
	}()
	return "http://" + ln.Addr().String(), got
}

func TestPollRawHTTP(t *testing.T) {
	nochange := readTestdata(t, "response-nochange.bin")
	ok := func(b []byte) []byte {
		return append([]byte("HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(b))+"\r\n\r\n"), b...)
	}
	tests := []struct {
		name    string
		answer  []byte
		wantErr string
		proto   bool
	}{
		{name: "minimal 200 with Content-Length", answer: ok(nochange)},
		{name: "chunked is refused", answer: []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\ne\r\n" + string(nochange) + "\r\n0\r\n\r\n"), wantErr: "chunked", proto: true},
		{name: "non-200 is a rejection", answer: []byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"), wantErr: "status 403"},
		{name: "more bytes than Content-Length", answer: append(ok(nochange), 0, 0, 0), wantErr: "more data than the Content-Length", proto: true},
		{name: "connection closed early", answer: []byte("HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n\x00\x00\x00\x00"), wantErr: "before the first 14 body bytes", proto: true},
		{name: "URIs pushed out of the first read by a big header", answer: append([]byte("HTTP/1.1 200 OK\r\nContent-Length: 214\r\nX-Pad: "+strings.Repeat("p", BufferSize-30-100)+"\r\n\r\n"),
			body(strings.Repeat("u", 200), "", nil, nil, nil, nil)...), wantErr: "first read", proto: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			uri, got := rawServer(t, func([]byte) []byte { return tt.answer })
			st := vectorState(t)
			st.CUPSURI = uri
			s := New(st, WithTimeout(5*time.Second))
			res := s.Poll(context.Background())
			req := <-got
			hostport := strings.TrimPrefix(uri, "http://")
			// The station's request, byte for byte: Content-Length right-aligned in five columns.
			g.Expect(string(req)).To(Equal("POST /update-info HTTP/1.1\r\nHost: " + hostport +
				"\r\nContent-Type: application/json\r\nContent-Length:   " + strconv.Itoa(len(res.Request)) + "\r\n\r\n" + string(res.Request)))
			if tt.wantErr == "" {
				g.Expect(res.Err).NotTo(HaveOccurred())
				return
			}
			g.Expect(res.Err).To(MatchError(ContainSubstring(tt.wantErr)))
			var pe *ProtocolError
			g.Expect(errors.As(res.Err, &pe)).To(Equal(tt.proto))
			g.Expect(res.Malformed()).To(Equal(tt.proto))
		})
	}
}

// selfSigned makes a self-signed certificate; hosts, when given, are its
// subjectAltName as a CUPS server certificate needs it (testpki.ServerNames).
func selfSigned(t *testing.T, cn string, hosts ...string) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if len(hosts) > 0 {
		testpki.ServerNames(tmpl, hosts...)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der
}

func TestPollTLS(t *testing.T) {
	serverCert, serverDER := selfSigned(t, "cups", "127.0.0.1")
	clientCert, clientDER := selfSigned(t, "001122FFFE334455")
	clientKeyDER, _ := x509.MarshalECPrivateKey(clientCert.PrivateKey.(*ecdsa.PrivateKey))

	type seen struct {
		auth string
		peer []*x509.Certificate
		ver  uint16
	}
	var mu sync.Mutex
	var last seen
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last = seen{auth: r.Header.Get("Authorization"), peer: r.TLS.PeerCertificates, ver: r.TLS.Version}
		mu.Unlock()
		w.Header().Set("Content-Length", "14")
		_, _ = w.Write(make([]byte, 14))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()

	tests := []struct {
		name    string
		cred    CredSet
		wantErr string
		check   func(g Gomega, s seen)
	}{
		{name: "token over server-authenticated TLS", cred: CredSet{Trust: serverDER, Key: []byte("Authorization: Bearer s3cret\r\n")},
			check: func(g Gomega, s seen) {
				g.Expect(s.auth).To(Equal("Bearer s3cret"))
				g.Expect(s.peer).To(BeEmpty())
				g.Expect(s.ver).To(Equal(uint16(tls.VersionTLS12)))
			}},
		{name: "client certificate", cred: CredSet{Trust: serverDER, Cert: clientDER, Key: clientKeyDER},
			check: func(g Gomega, s seen) {
				g.Expect(s.auth).To(BeEmpty())
				g.Expect(s.peer).To(HaveLen(1))
				g.Expect(s.peer[0].Subject.CommonName).To(Equal("001122FFFE334455"))
			}},
		{name: "no trust", cred: CredSet{}, wantErr: "no trust configured"},
		{name: "wrong trust", cred: CredSet{Trust: clientDER}, wantErr: "handshake"},
		{name: "malformed token", cred: CredSet{Trust: serverDER, Key: []byte("Bearer s3cret")}, wantErr: "malformed auth token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			st := vectorState(t)
			st.CUPSURI = srv.URL // https://127.0.0.1:port
			st.CUPSCred = tt.cred
			res := New(st, WithTimeout(5*time.Second)).Poll(context.Background())
			if tt.wantErr != "" {
				g.Expect(res.Err).To(MatchError(ContainSubstring(tt.wantErr)))
				g.Expect(res.Malformed()).To(BeFalse())
				return
			}
			g.Expect(res.Err).NotTo(HaveOccurred())
			mu.Lock()
			defer mu.Unlock()
			tt.check(g, last)
		})
	}
}

// TestPollLargeUpdateStreams serves a 64 MiB signed update and checks that
// the station verifies it without holding it in memory.
func TestPollLargeUpdateStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB update")
	}
	g := NewWithT(t)
	const size = 64 << 20
	priv, err := signing.GenerateKey()
	g.Expect(err).NotTo(HaveOccurred())
	sigKey, _ := signing.MarshalSigKey(&priv.PublicKey)
	h := sha512.New()
	_, err = WriteUpdateScript(h, "9.9.9", size)
	g.Expect(err).NotTo(HaveOccurred())
	der, err := signing.SignDigest(priv, h.Sum(nil))
	g.Expect(err).NotTo(HaveOccurred())
	crc := signing.KeyCRC(sigKey)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		head := body("", "", nil, nil, append(binaryLE32(crc), der...), nil)
		head = head[:len(head)-4]
		w.Header().Set("Content-Length", strconv.Itoa(len(head)+4+size))
		_, _ = w.Write(head)
		_, _ = w.Write(binaryLE32(size))
		_, _ = WriteUpdateScript(w, "9.9.9", size)
	}))
	defer srv.Close()

	st := vectorState(t)
	st.CUPSURI = srv.URL
	st.SigKeys = [][]byte{sigKey}
	s := New(st)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res := s.Poll(context.Background())
	runtime.ReadMemStats(&after)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Update).To(Equal(UpdateApplied), res.UpdateReason)
	g.Expect(s.Package()).To(Equal("9.9.9"))
	g.Expect(res.BytesRead).To(BeNumerically(">", size))
	// Total allocation stays far below the firmware size (server included).
	g.Expect(after.TotalAlloc - before.TotalAlloc).To(BeNumerically("<", 16<<20))
}

func TestFleet(t *testing.T) {
	g := NewWithT(t)
	srv := newVectorServer(t, constant(readTestdata(t, "response-nochange.bin")))
	var stations []*Station
	for i := range 300 {
		st := vectorState(t)
		st.EUI = vectorEUI + uint64(i)
		st.CUPSURI = srv.URL
		stations = append(stations, New(st))
	}
	stations[0].SetBehavior(Behavior{StopPolling: true})
	var results atomic.Int64
	f := NewFleet(stations, FleetOptions{Interval: 200 * time.Millisecond, Workers: 32,
		OnResult: func(_ *Station, r Result) {
			results.Add(1)
			if r.Err != nil {
				t.Logf("poll failed: %v", r.Err)
			}
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	g.Expect(f.Run(ctx)).To(MatchError(context.DeadlineExceeded))
	stats := f.Stats()
	g.Expect(stats.Polls).To(BeNumerically(">=", 299*3))
	g.Expect(stats.Failures).To(BeZero())
	g.Expect(stats.Malformed).To(BeZero())
	g.Expect(stations[0].Stats().Polls).To(BeZero())
	g.Expect(results.Load()).To(BeNumerically(">", 0))
	// Every station polled with its own EUI.
	seen := map[string]bool{}
	srv.mu.Lock()
	for _, r := range srv.requests {
		seen[string(r[:40])] = true
	}
	srv.mu.Unlock()
	g.Expect(len(seen)).To(Equal(299))
}
