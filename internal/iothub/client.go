// Package iothub is stationfleet's twin registry on Azure IoT Hub: an adapter
// on github.com/amenzhinsky/iothub/iotservice that reads twins, writes merge
// patches with the twin's ETag, runs device queries built from a structured
// selector, and registers stations for the demo. It limits its own request
// rate, retries throttling (429, 503, honouring Retry-After) and transient
// failures with exponential backoff and jitter, and exports Prometheus
// metrics.
//
// The same connection string switches between a real hub and the emulator in
// internal/iothub/hubsim; WithCAFile trusts the emulator's certificate, and
// WithEndpoint reaches an emulator that does not listen on its host name's
// port 443.
package iothub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/amenzhinsky/iothub/iotservice"
	"github.com/go-logr/logr"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// Default rates, from IoT Hub's documented throttles for one S1 unit ("IoT
// Hub quotas and throttling"): twin updates 50/s, twin reads 100/s, queries
// 20/min per unit, identity registry operations 100/min per unit. The
// defaults stay at 80% of each, leaving room for the hub's traffic shaping
// and for other writers of the same hub (CUPS replicas, the portal, scripts):
// a client that reaches the throttle gets 429s that slow every caller.
const (
	DefaultWriteRate    = 40.0      // twin writes per second (S1: 50/s)
	DefaultReadRate     = 80.0      // twin reads per second (S1: 100/s)
	DefaultQueryRate    = 16.0 / 60 // query pages per second (S1: 20/min/unit)
	DefaultIdentityRate = 80.0 / 60 // device create/delete per second (S1: 100/min/unit)
	DefaultPageSize     = 100       // items per query page: IoT Hub's own default
	maxPageSize         = 1000      // the largest x-ms-max-item-count the emulator (and we) allow
	defaultConflicts    = 5         // Update attempts when the ETag keeps going stale
	defaultAttempts     = 8         // attempts per request on throttling / transient failure
	defaultHTTPTimeout  = 30 * time.Second

	// DefaultMaxConnections bounds the connections the client keeps open
	// to the hub. Requests beyond it wait for a connection rather than
	// open one: every new connection costs a TLS handshake (about a
	// millisecond of CPU here, and network round trips to a real hub),
	// while a connection carries a request every few milliseconds. 64
	// connections carry the read rate of a hub of several S3 units at the
	// latency of a hub in another region; the rate limiters, not the
	// connections, set the pace.
	DefaultMaxConnections = 64
)

// ErrConflict is wrapped by Update when the twin kept changing under it for
// every allowed attempt.
var ErrConflict = errors.New("twin changed concurrently")

// Option configures a Client.
type Option func(*config) error

type config struct {
	tls          *tls.Config
	httpClient   *http.Client
	endpoint     string
	writeRate    float64
	readRate     float64
	queryRate    float64
	identityRate float64
	pageSize     int
	log          logr.Logger
	conflicts    int
	attempts     int
	initialWait  time.Duration
	maxWait      time.Duration
	timeout      time.Duration
	maxConns     int
}

// WithCAFile trusts the PEM certificates in path (besides the system roots),
// for the emulator's self-signed CA.
func WithCAFile(path string) Option {
	return func(c *config) error {
		pem, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("CA file %s holds no PEM certificate", path)
		}
		if c.tls == nil {
			c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.tls.RootCAs = pool
		return nil
	}
}

// WithTLSConfig sets the TLS configuration of the REST client.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *config) error { c.tls = cfg.Clone(); return nil }
}

// WithHTTPClient replaces the HTTP client entirely (its transport is wrapped
// for metrics, paging and Retry-After). WithCAFile and WithTLSConfig are then
// ignored.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error { c.httpClient = hc; return nil }
}

