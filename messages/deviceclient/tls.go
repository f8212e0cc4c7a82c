package deviceclient

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// DialTLS is Dial over TLS: it connects to an edge's TLS listener (SPROUT_EDGE_TLS_ADDR) and
// completes the TLS handshake within timeout, verifying the server against cfg (its RootCAs: the
// CA a pot has compiled in or read from a file).
func DialTLS(addr, localIP string, timeout time.Duration, cfg *tls.Config) (*Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	td := tls.Dialer{NetDialer: &d, Config: cfg}
	nc, err := td.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewConn(nc), nil
}
