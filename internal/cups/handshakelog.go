package cups

import (
	"crypto/x509"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Log rate of failed handshakes, per reason: a fleet locked out by a CA
// rotation retries every minute (CUPS_RESYNC_INTV), thousands of stations
// at once; the metric counts them all, the log shows a sample with the
// count of lines left out.
const (
	handshakeLogBurst = 5
	handshakeLogEvery = time.Second
	// maxNameLen bounds a certificate name in a log line: the peer chose it.
	maxNameLen = 256
)

// handshakeReporter counts and logs the handshakes the server refused.
type handshakeReporter struct {
	counts     map[string]prometheus.Counter
	limits     map[string]*rate.Limiter
	suppressed map[string]*atomic.Int64
}

func newHandshakeReporter(m *metrics) *handshakeReporter {
	r := &handshakeReporter{
		counts:     map[string]prometheus.Counter{},
		limits:     map[string]*rate.Limiter{},
		suppressed: map[string]*atomic.Int64{},
	}
	for _, reason := range handshakeReasons {
		r.counts[reason] = m.handshakes.WithLabelValues(reason)
		r.limits[reason] = rate.NewLimiter(rate.Every(handshakeLogEvery), handshakeLogBurst)
		r.suppressed[reason] = &atomic.Int64{}
	}
	return r
}

// handshakeFailed is called by the listener for each failed handshake: it
// counts it by reason and logs it (rate-limited) with the peer's address,
// the reason, and the certificate's subject, issuer and expiry when the
// peer presented one. Nothing secret is in a certificate or a TLS error.
func (s *Server) handshakeFailed(c net.Conn, err error) {
	reason, leaf := classifyHandshake(err)
	r := s.handshakes
	r.counts[reason].Inc()
	log := s.log
	if quietReasons[reason] {
		if log.V(1).Enabled() {
			log.V(1).Info("TLS handshake failed", "remote", c.RemoteAddr().String(), "reason", reason, "error", err.Error())
		}
		return
	}
	if !r.limits[reason].AllowN(s.now(), 1) {
		r.suppressed[reason].Add(1)
		return
	}
	kv := []any{"remote", c.RemoteAddr().String(), "reason", reason, "error", err.Error()}
	if leaf != nil {
		kv = append(kv, certificateKeys(leaf)...)
	}
	if n := r.suppressed[reason].Swap(0); n > 0 {
		kv = append(kv, "suppressed", n)
	}
	log.Info("TLS handshake failed", kv...)
}

// certificateKeys are the log keys that identify a peer's certificate.
func certificateKeys(leaf *x509.Certificate) []any {
	kv := []any{
		"subject", clip(leaf.Subject.String()),
		"issuer", clip(leaf.Issuer.String()),
		"notAfter", leaf.NotAfter.UTC().Format(time.RFC3339),
	}
	if eui, err := ParseEUI(leaf.Subject.CommonName); err == nil {
		kv = append(kv, "station", eui.DeviceID())
	}
	return kv
}

// clip bounds a string the peer chose.
func clip(s string) string {
	if len(s) > maxNameLen {
		return s[:maxNameLen] + "..."
	}
	return s
}