// WithEndpoint makes the client open every connection to addr (host:port)
// instead of the connection string's HostName on port 443. TLS still checks
// the server certificate against HostName and SAS tokens still sign it, so
// the effect is that of a hosts-file entry or a port forward. It exists for
// emulators (a hub named "localhost" listening on another port) and
// bypasses any HTTP proxy; a real IoT hub needs none. It cannot be combined
// with WithHTTPClient.
func WithEndpoint(addr string) Option {
	return func(c *config) error {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("endpoint %q: want host:port: %w", addr, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
			return fmt.Errorf("endpoint %q: want host:port with a port from 1 to 65535", addr)
		}
		c.endpoint = addr
		return nil
	}
}

// WithWriteRate limits twin writes to perSecond; 0 or less removes the
// limit. Default DefaultWriteRate.
func WithWriteRate(perSecond float64) Option {
	return func(c *config) error { c.writeRate = perSecond; return nil }
}

// WithReadRate limits twin reads to perSecond; 0 or less removes the limit.
// Default DefaultReadRate.
func WithReadRate(perSecond float64) Option {
	return func(c *config) error { c.readRate = perSecond; return nil }
}

// WithQueryRate limits query pages to perSecond; 0 or less removes the
// limit. Default DefaultQueryRate.
func WithQueryRate(perSecond float64) Option {
	return func(c *config) error { c.queryRate = perSecond; return nil }
}

// WithIdentityRate limits device identity operations (RegisterStation) to
// perSecond; 0 or less removes the limit. Default DefaultIdentityRate.
func WithIdentityRate(perSecond float64) Option {
	return func(c *config) error { c.identityRate = perSecond; return nil }
}

// WithoutRateLimits removes every client-side rate limit (for the emulator
// and benchmarks).
func WithoutRateLimits() Option {
	return func(c *config) error {
		c.writeRate, c.readRate, c.queryRate, c.identityRate = 0, 0, 0, 0
		return nil
	}
}

// WithPageSize sets the number of twins per query page (1..1000); default
// DefaultPageSize.
func WithPageSize(n int) Option {
	return func(c *config) error {
		if n < 1 || n > maxPageSize {
			return fmt.Errorf("page size %d outside 1..%d", n, maxPageSize)
		}
		c.pageSize = n
		return nil
	}
}

// WithLogger sets the logger used when the context carries none.
func WithLogger(l logr.Logger) Option {
	return func(c *config) error { c.log = l; return nil }
}

// WithRetry sets how requests are retried on throttling and transient
// failures: at most attempts tries, waits growing exponentially (with
// jitter) from initial to max. Retry-After, when sent, is waited at least.
func WithRetry(attempts int, initial, max time.Duration) Option {
	return func(c *config) error {
		if attempts < 1 || initial <= 0 || max < initial {
			return fmt.Errorf("invalid retry settings: attempts=%d initial=%s max=%s", attempts, initial, max)
		}
		c.attempts, c.initialWait, c.maxWait = attempts, initial, max
		return nil
	}
}

// WithConflictAttempts sets how many times Update reads, mutates and writes
// when the ETag keeps going stale; default 5.
func WithConflictAttempts(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("conflict attempts %d < 1", n)
		}
		c.conflicts = n
		return nil
	}
}

// WithMaxConnections bounds the connections to the hub at n (default
// DefaultMaxConnections): a request that finds them all busy waits for one
// instead of opening another, and up to n stay open while idle, so a burst
// of requests larger than n reuses the same n connections. With
// WithHTTPClient it bounds the requests in flight, and that client's
// transport decides about connections.
func WithMaxConnections(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("max connections %d: want at least 1", n)
		}
		c.maxConns = n
		return nil
	}
}

// WithTimeout bounds each HTTP request; default 30s.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error { c.timeout = d; return nil }
}

// Client is the twin registry on one IoT hub. It is safe for concurrent use.
type Client struct {
	svc      *iotservice.Client
	host     string
	cfg      config
	write    *rate.Limiter
	read     *rate.Limiter
	query    *rate.Limiter
	identity *rate.Limiter
	// slots bounds the requests in flight at the connection bound, so
	// that a request waits for a connection before the rate limiter
	// (see attempt).
	slots *semaphore.Weighted
	stats stats
}

