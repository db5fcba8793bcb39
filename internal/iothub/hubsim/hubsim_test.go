package hubsim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

const testKey = "c3RhdGlvbmZsZWV0LWh1YnNpbS10ZXN0LWtleS0wMDAwMDAwMDA=" // base64, test only

// rawClient speaks to the emulator with plain net/http, to test what the
// emulator accepts independently of any IoT Hub client library.
type rawClient struct {
	hub  *Server
	http *http.Client
}

func newRaw(hub *Server) *rawClient {
	return &rawClient{hub: hub, http: &http.Client{Transport: &http.Transport{TLSClientConfig: hub.ClientTLSConfig()}}}
}

func (c *rawClient) token(t testing.TB) string {
	tok, err := SASToken(c.hub.HostName(), DefaultPolicyName, testKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (c *rawClient) doB(tb testing.TB, method, path, auth string, body any) (int, http.Header, []byte) {
	return c.do(tb, method, path, "2020-09-30", auth, nil, body)
}

func (c *rawClient) do(t testing.TB, method, path, apiVersion, auth string, hdr map[string]string, body any) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	u := "https://" + c.hub.Addr() + path
	if apiVersion != "" {
		u += "?api-version=" + apiVersion
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func startHub(t *testing.T) *Server {
	return Start(t, Options{PolicyKey: testKey})
}

func TestAuthenticationAndAPIVersion(t *testing.T) {
	hub := startHub(t)
	g := NewWithT(t)
	g.Expect(hub.Seed("DEV1", nil, nil)).To(Succeed())
	c := newRaw(hub)
	good := c.token(t)
	otherKey := "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktb3RoZXI="
	mk := func(resource, policy, key string, exp time.Time) string {
		tok, err := SASToken(resource, policy, key, exp)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases := []struct {
		name       string
		auth       string
		apiVersion string
		want       int
	}{
		{"valid token, iotservice's api-version", good, "2020-09-30", http.StatusOK},
		{"valid token, newer SDK api-version", good, "2021-04-12", http.StatusOK},
		{"missing api-version", good, "", http.StatusBadRequest},
		{"unknown api-version", good, "2099-01-01", http.StatusBadRequest},
		{"no token", "", "2020-09-30", http.StatusUnauthorized},
		{"expired token", mk(hub.HostName(), DefaultPolicyName, testKey, time.Now().Add(-time.Second)), "2020-09-30", http.StatusUnauthorized},
		{"wrong key", mk(hub.HostName(), DefaultPolicyName, otherKey, time.Now().Add(time.Hour)), "2020-09-30", http.StatusUnauthorized},
		{"unknown policy", mk(hub.HostName(), "registryRead", testKey, time.Now().Add(time.Hour)), "2020-09-30", http.StatusUnauthorized},
		{"other hub", mk("otherhub.azure-devices.net", DefaultPolicyName, testKey, time.Now().Add(time.Hour)), "2020-09-30", http.StatusUnauthorized},
		{"tampered expiry", strings.Replace(good, "&se=", "&se=9", 1), "2020-09-30", http.StatusUnauthorized},
		{"bearer instead of SAS", "Bearer abc", "2020-09-30", http.StatusUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			code, _, body := c.do(t, http.MethodGet, "/twins/DEV1", tc.apiVersion, tc.auth, nil, nil)
			g.Expect(code).To(Equal(tc.want), string(body))
		})
	}
}

func TestMergePatchNullDeletes(t *testing.T) {
	hub := startHub(t)
	g := NewWithT(t)
	g.Expect(hub.Seed("DEV1",
		map[string]any{"region": "eu", "site": map[string]any{"city": "Oslo", "rack": 3}},
		map[string]any{"cups": map[string]any{"package": "1.0", "fwUrl": "file:///a"}})).To(Succeed())
	c := newRaw(hub)
	code, hdr, body := c.do(t, http.MethodGet, "/twins/DEV1", "2020-09-30", c.token(t), nil, nil)
	g.Expect(code).To(Equal(http.StatusOK))
	var before map[string]any
	g.Expect(json.Unmarshal(body, &before)).To(Succeed())

	code, _, body = c.do(t, http.MethodPatch, "/twins/DEV1", "2020-09-30", c.token(t),
		map[string]string{"If-Match": hdr.Get("ETag")},
		map[string]any{
			"tags":       map[string]any{"region": nil, "site": map[string]any{"rack": nil, "row": "b"}},
			"properties": map[string]any{"desired": map[string]any{"cups": map[string]any{"fwUrl": nil, "package": "2.0"}}},
		})
	g.Expect(code).To(Equal(http.StatusOK), string(body))
	var after map[string]any
	g.Expect(json.Unmarshal(body, &after)).To(Succeed())
	g.Expect(after["tags"]).To(Equal(map[string]any{"site": map[string]any{"city": "Oslo", "row": "b"}}))
	desired := after["properties"].(map[string]any)["desired"].(map[string]any)
	g.Expect(desired["cups"]).To(Equal(map[string]any{"package": "2.0"}))
	g.Expect(desired["$version"]).To(BeNumerically("==", before["properties"].(map[string]any)["desired"].(map[string]any)["$version"].(float64)+1))
	g.Expect(after["version"]).To(BeNumerically("==", before["version"].(float64)+1))
	g.Expect(after["etag"]).NotTo(Equal(before["etag"]))

	// The old ETag is now stale.
	code, _, _ = c.do(t, http.MethodPatch, "/twins/DEV1", "2020-09-30", c.token(t),
		map[string]string{"If-Match": hdr.Get("ETag")}, map[string]any{"tags": map[string]any{"x": "y"}})
	g.Expect(code).To(Equal(http.StatusPreconditionFailed))

	// Reported properties are the device's: the service may not write them.
	code, _, _ = c.do(t, http.MethodPatch, "/twins/DEV1", "2020-09-30", c.token(t), nil,
		map[string]any{"properties": map[string]any{"reported": map[string]any{"x": 1}}})
	g.Expect(code).To(Equal(http.StatusBadRequest))

	// Keys IoT Hub refuses.
	code, _, _ = c.do(t, http.MethodPatch, "/twins/DEV1", "2020-09-30", c.token(t), nil,
		map[string]any{"tags": map[string]any{"a.b": 1}})
	g.Expect(code).To(Equal(http.StatusBadRequest))
}

func TestConcurrentPatchesSameETagOneWins(t *testing.T) {
	hub := startHub(t)
	g := NewWithT(t)
	g.Expect(hub.Seed("DEV1", nil, nil)).To(Succeed())
	c := newRaw(hub)
	_, hdr, _ := c.do(t, http.MethodGet, "/twins/DEV1", "2020-09-30", c.token(t), nil, nil)
	etag := hdr.Get("ETag")
	tok := c.token(t)

	const writers = 16
	codes := make([]int, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, _ = c.do(t, http.MethodPatch, "/twins/DEV1", "2020-09-30", tok,
				map[string]string{"If-Match": etag}, map[string]any{"tags": map[string]any{"writer": float64(i)}})
		}()
	}
	wg.Wait()
	won := 0
	for _, code := range codes {
		if code == http.StatusOK {
			won++
		} else {
			g.Expect(code).To(Equal(http.StatusPreconditionFailed))
		}
	}
	g.Expect(won).To(Equal(1))
	doc, _ := hub.TwinDocument("DEV1")
	g.Expect(doc["version"]).To(BeNumerically("==", 2))
}

func TestQueryPagingAndStrictness(t *testing.T) {
	hub := startHub(t)
	g := NewWithT(t)
	for i := range 250 {
		region := "eu"
		if i%2 == 1 {
			region = "us"
		}
		g.Expect(hub.Seed(devID(i), map[string]any{"region": region}, nil)).To(Succeed())
	}
	c := newRaw(hub)
	q := map[string]any{"query": "SELECT * FROM devices WHERE tags.region = 'eu'"}
	var ids []string
	token := ""
	pages := 0
	for {
		h := map[string]string{"x-ms-max-item-count": "40"}
		if token != "" {
			h["x-ms-continuation"] = token
		}
		code, hdr, body := c.do(t, http.MethodPost, "/devices/query", "2020-09-30", c.token(t), h, q)
		g.Expect(code).To(Equal(http.StatusOK), string(body))
		var page []map[string]any
		g.Expect(json.Unmarshal(body, &page)).To(Succeed())
		g.Expect(len(page)).To(BeNumerically("<=", 40))
		for _, d := range page {
			ids = append(ids, d["deviceId"].(string))
		}
		pages++
		token = hdr.Get("x-ms-continuation")
		if token == "" {
			break
		}
	}
	g.Expect(ids).To(HaveLen(125))
	g.Expect(pages).To(Equal(4))
	for i := 1; i < len(ids); i++ {
		g.Expect(ids[i-1] < ids[i]).To(BeTrue(), "stable order")
	}

	for _, tc := range []struct {
		name string
		hdr  map[string]string
		body any
	}{
		{"page size too large", map[string]string{"x-ms-max-item-count": "5000"}, q},
		{"foreign continuation", map[string]string{"x-ms-continuation": "bm90LWEtdG9rZW4"}, q},
		{"syntax error", nil, map[string]any{"query": "SELECT * FROM devices WHERE tags.region = 'eu"}},
		{"not a SELECT *", nil, map[string]any{"query": "SELECT deviceId FROM devices"}},
		{"no query", nil, map[string]any{}},
	} {
		code, _, _ := c.do(t, http.MethodPost, "/devices/query", "2020-09-30", c.token(t), tc.hdr, tc.body)
		g.Expect(code).To(Equal(http.StatusBadRequest), tc.name)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	opts := Options{StateFile: filepath.Join(dir, "hub.json"), CertDir: dir}
	hub, err := New(opts)
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Serve(ctx) }()
	g.Expect(hub.Seed("DEV1", map[string]any{"region": "eu"}, map[string]any{"cups": map[string]any{"package": "1.0"}})).To(Succeed())
	before, _ := hub.TwinDocument("DEV1")
	cs := hub.ConnectionString()
	cancel()
	g.Expect(<-done).To(Succeed())

	hub2, err := New(opts)
	g.Expect(err).NotTo(HaveOccurred())
	defer hub2.ln.Close()
	after, ok := hub2.TwinDocument("DEV1")
	g.Expect(ok).To(BeTrue())
	g.Expect(after["etag"]).To(Equal(before["etag"]))
	g.Expect(after["tags"]).To(Equal(before["tags"]))
	g.Expect(after["properties"].(map[string]any)["desired"].(map[string]any)["cups"]).To(Equal(map[string]any{"package": "1.0"}))
	// Same policy key and CA: clients configured before the restart still work.
	g.Expect(strings.SplitN(hub2.ConnectionString(), ";", 2)[1]).To(Equal(strings.SplitN(cs, ";", 2)[1]))
	g.Expect(hub2.CAFile()).To(Equal(hub.CAFile()))
}

func devID(i int) string {
	const hex = "0123456789ABCDEF"
	b := []byte("0011220000000000")
	for j := 15; j >= 6 && i > 0; j-- {
		b[j] = hex[i%16]
		i /= 16
	}
	return string(b)
}
