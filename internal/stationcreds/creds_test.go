package stationcreds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

func testCA(t *testing.T) (*CA, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(20 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	ca, err := ParseCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	if err != nil {
		t.Fatal(err)
	}
	return ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestCredentialBlobAsTheStationReadsIt: the blob of every credential kind
// splits, with the station's parser, into exactly the files add writes, and
// the CRC is the one the station reports for them.
func TestCredentialBlobAsTheStationReadsIt(t *testing.T) {
	ca, trust := testCA(t)
	for _, tc := range []struct {
		name  string
		issue func() (*Credential, error)
	}{
		{"ec-p256", func() (*Credential, error) { return IssueCert(ca, "0016C0FFFE000001", trust, IssueOptions{}) }},
		{"rsa-2048", func() (*Credential, error) {
			return IssueCert(ca, "0016C0FFFE000001", trust, IssueOptions{KeyType: KeyRSA2048})
		}},
		{"token", func() (*Credential, error) { return IssueToken(trust) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c, err := tc.issue()
			g.Expect(err).NotTo(HaveOccurred())
			set, err := stationsim.ParseCredBlob(c.Blob())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(set.Trust).To(Equal(c.Trust))
			g.Expect(set.Cert).To(Equal(c.Cert))
			g.Expect(set.Key).To(Equal(c.Key))
			g.Expect(set.CRC()).To(Equal(c.CRC()))
			if c.Kind == twin.KindX509 {
				cert, err := x509.ParseCertificate(c.Cert)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(cert.Subject.CommonName).To(Equal("0016C0FFFE000001"))
				g.Expect(cert.CheckSignatureFrom(ca.Cert)).To(Succeed())
				g.Expect(c.Thumbprint()).To(HaveLen(40))
			} else {
				g.Expect(string(c.Key)).To(HavePrefix("Authorization: Bearer "))
				g.Expect(c.TokenSHA256()).To(HaveLen(64))
			}
		})
	}
	// A DER element of 128..255 bytes (a PKCS#8 P-256 key is 138) would be
	// misread by the station: refused.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p8, _ := x509.MarshalPKCS8PrivateKey(k)
	NewWithT(t).Expect(stationReadable(p8)).To(MatchError(ContainSubstring("Basics Station reads only")))
	NewWithT(t).Expect(CRC(nil, nil, nil)).To(Equal(EmptyCRC))
}

// TestSettleKeepsTheBackup: a reported pending credential becomes regular,
// the one it replaced is retired unless it is the backup.
func TestSettleKeepsTheBackup(t *testing.T) {
	g := NewWithT(t)
	recs := []twin.CredentialRecord{
		{ID: 1, CRC: 1, Roles: []string{twin.RoleRegular, twin.RoleBackup}},
		{ID: 2, CRC: 2, Roles: []string{twin.RolePending}},
	}
	two := uint32(2)
	out, retired := Settle(recs, &two)
	g.Expect(retired).To(BeEmpty())
	g.Expect(out[0].Roles).To(Equal([]string{twin.RoleBackup}))
	g.Expect(out[1].Roles).To(Equal([]string{twin.RoleRegular}))
	out = append(out, twin.CredentialRecord{ID: 3, CRC: 3, Roles: []string{twin.RolePending}})
	three := uint32(3)
	out, retired = Settle(out, &three)
	g.Expect(retired).To(HaveLen(1))
	g.Expect(retired[0].ID).To(Equal(2))
	g.Expect(out).To(HaveLen(2))
	_, _, _, err := Revoke(out, []int{9}, false)
	g.Expect(err).To(HaveOccurred())
	left, revoked, kept, err := Revoke(out, nil, false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(revoked).To(HaveLen(1))
	g.Expect(kept).To(HaveLen(1))
	g.Expect(left[0].ID).To(Equal(1))
}