// New creates a Client from a service connection string
// (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...). The string is a
// secret: it is never logged, and errors do not quote it.
func New(connectionString string, opts ...Option) (*Client, error) {
	cfg := config{
		writeRate:    DefaultWriteRate,
		readRate:     DefaultReadRate,
		queryRate:    DefaultQueryRate,
		identityRate: DefaultIdentityRate,
		pageSize:     DefaultPageSize,
		log:          logr.Discard(),
		conflicts:    defaultConflicts,
		attempts:     defaultAttempts,
		initialWait:  200 * time.Millisecond,
		maxWait:      30 * time.Second,
		timeout:      defaultHTTPTimeout,
		maxConns:     DefaultMaxConnections,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("iothub client: %w", err)
		}
	}
	sak, err := iotservice.ParseConnectionString(connectionString)
	if err != nil {
		// The parser's messages name missing keys only, never values.
		return nil, fmt.Errorf("iothub client: connection string: %w", err)
	}
	c := &Client{
		host:     sak.HostName,
		cfg:      cfg,
		write:    limiter(cfg.writeRate, time.Second),
		read:     limiter(cfg.readRate, time.Second),
		query:    limiter(cfg.queryRate, time.Minute),
		identity: limiter(cfg.identityRate, time.Minute),
		slots:    semaphore.NewWeighted(int64(cfg.maxConns)),
	}
	hc := cfg.httpClient
	if hc != nil && cfg.endpoint != "" {
		return nil, errors.New("iothub client: WithEndpoint cannot be combined with WithHTTPClient (dial the endpoint in that client's transport)")
	}
	if hc == nil {
		tcfg := cfg.tls
		if tcfg == nil {
			tcfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		hc = &http.Client{Transport: c.newTransport(tcfg), Timeout: cfg.timeout}
	} else {
		cp := *hc
		hc = &cp
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc.Transport = &transport{base: rt, client: c}
	svcOpts := []iotservice.ClientOption{
		iotservice.WithHTTPClient(hc),
		iotservice.WithLogger(quietLogger{log: cfg.log}),
	}
	if cfg.tls != nil {
		svcOpts = append(svcOpts, iotservice.WithTLSConfig(cfg.tls))
	}
	svc, err := iotservice.New(sak, svcOpts...)
	if err != nil {
		return nil, fmt.Errorf("iothub client: %w", err)
	}
	c.svc = svc
	registerMetrics()
	return c, nil
}

// newTransport is the client's own HTTP transport: HTTP/1.1 as IoT Hub's
// REST API documents it, at most cfg.maxConns connections, all of them kept
// when idle, and a count of every connection opened (each a TLS handshake).
func (c *Client) newTransport(tcfg *tls.Config) *http.Transport {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tcfg
	base.ForceAttemptHTTP2 = false
	base.MaxConnsPerHost = c.cfg.maxConns
	base.MaxIdleConnsPerHost = c.cfg.maxConns
	base.MaxIdleConns = c.cfg.maxConns
	dial := base.DialContext
	if c.cfg.endpoint != "" {
		base.Proxy = nil
		dial = dialTo(c.cfg.endpoint)
	}
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err == nil {
			c.stats.conns.Add(1)
			metricConnections.Inc()
		}
		return conn, err
	}
	return base
}

// dialTo returns a DialContext that connects to addr whatever address it is
// asked for (WithEndpoint).
func dialTo(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second} // http.DefaultTransport's
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}

