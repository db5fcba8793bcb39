package iothub

import (
	"context"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
)

// An emulator's HostName is a host name, as IoT Hub's is; WithEndpoint
// reaches it where it listens while TLS and the SAS token keep the name.
func TestWithEndpoint(t *testing.T) {
	g := NewWithT(t)
	// .invalid never resolves (RFC 6761): only the endpoint leads anywhere.
	hub := hubsim.Start(t, hubsim.Options{HubName: "emulated-hub.invalid"})
	g.Expect(hub.Seed("001122FFFE334455", map[string]any{"region": "eu"}, nil)).To(Succeed())
	ctx := context.Background()

	c, err := New(hub.ConnectionString(), WithCAFile(hub.CAFile()), WithEndpoint(hub.Addr()), WithoutRateLimits())
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	g.Expect(c.HostName()).To(Equal("emulated-hub.invalid"))
	tw, err := c.Get(ctx, "001122FFFE334455")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tw.Tags["region"]).To(Equal("eu"))

	// Without it the client goes where HostName says, as a real hub's does.
	direct, err := New(hub.ConnectionString(), WithCAFile(hub.CAFile()), WithoutRateLimits(), WithRetry(1, 1, 1))
	g.Expect(err).NotTo(HaveOccurred())
	defer direct.Close()
	_, err = direct.Get(ctx, "001122FFFE334455")
	g.Expect(err).To(MatchError(ContainSubstring("emulated-hub.invalid")))

	for _, bad := range []string{"127.0.0.1", "127.0.0.1:0", "127.0.0.1:http", ":443", "127.0.0.1:70000"} {
		_, err := New(hub.ConnectionString(), WithEndpoint(bad))
		g.Expect(err).To(MatchError(ContainSubstring("endpoint %q", bad)), bad)
	}
	_, err = New(hub.ConnectionString(), WithEndpoint(hub.Addr()), WithHTTPClient(&http.Client{}))
	g.Expect(err).To(MatchError(ContainSubstring("cannot be combined")))
}
