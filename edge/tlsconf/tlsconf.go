// Package tlsconf serves the node's TLS certificate to the device edges (the TCP edge's TLS
// listener and MQTTS): it loads a PEM certificate and key, reloads them when the files change or
// on SIGHUP without dropping a connection (tls.Config.GetCertificate picks the current pair for
// each new handshake), and writes a development CA and node certificate (`sprout tls dev`).
// It is not a certificate authority for production: use your own PKI or an ACME client there.
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// DefaultPollInterval is how often Watch looks at the files' modification times.
const DefaultPollInterval = 5 * time.Second

// Reloader holds the current certificate of a cert/key file pair.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.RWMutex
	cert    *tls.Certificate
	stamp   string // the files' sizes and modification times when loaded
	reloads int
}

// Load reads certFile and keyFile (PEM). The certificate file may hold the chain after the leaf.
func Load(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reloader) fileStamp() string {
	var s string
	for _, f := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return s
}

// Reload reads the files again. A pair that does not load leaves the current certificate in
// place (a half-written file during a rotation does not take the edge down) and is reported.
func (r *Reloader) Reload() error {
	stamp := r.fileStamp()
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	if c.Leaf == nil && len(c.Certificate) > 0 {
		c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	r.mu.Lock()
	r.cert, r.stamp = &c, stamp
	r.reloads++
	r.mu.Unlock()
	if c.Leaf != nil {
		r.log.Info("TLS certificate loaded", "subject", c.Leaf.Subject.String(), "not_after", c.Leaf.NotAfter, "dns", c.Leaf.DNSNames)
	}
	return nil
}

// Certificate is the current certificate.
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert
}

// Config is a server tls.Config serving the current certificate, TLS 1.2 or newer.
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.Certificate(), nil
		},
	}
}

// Watch reloads the pair on SIGHUP and when the files' size or modification time changes (polled
// every interval; 0: DefaultPollInterval), until ctx ends.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := r.Reload(); err != nil {
				r.log.Error("TLS certificate reload on SIGHUP failed; keeping the current one", "err", err)
			}
		case <-t.C:
			r.mu.RLock()
			same := r.stamp == r.fileStamp()
			r.mu.RUnlock()
			if !same {
				if err := r.Reload(); err != nil {
					r.log.Error("TLS certificate changed but does not load; keeping the current one", "err", err)
				}
			}
		}
	}
}

// ClientConfig is a client tls.Config trusting only the CA certificates in caFile (PEM), for
// serverName (empty: taken from the address dialled).
func ClientConfig(caFile, serverName string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("CA file " + caFile + " holds no PEM certificate")
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
}
