package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/firmware/stores"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// enrollWorld is a CUPS server in TLS mode (client CA, credential blobs from
// a local directory) reading twins through the real IoT Hub client from the
// emulator, and the files the station commands need.
type enrollWorld struct {
	hub                         *hubsim.Server
	srv                         *cups.Server
	reg                         *iothub.Client
	cupsURI                     string
	caCert, caKey, serverCAFile string
	connFile, credStore, sigKey string
	dir                         string
}

func newEnrollWorld(t *testing.T) *enrollWorld {
	t.Helper()
	g := NewWithT(t)
	w := &enrollWorld{dir: t.TempDir()}
	w.hub = hubsim.Start(t, hubsim.Options{})
	reg, err := iothub.New(w.hub.ConnectionString(), iothub.WithCAFile(w.hub.CAFile()), iothub.WithEndpoint(w.hub.Addr()), iothub.WithoutRateLimits())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = reg.Close() })
	w.reg = reg
	w.connFile = filepath.Join(w.dir, "iothub-connection-string")
	g.Expect(os.WriteFile(w.connFile, []byte(w.hub.ConnectionString()), 0o600)).To(Succeed())

	// The operator's station CA (client certificates) and the CUPS server's CA.
	stCert, stKey := testCA(t, "stations CA")
	srvCACert, srvCAKey := testCA(t, "cups server CA")
	w.caCert, w.caKey = writePEMPair(t, w.dir, "stations-ca", stCert, stKey)
	w.serverCAFile, _ = writePEMPair(t, w.dir, "server-ca", srvCACert, srvCAKey)
	srvCert, srvKey := leaf(t, srvCACert, srvCAKey)
	certFile, keyFile := writePEMPair(t, w.dir, "cups-server", srvCert, srvKey)

	credDir := filepath.Join(w.dir, "credentials")
	g.Expect(os.MkdirAll(credDir, 0o700)).To(Succeed())
	w.credStore = "file://" + credDir + "/"
	blobs, err := stores.New(stores.Options{Dir: credDir})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = blobs.Close() })

	srv, err := cups.NewServer(cups.Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: w.caCert, CacheTTL: time.Millisecond},
		reg, blobs, cups.WithRegisterer(prometheus.NewRegistry()), cups.WithLogger(logr.Discard()))
	g.Expect(err).NotTo(HaveOccurred())
	w.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	w.cupsURI = "https://" + ln.Addr().String()

	priv, err := signing.GenerateKey()
	g.Expect(err).NotTo(HaveOccurred())
	pemKey, err := signing.MarshalPrivateKeyPEM(priv, signing.PKCS8)
	g.Expect(err).NotTo(HaveOccurred())
	w.sigKey = filepath.Join(w.dir, "sig-0.private.pem")
	g.Expect(os.WriteFile(w.sigKey, pemKey, 0o600)).To(Succeed())
	return w
}

// station runs a station command against the world.
func (w *enrollWorld) station(t *testing.T, args ...string) result {
	t.Helper()
	full := append([]string{"station"}, args...)
	full = append(full, "--iothub-connection-string-file", w.connFile, "--iothub-ca-file", w.hub.CAFile(), "--iothub-endpoint", w.hub.Addr(), "--iothub-no-rate-limit")
	return runCLI(t, full...)
}

func (w *enrollWorld) issueFlags(auth string) []string {
	f := []string{"--trust", w.serverCAFile, "--credential-store", w.credStore}
	if auth == "token" {
		return append(f, "--auth", "token")
	}
	return append(f, "--ca-cert", w.caCert, "--ca-key", w.caKey)
}

func (w *enrollWorld) twin(t *testing.T, id string) *twin.Twin {
	t.Helper()
	tw, err := w.reg.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get twin: %v", err)
	}
	return tw
}

// poll runs one CUPS session and waits for its observation to be in the
// twin: CUPS writes it in the background, after the answer.
func (w *enrollWorld) poll(t *testing.T, st *stationsim.Station) stationsim.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := st.Poll(ctx)
	if res.Malformed() {
		t.Fatalf("malformed response: %v %v", res.Err, res.Violations)
	}
	NewWithT(t).Eventually(w.srv.PendingObservations, 10*time.Second, time.Millisecond).
		Should(BeZero(), "the observation of the poll is still being written")
	return res
}

func statusOf(res stationsim.Result) int {
	var se *stationsim.StatusError
	if errors.As(res.Err, &se) {
		return se.Code
	}
	if res.Err != nil {
		return -1
	}
	return 200
}

const enrollEUI = "0016C0FFFE00E001"

