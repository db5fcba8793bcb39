package stationsim

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// statusServer answers every request with status code.
func statusServer(t *testing.T, code int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, http.StatusText(code), code)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// refusedURI is a loopback URI where nothing listens.
func refusedURI(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	uri := "http://" + ln.Addr().String()
	_ = ln.Close()
	return uri
}

func pollOnce(t *testing.T, s *Station) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Poll(ctx)
}

// TestBackupCopiedOnce: the first HTTP 200 to a session with the regular
// set copies it to the backup set; credentials sent later over CUPS replace
// the regular set only, and the backup is never copied again, not even
// after a restart.
func TestBackupCopiedOnce(t *testing.T) {
	g := NewWithT(t)
	cred1 := CredSet{Trust: []byte("t1"), Key: []byte("Authorization: Bearer one\r\n")}
	cred2 := credFromBlob(t, concat(fakeCert(0x20), []byte{0, 0, 0, 0}, []byte("Authorization: Bearer two\r\n")))
	cred3 := credFromBlob(t, concat(fakeCert(0x30), []byte{0, 0, 0, 0}, []byte("Authorization: Bearer three\r\n")))
	var next atomic.Pointer[[]byte] // the credential blob to send, nil for none
	vs := newVectorServer(t, func([]byte) []byte {
		if b := next.Load(); b != nil {
			return body("", "", *b, nil, nil, nil)
		}
		return make([]byte, 14)
	})
	st := State{EUI: 1, CUPSURI: vs.URL, CUPSCred: cred1, Package: "v1"}
	s := New(st)

	res := pollOnce(t, s)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.CredSet).To(Equal(CredSetRegular))
	g.Expect(res.BackupTaken).To(BeTrue())
	g.Expect(s.State().BackupDone).To(BeTrue())
	g.Expect(s.State().Backup).To(Equal(CUPSSet{URI: vs.URL, Cred: cred1}))

	for _, rotated := range []CredSet{cred2, cred3} {
		blob := concat(rotated.Trust, []byte{0, 0, 0, 0}, rotated.Key)
		next.Store(&blob)
		res = pollOnce(t, s)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.CUPSCredChanged).To(BeTrue())
		g.Expect(res.BackupTaken).To(BeFalse())
		g.Expect(s.State().CUPSCred.CRC()).To(Equal(rotated.CRC()), "CUPS credentials land in the regular set")
		g.Expect(s.State().Backup.Cred).To(Equal(cred1), "and never in the backup set")
	}
	next.Store(nil)
	s.Restart()
	res = pollOnce(t, s)
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.BackupTaken).To(BeFalse(), "cups-bak.done survives a restart")
	g.Expect(s.State().Backup.Cred).To(Equal(cred1))
}

// fakeCert is a minimal ASN.1 SEQUENCE the credential parser accepts as a
// certificate.
func fakeCert(fill byte) []byte { return []byte{0x30, 0x03, fill, fill, fill} }

