package plant

import (
	"net"
	"time"

	"github.com/sprout-iot/sprout/messages/deviceclient"
)

// The protocol client lives in messages/deviceclient, shared with the edge's tests; these names
// remain for the callers that still use them (new code uses deviceclient).
type (
	// Conn is deviceclient.Conn.
	Conn = deviceclient.Conn
	// Hello is deviceclient.Hello.
	Hello = deviceclient.Hello
	// ErrClosed is deviceclient.ErrClosed.
	ErrClosed = deviceclient.ErrClosed
)

// Dial is deviceclient.Dial.
func Dial(addr, localIP string, timeout time.Duration) (*Conn, error) {
	return deviceclient.Dial(addr, localIP, timeout)
}

// NewConn is deviceclient.NewConn.
func NewConn(nc net.Conn) *Conn { return deviceclient.NewConn(nc) }
