package analysis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// Credentials are what a rollout's analysis Secret holds. They are only
// ever put into request headers and the TLS configuration, never into an
// error or a log line.
type Credentials struct {
	// BearerToken is sent as "Authorization: Bearer ...", when set.
	BearerToken string
	// Username and Password are sent as basic auth, when Username is set.
	Username, Password string
	// CA is PEM CA certificates to trust for https, when set (the system
	// roots otherwise).
	CA []byte
}

// Request is one measurement to take.
type Request struct {
	// Address is the Prometheus base URL.
	Address string
	// Credentials authenticate to it.
	Credentials Credentials
	// Timeout bounds the query (30s when zero).
	Timeout time.Duration
	// Query is the rendered PromQL query.
	Query string
	// Condition is the success condition (CEL).
	Condition string
	// Time is the evaluation time of the query.
	Time time.Time
}

// Outcome is the verdict of one measurement.
type Outcome struct {
	// Phase is Successful, Failed or Error.
	Phase fwv1.MeasurementPhase
	// Value is the result as text, for status.
	Value string
	// Message says why the measurement ended in an error.
	Message string
}

// Client takes measurements from Prometheus servers. The zero value is
// ready to use.
type Client struct {
	// Transport, when set, is the base transport (tests); a clone of
	// http.DefaultTransport otherwise.
	Transport *http.Transport
}

// Option configures a Client.
type Option func(*Client)

// WithTransport sets the base HTTP transport.
func WithTransport(t *http.Transport) Option { return func(c *Client) { c.Transport = t } }

// New returns a Client.
func New(opts ...Option) *Client {
	c := &Client{}
	for _, o := range opts {
		o(c)
	}
	return c
}

// defaultTimeout bounds a query when the request gives none (the API's
// default for prometheus.timeout).
const defaultTimeout = 30 * time.Second

// Measure runs the query and evaluates the condition. Every problem is an
// Error outcome with a message: a measurement never fails the caller.
func (c *Client) Measure(ctx context.Context, req Request) Outcome {
	cond, err := CompileCondition(req.Condition)
	if err != nil {
		return errorOutcome(err)
	}
	v, err := c.Query(ctx, req)
	if err != nil {
		return errorOutcome(err)
	}
	ok, err := cond.Eval(v)
	out := Outcome{Value: FormatValue(v)}
	switch {
	case err != nil:
		out.Phase, out.Message = fwv1.MeasurementError, truncate(err.Error(), 512)
	case ok:
		out.Phase = fwv1.MeasurementSuccessful
	default:
		out.Phase = fwv1.MeasurementFailed
	}
	return out
}

func errorOutcome(err error) Outcome {
	return Outcome{Phase: fwv1.MeasurementError, Message: truncate(err.Error(), 512)}
}

// Query sends req's query to /api/v1/query at req.Time (POST, as Prometheus
// accepts, so a long station regex fits).
func (c *Client) Query(ctx context.Context, req Request) (model.Value, error) {
	tr, err := c.transport(req.Credentials)
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	pc, err := api.NewClient(api.Config{Address: req.Address, RoundTripper: &authTransport{base: tr, creds: req.Credentials}})
	if err != nil {
		return nil, fmt.Errorf("prometheus address: %w", err)
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, _, _, err := promv1.NewAPI(pc).Query(ctx, req.Query, req.Time, promv1.WithTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("query prometheus at %s: %w", req.Address, queryError(err))
	}
	return v, nil
}

// queryError keeps Prometheus's own message of an API error.
func queryError(err error) error {
	var pe *promv1.Error
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %s", pe.Type, pe.Msg)
	}
	return err
}

// transport is the base transport with the credentials' CA.
func (c *Client) transport(creds Credentials) (*http.Transport, error) {
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport)
	}
	tr := base.Clone()
	if len(creds.CA) == 0 {
		return tr, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(creds.CA) {
		return nil, fmt.Errorf("the analysis Secret's %s holds no PEM certificate", fwv1.AnalysisSecretCA)
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	}
	tr.TLSClientConfig.RootCAs = pool
	return tr, nil
}

// authTransport adds the bearer token or basic auth to each request.
type authTransport struct {
	base  http.RoundTripper
	creds Credentials
}

func (a *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if a.creds.BearerToken == "" && a.creds.Username == "" {
		return a.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	switch {
	case a.creds.BearerToken != "":
		r.Header.Set("Authorization", "Bearer "+a.creds.BearerToken)
	default:
		r.SetBasicAuth(a.creds.Username, a.creds.Password)
	}
	return a.base.RoundTrip(r)
}