// TestStationEnrollPollRotateRevoke enrolls a simulated station with
// `station add`, lets it poll CUPS (TLS, client certificate) with exactly
// the files add wrote, rotates its credential through CUPS, and revokes it:
// the regular credential is refused at once, the backup still gets in
// until it is revoked too.
func TestStationEnrollPollRotateRevoke(t *testing.T) {
	for _, auth := range []string{"cert", "token"} {
		t.Run(auth, func(t *testing.T) {
			g := NewWithT(t)
			w := newEnrollWorld(t)
			home := filepath.Join(w.dir, "home")
			r := w.station(t, append([]string{"add", enrollEUI, "--cups-uri", w.cupsURI, "--sig-key", w.sigKey,
				"--tag", "ring=canary", "--out", home}, w.issueFlags(auth)...)...)
			g.Expect(r.code).To(Equal(0), r.errOut)
			g.Expect(r.out).To(ContainSubstring("created device " + enrollEUI))

			// The files: 0600, the secret never printed.
			for _, f := range []string{"cups.uri", "cups.trust", "cups.key", "sig-0.key", "station.conf"} {
				fi, err := os.Stat(filepath.Join(home, f))
				g.Expect(err).NotTo(HaveOccurred(), f)
				g.Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)), f)
			}
			key, err := os.ReadFile(filepath.Join(home, "cups.key"))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.out + r.errOut).NotTo(ContainSubstring(string(key[len(key)/2:])))
			_, err = os.Stat(filepath.Join(home, "cups.crt"))
			g.Expect(err == nil).To(Equal(auth == "cert"), "cups.crt only for a certificate")

			tw := w.twin(t, enrollEUI)
			g.Expect(tw.Tags).To(HaveKeyWithValue("ring", "canary"))
			g.Expect(tw.Credentials).To(HaveLen(1))
			g.Expect(tw.Credentials[0].Roles).To(ConsistOf(twin.RoleRegular, twin.RoleBackup))

			// The station polls with the files add wrote: authenticated,
			// nothing to change (its credential CRC is the desired one).
			st, err := stationsim.LoadHome(home)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(embeddedID(st.EUI)).To(Equal(enrollEUI))
			st.Package = "2.0.6"
			backup := st.CUPSCred // the station copies it to cups-bak.* at this first success
			station := stationsim.New(st, stationsim.WithTimeout(10*time.Second))
			res := w.poll(t, station)
			g.Expect(res.Err).NotTo(HaveOccurred())
			g.Expect(res.BackupTaken).To(BeTrue())
			g.Expect(res.Response.NothingToChange()).To(BeTrue())
			g.Expect(*w.twin(t, enrollEUI).Observation.CupsCredCRC).To(Equal(backup.CRC()))

			// Rotate: CUPS delivers the new credential, the station uses it.
			r = w.station(t, append([]string{"rotate", enrollEUI}, w.issueFlags("")...)...)
			g.Expect(r.code).To(Equal(0), r.errOut)
			g.Expect(r.out).To(ContainSubstring("stays valid"))
			res = w.poll(t, station)
			g.Expect(res.Err).NotTo(HaveOccurred())
			g.Expect(res.CUPSCredChanged).To(BeTrue())
			regular := station.State().CUPSCred
			g.Expect(regular.CRC()).NotTo(Equal(backup.CRC()))
			res = w.poll(t, station)
			g.Expect(res.Err).NotTo(HaveOccurred(), "the station gets in with the rotated credential")
			g.Expect(res.Response.NothingToChange()).To(BeTrue())
			g.Expect(*w.twin(t, enrollEUI).Observation.CupsCredCRC).To(Equal(regular.CRC()))

			r = w.station(t, "show", enrollEUI)
			g.Expect(r.code).To(Equal(0), r.errOut)
			g.Expect(r.out).To(MatchRegexp(`credential 1 .*: backup\n`))
			g.Expect(r.out).To(MatchRegexp(`credential 2 .*: regular\n`))

			// Revoke the regular credential: refused at once; the backup
			// is kept, and revoke says so.
			r = w.station(t, "revoke", enrollEUI, "--credential", "2")
			g.Expect(r.code).To(Equal(0), r.errOut)
			g.Expect(r.out).To(ContainSubstring("revoked credential 2"))
			g.Expect(r.out).To(MatchRegexp(`credential 1 .* stays valid: the station's backup`))
			res = w.poll(t, station)
			g.Expect(statusOf(res)).To(Equal(403), "the revoked regular credential is refused")
			g.Expect(res.NextCredSet).To(Equal(stationsim.CredSetBackup))
			res = w.poll(t, station)
			g.Expect(res.CredSet).To(Equal(stationsim.CredSetBackup))
			g.Expect(res.Err).NotTo(HaveOccurred(), "the backup still gets in")

			// Revoke the station (a stolen gateway): every credential,
			// the backup included, is invalid at once.
			r = w.station(t, "revoke", enrollEUI)
			g.Expect(r.code).To(Equal(0), r.errOut)
			g.Expect(r.out).To(ContainSubstring("revoked credential 1"))
			g.Expect(r.errOut).To(ContainSubstring("can no longer fall back"))
			for range 3 { // regular, backup, boot (none)
				g.Expect(w.poll(t, station).Err).To(HaveOccurred(), "no credential set gets in")
			}
			tw = w.twin(t, enrollEUI)
			g.Expect(tw.ClientThumbprints).To(BeEmpty())
			g.Expect(tw.TokenSHA256).To(BeEmpty())
		})
	}
}

