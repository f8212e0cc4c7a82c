package plant

import (
	"net"
	"time"

	"github.com/sprout-iot/sprout/messages/deviceclient"
)

// The protocol client moved to messages/deviceclient, shared with the edge's tests; these names
// remain for the callers that still use them.
type (
	// Conn is deviceclient.Conn.
	//
	// Deprecated: use deviceclient.Conn.
	Conn = deviceclient.Conn
	// Hello is deviceclient.Hello.
	//
	// Deprecated: use deviceclient.Hello.
	Hello = deviceclient.Hello
	// ErrClosed is deviceclient.ErrClosed.
	//
	// Deprecated: use deviceclient.ErrClosed.
	ErrClosed = deviceclient.ErrClosed
)

// Dial is deviceclient.Dial.
//
// Deprecated: use deviceclient.Dial.
func Dial(addr, localIP string, timeout time.Duration) (*Conn, error) {
	return deviceclient.Dial(addr, localIP, timeout)
}

// NewConn is deviceclient.NewConn.
//
// Deprecated: use deviceclient.NewConn.
func NewConn(nc net.Conn) *Conn { return deviceclient.NewConn(nc) }
