package cups

import (
	"errors"
	"flag"
	"time"
)

// Defaults of Options.
const (
	// DefaultAddr is the starter kit's CUPS port.
	DefaultAddr = ":5002"
	// DefaultReadHeaderTimeout bounds the request line and headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout bounds reading a whole request, headers and a
	// body of at most DefaultBodyLimit bytes: 10 s allows 200 bytes/s, far
	// below any backhaul, while a slow-body sender holds a connection and a
	// handler for no longer than a slow-loris header sender does.
	DefaultReadTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds writing a whole response with firmware or
	// credentials, and how long a connection may go without its peer
	// acknowledging what was sent (writebound.go): generous, since a
	// station on a cellular backhaul may take minutes for a large update.
	DefaultWriteTimeout = 10 * time.Minute
	// DefaultIdleTimeout is how long a kept-alive connection may sit idle.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxHeaderBytes bounds the request headers: a station sends a
	// handful, plus its token.
	DefaultMaxHeaderBytes = 16 << 10
	// DefaultShutdownTimeout is how long Start waits for in-flight responses
	// after its context is cancelled before closing their connections.
	DefaultShutdownTimeout = 30 * time.Second
)

// Options configure the CUPS server. The zero value, after defaults, serves
// TLS on DefaultAddr and needs CertFile and KeyFile.
type Options struct {
	// Addr is the listen address.
	Addr string
	// CertFile and KeyFile are the server's PEM certificate chain and key.
	CertFile, KeyFile string
	// ClientCAFile is a PEM bundle of the CAs that sign station client
	// certificates. Without it, stations authenticate by token only.
	ClientCAFile string
	// RequireClientCertificate refuses, in the TLS handshake, a caller that
	// presents no client certificate (no bearer-token stations then). It
	// needs ClientCAFile.
	RequireClientCertificate bool
	// Insecure serves plain HTTP and lets unauthenticated callers through
	// (credentials are still never sent to them). For the embedded demo
	// only; the server says so loudly at start.
	Insecure bool
	// CacheTTL is how long a twin read serves later polls; 0 means
	// DefaultCacheTTL.
	CacheTTL time.Duration
	// BodyLimit is the largest request body accepted, in bytes; 0 means
	// DefaultBodyLimit.
	BodyLimit int64
	// ObservationRefresh is how old a station's recorded LastSeen may grow
	// before an otherwise unchanged poll rewrites it; 0 means
	// DefaultObservationRefresh.
	ObservationRefresh time.Duration
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout are the http.Server
	// timeouts; WriteTimeout bounds responses with firmware or credentials
	// and unacknowledged writes on every connection (writebound.go). 0
	// means the Default* value.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers; 0 means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ShutdownTimeout bounds graceful shutdown; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// BindFlags registers the options as --cups-* flags on fs, with the
// defaults as flag defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Addr, "cups-bind-address", DefaultAddr, "Address the CUPS server listens on.")
	fs.StringVar(&o.CertFile, "cups-tls-cert-file", "", "PEM certificate (chain) the CUPS server presents.")
	fs.StringVar(&o.KeyFile, "cups-tls-key-file", "", "PEM private key of --cups-tls-cert-file.")
	fs.StringVar(&o.ClientCAFile, "cups-client-ca-file", "", "PEM CA bundle that signs station client certificates; without it stations authenticate by bearer token only.")
	fs.BoolVar(&o.RequireClientCertificate, "cups-require-client-certificate", false, "Refuse, in the TLS handshake, stations that present no client certificate (then no station can use a bearer token); needs --cups-client-ca-file.")
	fs.BoolVar(&o.Insecure, "cups-insecure", false, "Serve plain HTTP without station authentication (embedded demo only; never in production).")
	fs.DurationVar(&o.CacheTTL, "cups-twin-cache-ttl", DefaultCacheTTL, "How long a twin read serves later polls of the same station.")
	fs.Int64Var(&o.BodyLimit, "cups-body-limit", DefaultBodyLimit, "Largest update-info request body accepted, in bytes.")
	fs.DurationVar(&o.ObservationRefresh, "cups-observation-refresh", DefaultObservationRefresh, "How often an unchanged station's last-seen time is rewritten.")
	fs.DurationVar(&o.ReadTimeout, "cups-read-timeout", DefaultReadTimeout, "Time allowed to read a whole request.")
	fs.DurationVar(&o.WriteTimeout, "cups-write-timeout", DefaultWriteTimeout, "Time allowed to write a whole response with firmware or credentials, and for a station to acknowledge what was sent to it.")
	fs.DurationVar(&o.IdleTimeout, "cups-idle-timeout", DefaultIdleTimeout, "How long an idle kept-alive connection stays open.")
}

// withDefaults fills zero fields with the defaults.
func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.BodyLimit <= 0 {
		o.BodyLimit = DefaultBodyLimit
	}
	if o.ObservationRefresh <= 0 {
		o.ObservationRefresh = DefaultObservationRefresh
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	return o
}

// validate checks that the options make a server.
func (o Options) validate() error {
	tlsSet := o.CertFile != "" || o.KeyFile != "" || o.ClientCAFile != ""
	switch {
	case o.Insecure && tlsSet:
		return errors.New("cups: insecure mode and TLS files are exclusive")
	case o.RequireClientCertificate && o.ClientCAFile == "":
		return errors.New("cups: requiring client certificates needs a client CA file")
	case !o.Insecure && (o.CertFile == "" || o.KeyFile == ""):
		return errors.New("cups: TLS needs a certificate and a key file (or insecure mode, for the embedded demo only)")
	}
	return nil
}