// limiter returns a token bucket that never lets more than perSecond ×
// window requests through in any window of that length: IoT Hub meters twin
// reads and writes per second, queries and identity operations per minute.
// A bucket whose burst is a whole window's worth would allow up to twice the
// rate in one window after a lull, so the burst is a tenth of the window's
// allowance (at least 1) and the steady rate is what remains (an allowance
// under 2 per window can reach 1.5 times). It returns nil (no limit) when
// perSecond <= 0.
func limiter(perSecond float64, window time.Duration) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	allowance := perSecond * window.Seconds()
	burst := int(allowance / 10)
	if burst < 1 {
		burst = 1
	}
	steady := (allowance - float64(burst)) / window.Seconds()
	if steady <= 0 {
		steady = perSecond / 2 // an allowance of one request per window
	}
	return rate.NewLimiter(rate.Limit(steady), burst)
}

// HostName is the hub's host name.
func (c *Client) HostName() string { return c.host }

// Close releases the client's connections.
func (c *Client) Close() error { return c.svc.Close() }

// Stats counts what this client asked of IoT Hub since it was created.
type Stats struct {
	// Reads is successful twin reads (Get, and the read inside Update).
	Reads int64
	// Writes is successful twin writes.
	Writes int64
	// QueryPages is successful query pages.
	QueryPages int64
	// Throttled is responses with 429 or 503.
	Throttled int64
	// Retries is requests repeated after a throttle or transient failure.
	Retries int64
	// Conflicts is writes refused because the ETag was stale.
	Conflicts int64
	// Connections is connections opened to the hub, each a TLS handshake
	// (zero with WithHTTPClient, whose transport the client does not own).
	Connections int64
}

type stats struct {
	reads, writes, pages, throttled, retries, conflicts, conns atomic.Int64
}

// Stats returns this client's counters (the manager and the CUPS server use
// them to report IoT Hub load, e.g. reads per second).
func (c *Client) Stats() Stats {
	return Stats{
		Reads:       c.stats.reads.Load(),
		Writes:      c.stats.writes.Load(),
		QueryPages:  c.stats.pages.Load(),
		Throttled:   c.stats.throttled.Load(),
		Retries:     c.stats.retries.Load(),
		Conflicts:   c.stats.conflicts.Load(),
		Connections: c.stats.conns.Load(),
	}
}

func (c *Client) logger(ctx context.Context) logr.Logger {
	if l, err := logr.FromContext(ctx); err == nil {
		return l
	}
	return c.cfg.log
}