// TestStationRotateTwiceKeepsBackup rotates a station's credential twice
// and then breaks its regular set: the station falls back to its backup
// set, which still holds the credential add issued (a station never
// refreshes its backup), and gets in; CUPS then repairs its regular set.
func TestStationRotateTwiceKeepsBackup(t *testing.T) {
	g := NewWithT(t)
	w := newEnrollWorld(t)
	home := filepath.Join(w.dir, "home")
	r := w.station(t, append([]string{"add", enrollEUI, "--cups-uri", w.cupsURI, "--out", home}, w.issueFlags("cert")...)...)
	g.Expect(r.code).To(Equal(0), r.errOut)
	st, err := stationsim.LoadHome(home)
	g.Expect(err).NotTo(HaveOccurred())
	station := stationsim.New(st, stationsim.WithTimeout(10*time.Second))
	res := w.poll(t, station)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.BackupTaken).To(BeTrue(), "the first success copies credential 1 to cups-bak.*")

	for i := range 2 {
		r = w.station(t, append([]string{"rotate", enrollEUI}, w.issueFlags("")...)...)
		g.Expect(r.code).To(Equal(0), r.errOut)
		g.Expect(r.out).To(MatchRegexp(`credential 1 .* stays valid: .*backup`), "rotate %d says the backup stays valid", i+1)
		res := w.poll(t, station)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.CUPSCredChanged).To(BeTrue())
		g.Expect(w.poll(t, station).Err).NotTo(HaveOccurred())
	}
	g.Expect(station.State().Backup.Cred.CRC()).To(Equal(w.twin(t, enrollEUI).Credentials[0].CRC), "the backup set still holds credential 1")

	// Credential 1, the station's backup, is still allowed after two
	// rotations; show says what the station holds.
	tw := w.twin(t, enrollEUI)
	g.Expect(tw.ClientThumbprints).To(ContainElement(tw.Credentials[0].Thumbprint))
	g.Expect(tw.Credentials[0].Roles).To(Equal([]string{twin.RoleBackup}))
	r = w.station(t, "show", enrollEUI)
	g.Expect(r.out).To(MatchRegexp(`credential 1 .*: backup\n`))
	g.Expect(r.out).To(MatchRegexp(`credential 3 .*: regular\n`))

	// Break the regular set: a damaged key file. Its sessions fail; after
	// the station's failure threshold it falls back to its backup set and
	// gets in, and CUPS sends it its regular credential again.
	broken := station.State()
	broken.CUPSCred.Key = []byte("damaged")
	station.SetState(broken)
	var got stationsim.Result
	for range 12 {
		if got = w.poll(t, station); got.Err == nil {
			break
		}
	}
	g.Expect(got.Err).NotTo(HaveOccurred(), "the station gets in with its backup credential")
	g.Expect(got.CredSet).To(Equal(stationsim.CredSetBackup))
	g.Expect(got.CUPSCredChanged).To(BeTrue(), "CUPS repairs the regular set")
	res = w.poll(t, station)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.CredSet).To(Equal(stationsim.CredSetRegular))
}

func embeddedID(eui uint64) string { return strings.ToUpper(cups.EUI(eui).DeviceID()) }

func testCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// leaf is the CUPS server's certificate for 127.0.0.1: an IP SAN for Go's
// check and a DNS SAN with the same text for mbedTLS's.
func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "cups"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"127.0.0.1", "localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func writePEMPair(t *testing.T, dir, name string, c *x509.Certificate, k *ecdsa.PrivateKey) (certFile, keyFile string) {
	t.Helper()
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestStationAddPlainHTTP enrolls a station for the demo's plain-HTTP CUPS:
// no credential, cups.uri http, and the twin's desired cupsUri set.
func TestStationAddPlainHTTP(t *testing.T) {
	g := NewWithT(t)
	w := newEnrollWorld(t)
	home := filepath.Join(w.dir, "home")
	r := w.station(t, "add", "16:c0ff:fe00:e002", "--cups-uri", "http://127.0.0.1:5002", "--sig-key", w.sigKey, "--out", home)
	g.Expect(r.code).To(Equal(0), r.errOut)
	g.Expect(r.out).To(ContainSubstring("no credential"))
	st, err := stationsim.LoadHome(home)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st.CUPSURI).To(Equal("http://127.0.0.1:5002"))
	g.Expect(st.CUPSCred.Key).To(BeEmpty())
	g.Expect(st.SigKeys).To(HaveLen(1))
	tw := w.twin(t, "0016C0FFFE00E002")
	g.Expect(tw.CUPS.CupsURI).To(Equal("http://127.0.0.1:5002"))
	g.Expect(tw.Credentials).To(BeEmpty())

	// Enrolling again refuses nothing silently: the files exist.
	r = w.station(t, "add", "0016C0FFFE00E002", "--cups-uri", "http://127.0.0.1:5002", "--out", home)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.errOut).To(ContainSubstring("already exists"))
}
