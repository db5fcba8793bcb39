package testpki_test

import (
	"testing"

	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/testutil/testpki"
)

// TestServerCertificateServesStationsAndGoClients: the loopback server
// certificate names 127.0.0.1 and localhost the way a Basics Station
// (mbedTLS: dNSName only) and a Go client (iPAddress for an IP) each need.
func TestServerCertificateServesStationsAndGoClients(t *testing.T) {
	ca, err := testpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if !stationsim.MatchesHost(srv.Cert, host) {
			t.Errorf("a station refuses the certificate for %s", host)
		}
		if err := srv.Cert.VerifyHostname(host); err != nil {
			t.Errorf("a Go client refuses the certificate for %s: %v", host, err)
		}
	}
	if stationsim.MatchesHost(srv.Cert, "127.0.0.2") {
		t.Error("the certificate must not name other hosts")
	}
}
