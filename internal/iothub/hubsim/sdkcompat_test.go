package hubsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// What Microsoft's service SDKs (npm azure-iothub 1.16.6 and the others)
// expect of IoT Hub, one test per point; cmd/iothub-emulator's test drives
// the Node SDK itself against the emulator command.

// connectionStringField returns one field of a connection string.
func connectionStringField(cs, key string) string {
	for _, part := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// The SDKs connect to HostName on port 443 and sign HostName: it must be a
// host name, as "<hub>.azure-devices.net" is, never "127.0.0.1:PORT".
func TestConnectionStringHostNameIsAHostName(t *testing.T) {
	g := NewWithT(t)
	hub := startHub(t)
	host := connectionStringField(hub.ConnectionString(), "HostName")
	g.Expect(host).To(Equal("localhost"))
	g.Expect(hub.HostName()).To(Equal("localhost"))
	g.Expect(host).NotTo(ContainSubstring(":"), "HostName carries no port")
	_, port, err := net.SplitHostPort(hub.Addr())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(port).NotTo(Equal("0"))

	// Another name: the connection string carries it, the certificate
	// names it, tokens must sign it.
	named := Start(t, Options{PolicyKey: testKey, HubName: "MyHub.example.test"})
	g.Expect(connectionStringField(named.ConnectionString(), "HostName")).To(Equal("myhub.example.test"))
	conn, err := tls.Dial("tcp", named.Addr(), &tls.Config{RootCAs: named.CertPool(), ServerName: "myhub.example.test", MinVersion: tls.VersionTLS12})
	g.Expect(err).NotTo(HaveOccurred(), "the server certificate names the hub")
	_ = conn.Close()
	c := newRaw(named)
	code, _, body := c.do(t, http.MethodGet, "/twins/NOPE", "2021-04-12", nodeToken(t, "myhub.example.test"), nil, nil)
	g.Expect(code).To(Equal(http.StatusNotFound), string(body))

	for _, bad := range []string{"127.0.0.1:45529", "localhost:443", "https://localhost", "127.0.0.1", "::1", "a..b", "-hub.example", "hub_1.example", strings.Repeat("a", 64) + ".example"} {
		_, err := New(Options{HubName: bad, CertDir: t.TempDir()})
		g.Expect(err).To(MatchError(ContainSubstring("hub name %q", bad)), bad)
	}
}

// nodeToken builds a service token exactly as azure-iot-common's
// SharedAccessSignature.create(host, policy, key, expiry) does for
// Registry.fromConnectionString: sr is the host name as given (not
// encoded), the signature is over that same text, and the fields come in
// the order sr, sig, skn, se.
func nodeToken(t testing.TB, host string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(testKey)
	if err != nil {
		t.Fatal(err)
	}
	se := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	h := hmac.New(sha256.New, key)
	h.Write([]byte(host + "\n" + se))
	sig := url.QueryEscape(base64.StdEncoding.EncodeToString(h.Sum(nil))) // encodeUriComponentStrict of base64
	return "SharedAccessSignature sr=" + host + "&sig=" + sig + "&skn=" + DefaultPolicyName + "&se=" + se
}

// IoT Hub signs sr as the token carries it (the URL-encoded resource), and
// the resource is the hub's host name without a port.
func TestSASSignedAsTheSDKsSignIt(t *testing.T) {
	hub := startHub(t)
	NewWithT(t).Expect(hub.Seed("DEV1", nil, nil)).To(Succeed())
	c := newRaw(hub)
	_, port, _ := net.SplitHostPort(hub.Addr())
	encoded := func(resource string) string { // iotservice and the C# SDK: sr URL-encoded, signed encoded
		tok, err := SASToken(resource, DefaultPolicyName, testKey, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name string
		auth string
		want int
	}{
		{"Node SDK: sr is the plain host name", nodeToken(t, hub.HostName()), http.StatusOK},
		{"iotservice and C#: sr URL-encoded", encoded(hub.HostName()), http.StatusOK},
		{"sr with a path under the hub", encoded(hub.HostName() + "/twins"), http.StatusOK},
		{"sr with a path, sent unencoded: signed as sent", nodeToken(t, hub.HostName()+"/twins/DEV1"), http.StatusOK},
		{"sr with the listening port", nodeToken(t, hub.HostName()+":"+port), http.StatusUnauthorized},
		{"sr with the listening port, encoded", encoded(hub.Addr()), http.StatusUnauthorized},
		{"sr of another hub", nodeToken(t, "otherhub.azure-devices.net"), http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := c.do(t, http.MethodGet, "/twins/DEV1", "2021-04-12", tc.auth, nil, nil)
			NewWithT(t).Expect(code).To(Equal(tc.want), string(body))
		})
	}
}

// Microsoft's SDKs quote every If-Match value, "*" included; IoT Hub takes
// "*" as an unconditional write.
func TestIfMatchQuotedStarIsUnconditional(t *testing.T) {
	g := NewWithT(t)
	hub := startHub(t)
	c := newRaw(hub)
	tok := nodeToken(t, hub.HostName())
	do := func(method, path, ifMatch string, body any) (int, http.Header, []byte) {
		var h map[string]string
		if ifMatch != "" {
			h = map[string]string{"If-Match": ifMatch}
		}
		return c.do(t, method, path, "2021-04-12", tok, h, body)
	}

	// Registry.create: no If-Match.
	code, _, body := do(http.MethodPut, "/devices/dev-a", "", map[string]any{"deviceId": "dev-a"})
	g.Expect(code).To(Equal(http.StatusOK), string(body))
	// Registry.update: If-Match: "*".
	code, _, body = do(http.MethodPut, "/devices/dev-a", `"*"`, map[string]any{"deviceId": "dev-a", "status": "disabled"})
	g.Expect(code).To(Equal(http.StatusOK), string(body))
	var dev map[string]any
	g.Expect(json.Unmarshal(body, &dev)).To(Succeed())
	g.Expect(dev["status"]).To(Equal("disabled"))
	// Registry.updateTwin(id, patch, "*"): PATCH with "*".
	code, _, body = do(http.MethodPatch, "/twins/dev-a", `"*"`, map[string]any{"tags": map[string]any{"a": 1}})
	g.Expect(code).To(Equal(http.StatusOK), string(body))
	// A full twin replace with "*".
	code, hdr, body := do(http.MethodPut, "/twins/dev-a", `"*"`, map[string]any{"tags": map[string]any{"b": 2}})
	g.Expect(code).To(Equal(http.StatusOK), string(body))
	doc, _ := hub.TwinDocument("dev-a")
	g.Expect(doc["tags"]).To(Equal(map[string]any{"b": float64(2)}))
	// iotservice's bare * too.
	code, _, body = do(http.MethodPatch, "/twins/dev-a", "*", map[string]any{"tags": map[string]any{"c": 3}})
	g.Expect(code).To(Equal(http.StatusOK), string(body))
	// A quoted ETag is still compared: the one read before the last write is stale.
	code, _, _ = do(http.MethodPatch, "/twins/dev-a", hdr.Get("ETag"), map[string]any{"tags": map[string]any{"d": 4}})
	g.Expect(code).To(Equal(http.StatusPreconditionFailed))
	code, _, _ = do(http.MethodDelete, "/devices/dev-a", `"stale"`, nil)
	g.Expect(code).To(Equal(http.StatusPreconditionFailed))
	// Registry.delete: If-Match: "*".
	code, _, body = do(http.MethodDelete, "/devices/dev-a", `"*"`, nil)
	g.Expect(code).To(Equal(http.StatusNoContent), string(body))
	g.Expect(hub.DeviceCount()).To(BeZero())
}

// A continuation token means more results: none when the last match has been
// returned, even when devices that do not match remain after it.
func TestQueryNoContinuationAfterLastMatch(t *testing.T) {
	hub := startHub(t)
	g := NewWithT(t)
	for i := range 9 { // devices 0..8; 0, 2, 4, 6 in eu, the rest (last one included) not
		region := "us"
		if i%2 == 0 && i < 8 {
			region = "eu"
		}
		g.Expect(hub.Seed(devID(i), map[string]any{"region": region}, nil)).To(Succeed())
	}
	c := newRaw(hub)
	for _, tc := range []struct {
		name  string
		query string
		size  string
		pages []int
	}{
		{"last page exactly full", "SELECT * FROM devices WHERE tags.region = 'eu'", "2", []int{2, 2}},
		{"last page short", "SELECT * FROM devices WHERE tags.region = 'eu'", "3", []int{3, 1}},
		{"one page exactly full", "SELECT * FROM devices WHERE tags.region = 'eu'", "4", []int{4}},
		{"device ids", "SELECT * FROM devices WHERE deviceId IN ['" + devID(0) + "', '" + devID(1) + "']", "2", []int{2}},
		{"nothing matches", "SELECT * FROM devices WHERE tags.region = 'ap'", "2", []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var pages []int
			token := ""
			for len(pages) < 10 {
				h := map[string]string{"x-ms-max-item-count": tc.size}
				if token != "" {
					h["x-ms-continuation"] = token
				}
				code, hdr, body := c.do(t, http.MethodPost, "/devices/query", "2021-04-12", c.token(t), h, map[string]any{"query": tc.query})
				g.Expect(code).To(Equal(http.StatusOK), string(body))
				var page []map[string]any
				g.Expect(json.Unmarshal(body, &page)).To(Succeed())
				pages = append(pages, len(page))
				if token = hdr.Get("x-ms-continuation"); token == "" {
					break
				}
			}
			g.Expect(pages).To(Equal(tc.pages))
		})
	}
}