func credFromBlob(t *testing.T, blob []byte) CredSet {
	t.Helper()
	c, err := ParseCredBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCredentialSetRotation follows cups_ondone: an HTTP error status or a
// set without a URI moves to the next set at once; other failures only
// after more than FailCountThreshold of them; a success goes back to the
// regular set; the request always reports the regular set.
func TestCredentialSetRotation(t *testing.T) {
	ok := newVectorServer(t, constant(make([]byte, 14)))
	refused := refusedURI(t)
	forbidden := statusServer(t, http.StatusForbidden)

	t.Run("HTTP error status moves to the backup at once", func(t *testing.T) {
		g := NewWithT(t)
		s := New(State{EUI: 1, CUPSURI: forbidden, Backup: CUPSSet{URI: ok.URL}, BackupDone: true})
		res := pollOnce(t, s)
		g.Expect(res.StatusCode).To(Equal(403))
		g.Expect(res.CredSet).To(Equal(CredSetRegular))
		g.Expect(res.NextCredSet).To(Equal(CredSetBackup))
		g.Expect(res.FailCount).To(Equal(1))
		res = pollOnce(t, s)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.CredSet).To(Equal(CredSetBackup))
		g.Expect(string(res.Request)).To(ContainSubstring(`"cupsUri":"`+forbidden+`"`), "the body reports the regular set")
		g.Expect(res.NextCredSet).To(Equal(CredSetRegular), "a success returns to the regular set")
		g.Expect(res.FailCount).To(BeZero())
		g.Expect(res.BackupTaken).To(BeFalse(), "only a session with the regular set takes the backup")
	})

	t.Run("other failures move on only after more than FailCountThreshold", func(t *testing.T) {
		g := NewWithT(t)
		s := New(State{EUI: 1, CUPSURI: refused, Backup: CUPSSet{URI: ok.URL}, BackupDone: true})
		for i := 1; i <= FailCountThreshold+1; i++ {
			res := pollOnce(t, s)
			g.Expect(res.Err).To(HaveOccurred())
			g.Expect(res.CredSet).To(Equal(CredSetRegular), "failure %d", i)
			g.Expect(res.NextCredSet).To(Equal(CredSetRegular), "failure %d", i)
		}
		res := pollOnce(t, s) // the 8th failure: 7 came before it
		g.Expect(res.CredSet).To(Equal(CredSetRegular))
		g.Expect(res.NextCredSet).To(Equal(CredSetBackup))
		res = pollOnce(t, s)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.CredSet).To(Equal(CredSetBackup))
		g.Expect(s.NextCredSet()).To(Equal(CredSetRegular))
	})

	t.Run("nothing works: regular, backup, boot in turn", func(t *testing.T) {
		g := NewWithT(t)
		s := New(State{EUI: 1, CUPSURI: refused, Backup: CUPSSet{URI: forbidden}, BackupDone: true})
		var used []CredSetName
		for range 14 {
			res := pollOnce(t, s)
			g.Expect(res.Err).To(HaveOccurred())
			used = append(used, res.CredSet)
		}
		r, b, o := CredSetRegular, CredSetBackup, CredSetBoot
		// Eight on the regular set, then every failure moves on (the
		// count is only cleared by a success); boot has no URI.
		g.Expect(used).To(Equal([]CredSetName{r, r, r, r, r, r, r, r, b, o, r, b, o, r}))
		g.Expect(s.Stats().Failures).To(BeEquivalentTo(14))
		s.Restart()
		g.Expect(s.NextCredSet()).To(Equal(CredSetRegular))
	})

	t.Run("credentials sent to a backup session replace the regular set", func(t *testing.T) {
		g := NewWithT(t)
		fresh := CredSet{Trust: fakeCert(0x44), Key: []byte("Authorization: Bearer fresh\r\n")}
		heal := newVectorServer(t, constant(body("", "", concat(fresh.Trust, []byte{0, 0, 0, 0}, fresh.Key), nil, nil, nil)))
		old := CredSet{Key: []byte("Authorization: Bearer old\r\n")}
		s := New(State{EUI: 1, CUPSURI: forbidden, Backup: CUPSSet{URI: heal.URL, Cred: old}, BackupDone: true},
			WithSchedule(Schedule{Resync: time.Millisecond, OKSync: time.Hour}), WithBehavior(Behavior{TC: TCUnreachable}))
		pollOnce(t, s)
		res := pollOnce(t, s)
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.CredSet).To(Equal(CredSetBackup))
		g.Expect(res.CUPSCredChanged).To(BeTrue())
		g.Expect(s.State().CUPSCred.CRC()).To(Equal(fresh.CRC()))
		g.Expect(s.State().Backup.Cred).To(Equal(old))
		g.Expect(res.NextPoll).To(Equal(time.Millisecond), "a credential change brings the next session R later")

		// With TC connected, the next session waits for the regular
		// check-in, credential change or not (cups_ondone).
		s = New(State{EUI: 1, CUPSURI: heal.URL}, WithSchedule(Schedule{Resync: time.Millisecond, OKSync: time.Hour}))
		res = pollOnce(t, s)
		g.Expect(res.StartPoll).To(BeTrue())
		g.Expect(res.NextPoll).To(Equal(time.Millisecond), "TC connects only after the start poll")
		res = pollOnce(t, s)
		g.Expect(res.CUPSCredChanged).To(BeTrue())
		g.Expect(res.StartPoll).To(BeFalse())
		g.Expect(res.NextPoll).To(BeNumerically("~", time.Hour, 6*time.Minute), "TC is up: OKSync")
	})
}
