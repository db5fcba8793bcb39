package iothub

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/amenzhinsky/iothub/iotservice"
	"github.com/cenkalti/backoff/v4"
	"golang.org/x/time/rate"
)

// Operation names, used as metric labels.
const (
	opGetTwin      = "getTwin"
	opPatchTwin    = "patchTwin"
	opQuery        = "query"
	opCreateDevice = "createDevice"
)

// callInfo travels in a request's context from the retry loop through
// iotservice to the transport, and back: iotservice's errors carry no
// response headers, and its query loop offers no page size and follows
// continuation tokens by itself, so the transport sets x-ms-max-item-count
// and x-ms-continuation, records Retry-After, and hands the next
// continuation token back instead of letting iotservice follow it (one
// QueryDevices call is then exactly one page, retried on its own).
type callInfo struct {
	op           string
	status       int           // last HTTP status seen, 0 when no response
	retryAfter   time.Duration // Retry-After of the last response
	query        bool
	pageSize     int
	continuation string // token to send
	next         string // token received
}

type callKey struct{}

func infoFrom(ctx context.Context) *callInfo {
	ci, _ := ctx.Value(callKey{}).(*callInfo)
	if ci == nil {
		return &callInfo{}
	}
	return ci
}

type transport struct {
	base   http.RoundTripper
	client *Client
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ci, _ := req.Context().Value(callKey{}).(*callInfo)
	if ci == nil {
		ci = &callInfo{op: "other"}
	}
	if ci.query {
		req = req.Clone(req.Context())
		req.Header.Set("x-ms-max-item-count", strconv.Itoa(ci.pageSize))
		if ci.continuation != "" {
			req.Header.Set("x-ms-continuation", ci.continuation)
		} else {
			req.Header.Del("x-ms-continuation")
		}
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	metricDuration.WithLabelValues(ci.op).Observe(time.Since(start).Seconds())
	if err != nil {
		ci.status = 0
		metricRequests.WithLabelValues(ci.op, "error").Inc()
		return nil, err
	}
	ci.status = resp.StatusCode
	ci.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	metricRequests.WithLabelValues(ci.op, strconv.Itoa(resp.StatusCode)).Inc()
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		metricThrottled.WithLabelValues(ci.op).Inc()
		t.client.stats.throttled.Add(1)
	}
	if ci.query {
		ci.next = resp.Header.Get("x-ms-continuation")
		resp.Header.Del("x-ms-continuation")
	}
	return resp, nil
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// attempt makes one request: it takes one of the client's connection slots
// (waiting while all are busy), then waits for the rate limiter, and holds
// the slot until the answer is read. Taking the slot first keeps the queue
// in front of the rate limiter: a backlog that builds while the hub or
// this process is slow drains at the configured rate, instead of bunching
// up behind busy connections and reaching the hub faster than the rate.
func (c *Client) attempt(ctx context.Context, ci *callInfo, lim *rate.Limiter, fn func(ctx context.Context) error) error {
	if err := c.slots.Acquire(ctx, 1); err != nil {
		return err
	}
	defer c.slots.Release(1)
	if lim != nil {
		if err := lim.Wait(ctx); err != nil {
			return err
		}
	}
	return fn(context.WithValue(ctx, callKey{}, ci))
}

// failure classes of one attempt.
type failure int

const (
	permanent failure = iota
	throttled         // 429, 503: wait at least Retry-After
	transient         // 500, 502, 504, dropped connection
)

func classify(ctx context.Context, err error, ci *callInfo) failure {
	if ctx.Err() != nil {
		return permanent
	}
	var re *iotservice.RequestError
	if errors.As(err, &re) {
		switch re.Code {
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			return throttled
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusRequestTimeout:
			return transient
		}
		return permanent // 400, 401, 403, 404, 409, 412, ...
	}
	var bre *iotservice.BadRequestError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	if errors.As(err, &bre) || errors.As(err, &se) || errors.As(err, &te) {
		return permanent
	}
	if ci.status == 0 || ci.status >= 500 {
		// No response, or the body broke off: the connection dropped.
		return transient
	}
	return permanent
}

// do runs one IoT Hub request with rate limiting and retries: throttling
// (429, 503) waits at least the Retry-After the hub sent, other transient
// failures (500, 502, 504, dropped connections) back off exponentially with
// jitter; permanent failures (400, 401, 403, 404, 409, 412) return at once.
func (c *Client) do(ctx context.Context, op string, lim *rate.Limiter, fn func(ctx context.Context) error) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = c.cfg.initialWait
	bo.MaxInterval = c.cfg.maxWait
	bo.RandomizationFactor = 0.5
	bo.Multiplier = 2
	bo.MaxElapsedTime = 0 // bounded by attempts and ctx instead
	bo.Reset()
	for attempt := 1; ; attempt++ {
		ci := &callInfo{op: op}
		err := c.attempt(ctx, ci, lim, fn)
		if err == nil {
			return nil
		}
		class := classify(ctx, err, ci)
		if class == permanent || attempt >= c.cfg.attempts {
			return err
		}
		wait := bo.NextBackOff()
		if class == throttled && ci.retryAfter > wait {
			wait = ci.retryAfter
		}
		c.stats.retries.Add(1)
		metricRetries.WithLabelValues(op).Inc()
		c.logger(ctx).V(1).Info("retrying IoT Hub request", "op", op, "status", ci.status, "attempt", attempt, "wait", wait.String())
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}