// Get reads the twin of deviceID. A missing device gives an error wrapping
// twin.ErrNotFound.
func (c *Client) Get(ctx context.Context, deviceID string) (*twin.Twin, error) {
	if deviceID == "" {
		return nil, errors.New("get twin: empty device id")
	}
	var raw *iotservice.Twin
	err := c.do(ctx, opGetTwin, c.read, func(ctx context.Context) error {
		var err error
		raw, err = c.svc.GetDeviceTwin(ctx, deviceID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get twin %q: %w", deviceID, notFound(err))
	}
	c.stats.reads.Add(1)
	t, err := decodeTwin(raw)
	if err != nil {
		return nil, fmt.Errorf("get twin %q: %w", deviceID, err)
	}
	return t, nil
}

// Update reads the twin, calls mutate with it, and writes the patch mutate
// returns as a merge patch of tags and desired properties, conditional on the
// ETag it read (If-Match). When IoT Hub answers 412 (someone wrote in
// between) it reads the twin again and calls mutate again with the fresh
// data, up to the configured number of attempts; it never writes blind. A
// nil or empty patch writes nothing and returns the twin as read. It returns
// the twin as written.
func (c *Client) Update(ctx context.Context, deviceID string, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error) {
	return c.update(ctx, deviceID, nil, mutate)
}

// UpdateKnown is Update on a twin the caller already holds with its ETag
// (a query page's): mutate is called with cur and its patch written with
// cur's ETag, without reading the twin first. When the twin changed since
// (412), it reads the twin again and goes on as Update does, so mutate
// decides on the fresh twin; a cur without an ETag is read first.
func (c *Client) UpdateKnown(ctx context.Context, cur *twin.Twin, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error) {
	if cur == nil {
		return nil, errors.New("update twin: no twin given")
	}
	if cur.ETag == "" {
		return c.update(ctx, cur.DeviceID, nil, mutate)
	}
	return c.update(ctx, cur.DeviceID, cur, mutate)
}

// update is Update starting from cur when it is not nil.
func (c *Client) update(ctx context.Context, deviceID string, cur *twin.Twin, mutate func(*twin.Twin) (*twin.Patch, error)) (*twin.Twin, error) {
	log := c.logger(ctx).WithValues("deviceId", deviceID)
	for attempt := 1; ; attempt++ {
		if cur == nil {
			var err error
			if cur, err = c.Get(ctx, deviceID); err != nil {
				return nil, fmt.Errorf("update twin %q: %w", deviceID, err)
			}
		}
		p, err := mutate(cur)
		if err != nil {
			return nil, fmt.Errorf("update twin %q: %w", deviceID, err)
		}
		if p.IsEmpty() {
			return cur, nil
		}
		written, err := c.patch(ctx, deviceID, cur.ETag, p)
		if err == nil {
			return written, nil
		}
		if !isStatus(err, http.StatusPreconditionFailed) {
			return nil, fmt.Errorf("update twin %q: %w", deviceID, err)
		}
		c.stats.conflicts.Add(1)
		metricConflicts.Inc()
		if attempt >= c.cfg.conflicts {
			return nil, fmt.Errorf("update twin %q: ETag stale after %d attempts: %w", deviceID, attempt, ErrConflict)
		}
		log.V(1).Info("twin changed concurrently, reading it again", "attempt", attempt)
		cur = nil
	}
}

// patch writes p conditionally on etag. It refuses an empty ETag: iotservice
// would send "If-Match: *", an unconditional write that could overwrite a
// concurrent writer's change.
func (c *Client) patch(ctx context.Context, deviceID, etag string, p *twin.Patch) (*twin.Twin, error) {
	if etag == "" {
		return nil, fmt.Errorf("patch twin %q: no ETag to write with; refusing an unconditional write", deviceID)
	}
	req := &iotservice.Twin{DeviceID: deviceID, ETag: etag, Tags: p.Tags}
	if len(p.Desired) > 0 {
		req.Properties = &iotservice.Properties{Desired: p.Desired}
	}
	var raw *iotservice.Twin
	err := c.do(ctx, opPatchTwin, c.write, func(ctx context.Context) error {
		var err error
		raw, err = c.svc.UpdateDeviceTwin(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("patch twin %q: %w", deviceID, notFound(err))
	}
	c.stats.writes.Add(1)
	t, err := decodeTwin(raw)
	if err != nil {
		return nil, fmt.Errorf("patch twin %q: %w", deviceID, err)
	}
	return t, nil
}

// Query calls fn with each page of twins matching sel, in the hub's order.
// The selector becomes one or more IoT Hub queries (a long device id list is
// split so each query stays within the hub's query size); each is paged with
// the configured page size through continuation tokens. It stops at fn's
// first error and returns it unwrapped.
func (c *Client) Query(ctx context.Context, sel twin.Selector, fn func(page []*twin.Twin) error) error {
	queries, err := BuildQueries(sel)
	if err != nil {
		return fmt.Errorf("query twins: %w", err)
	}
	for _, q := range queries {
		token := ""
		for {
			var page []*twin.Twin
			var next string
			err := c.do(ctx, opQuery, c.query, func(ctx context.Context) error {
				ci := infoFrom(ctx)
				ci.query, ci.pageSize, ci.continuation = true, c.cfg.pageSize, token
				page = page[:0]
				err := c.svc.QueryDevices(ctx, q, func(v map[string]interface{}) error {
					t, err := decodeQueryItem(v)
					if err != nil {
						return err
					}
					page = append(page, t)
					return nil
				})
				next = ci.next
				return err
			})
			if err != nil {
				return fmt.Errorf("query twins: %w", err)
			}
			c.stats.pages.Add(1)
			if len(page) > 0 {
				if err := fn(page); err != nil {
					return err
				}
			}
			if next == "" {
				break
			}
			token = next
		}
	}
	return nil
}

// RegisterStation creates the device identity deviceID (SAS keys generated
// by the hub) unless it exists, then merges tags and desired into its twin
// with the twin's ETag. It is for the demo and tests: production stations
// are provisioned by the operator's own tooling.
func (c *Client) RegisterStation(ctx context.Context, deviceID string, tags, desired map[string]any) (*twin.Twin, error) {
	if deviceID == "" {
		return nil, errors.New("register station: empty device id")
	}
	err := c.do(ctx, opCreateDevice, c.identity, func(ctx context.Context) error {
		_, err := c.svc.CreateDevice(ctx, &iotservice.Device{
			DeviceID:       deviceID,
			Status:         iotservice.Enabled,
			Authentication: &iotservice.Authentication{Type: iotservice.AuthSAS},
		})
		return err
	})
	if err != nil && !isStatus(err, http.StatusConflict) {
		return nil, fmt.Errorf("register station %q: %w", deviceID, err)
	}
	if len(tags) == 0 && len(desired) == 0 {
		return c.Get(ctx, deviceID)
	}
	t, err := c.Update(ctx, deviceID, func(*twin.Twin) (*twin.Patch, error) {
		return &twin.Patch{Tags: tags, Desired: desired}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("register station %q: %w", deviceID, err)
	}
	return t, nil
}

// isStatus reports whether err carries an IoT Hub response with this status.
func isStatus(err error, code int) bool {
	var re *iotservice.RequestError
	return errors.As(err, &re) && re.Code == code
}

// notFound adds twin.ErrNotFound to a 404.
func notFound(err error) error {
	if isStatus(err, http.StatusNotFound) {
		return fmt.Errorf("%w: %w", twin.ErrNotFound, err)
	}
	return err
}

// decodeTwin turns the client's twin into stationfleet's.
func decodeTwin(raw *iotservice.Twin) (*twin.Twin, error) {
	var desired map[string]any
	if raw.Properties != nil {
		desired = raw.Properties.Desired
	}
	return decode(raw.DeviceID, raw.ETag, raw.Tags, desired)
}

// decodeQueryItem turns one query result (a twin as generic JSON) into
// stationfleet's twin.
func decodeQueryItem(v map[string]interface{}) (*twin.Twin, error) {
	id, _ := v["deviceId"].(string)
	etag, _ := v["etag"].(string)
	if id == "" {
		return nil, errors.New("query result without deviceId")
	}
	tags, _ := v["tags"].(map[string]any)
	props, _ := v["properties"].(map[string]any)
	desired, _ := props["desired"].(map[string]any)
	return decode(id, etag, tags, desired)
}

func decode(id, etag string, tags, desired map[string]any) (*twin.Twin, error) {
	if tags == nil {
		tags = map[string]any{}
	}
	if _, ok := desired["$metadata"]; ok {
		d := make(map[string]any, len(desired))
		for k, v := range desired {
			if !strings.HasPrefix(k, "$") {
				d[k] = v
			}
		}
		desired = d
	}
	return twin.Decode(id, etag, tags, desired)
}

// quietLogger routes iotservice's log to logr, dropping its debug level,
// which dumps whole requests including the Authorization header.
type quietLogger struct{ log logr.Logger }

func (q quietLogger) Errorf(format string, v ...interface{}) {
	q.log.Error(fmt.Errorf(format, v...), "iotservice")
}
func (q quietLogger) Warnf(format string, v ...interface{}) {
	q.log.Info("iotservice warning", "message", fmt.Sprintf(format, v...))
}
func (q quietLogger) Infof(format string, v ...interface{}) {
	q.log.V(1).Info("iotservice", "message", fmt.Sprintf(format, v...))
}
func (q quietLogger) Debugf(string, ...interface{}) {}
