//go:build !linux

package device

import (
	"net"
	"sync/atomic"
)

// Without epoll every connection reads on its own goroutine (readLoop).
type poller struct{ now atomic.Int64 }

func (s *Server) pollerFor(net.Conn) *poller { return nil }
func (c *conn) handOff(*poller)              {}
func (c *conn) resume()                      {}
func (p *poller) remove(*conn)               {}
func (p *poller) close()                     {}
