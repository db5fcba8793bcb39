package cups

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// tlsCheckPeriod is how often the TLS files are checked for a change:
// cert-manager and kubelet rotate mounted Secrets in place, and a CUPS
// server must pick the new certificate or CA up without a restart.
const tlsCheckPeriod = 10 * time.Second

// tlsReloader serves the configuration built from the TLS files, rebuilt
// when one of them changes (size or modification time).
type tlsReloader struct {
	opts Options
	log  *logr.Logger

	mu      sync.Mutex
	cfg     *tls.Config
	stamp   string
	checked time.Time
}

func newTLSReloader(o Options, log *logr.Logger) (*tlsReloader, error) {
	r := &tlsReloader{opts: o, log: log}
	cfg, err := loadTLS(o)
	if err != nil {
		return nil, err
	}
	r.cfg, r.stamp, r.checked = cfg, r.fileStamp(), time.Now()
	return r, nil
}

// fileStamp summarises the files' sizes and modification times.
func (r *tlsReloader) fileStamp() string {
	stamp := ""
	for _, f := range []string{r.opts.CertFile, r.opts.KeyFile, r.opts.ClientCAFile} {
		if f == "" {
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			stamp += fmt.Sprintf("%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return stamp
}

// config returns the current configuration, reloading it when the files
// changed. A failed reload keeps the previous configuration and logs why.
func (r *tlsReloader) config() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.checked) < tlsCheckPeriod {
		return r.cfg
	}
	r.checked = now
	stamp := r.fileStamp()
	if stamp == r.stamp {
		return r.cfg
	}
	cfg, err := loadTLS(r.opts)
	if err != nil {
		// Files are often replaced one at a time: try again next period.
		r.log.Error(err, "reload TLS files; keeping the previous certificate")
		return r.cfg
	}
	r.cfg, r.stamp = cfg, stamp
	r.log.Info("reloaded TLS certificate and client CA")
	return cfg
}

// serverConfig is the tls.Config the listener uses: every handshake gets
// the current configuration.
func (r *tlsReloader) serverConfig() *tls.Config {
	base := r.config()
	return &tls.Config{
		MinVersion:   base.MinVersion,
		Certificates: base.Certificates, // for tools that inspect the listener's config
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.config(), nil
		},
	}
}
