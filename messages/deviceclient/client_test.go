package deviceclient_test

import (
	"crypto/hmac"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// edge is a scripted server side: it runs script on each accepted connection.
func edge(t *testing.T, script func(c *deviceclient.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c := deviceclient.NewConn(nc)
				defer c.Close()
				script(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestHandshakeProvesTheSecretAndReturnsTheWelcome(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	addr := edge(t, func(c *deviceclient.Conn) {
		f, err := c.Recv(time.Second)
		if err != nil {
			return
		}
		h := f.GetHello()
		nonce := []byte("server-nonce-16b")
		_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Challenge{Challenge: &devicepb.Challenge{ServerNonce: nonce}}})
		if f, err = c.Recv(time.Second); err != nil {
			return
		}
		if !hmac.Equal(f.GetAuth().GetMac(), messages.MAC(secret, h.DeviceNonce, nonce, h.DeviceId)) {
			_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Close{Close: &devicepb.Close{Reason: devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED}}})
			return
		}
		_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Welcome{Welcome: &devicepb.Welcome{SessionId: "s-1", LastSeq: 7,
			ServerProof: messages.ServerProof(secret, h.DeviceNonce, nonce)}}})
		_, _ = c.Recv(time.Second)
	})
	c, err := deviceclient.Dial(addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Handshake(deviceclient.Hello{DeviceID: "pot-1", Secret: secret}, time.Second)
	if err != nil || w.SessionId != "s-1" || w.LastSeq != 7 || c.Welcome != w {
		t.Fatalf("want the Welcome, got %v %v", w, err)
	}

	bad, err := deviceclient.Dial(addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_, err = bad.Handshake(deviceclient.Hello{DeviceID: "pot-1", Secret: []byte("wrong")}, time.Second)
	var ce *deviceclient.ErrClosed
	if !errors.As(err, &ce) || ce.Reason != devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED {
		t.Fatalf("a wrong secret: want Close(AUTH_FAILED) as *ErrClosed, got %v", err)
	}
}

func TestResetEndsTheConnectionWithoutAClose(t *testing.T) {
	got := make(chan error, 1)
	addr := edge(t, func(c *deviceclient.Conn) {
		_, err := c.Recv(2 * time.Second)
		got <- err
	})
	c, err := deviceclient.Dial(addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server's read after a reset: want a connection error, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server's read did not end")
	}
}

// A server that does not know the secret cannot complete the handshake: whatever it puts in
// server_proof (nothing, a proof under another key, the device's own MAC sent back), the client
// answers Close(AUTH_FAILED) and returns ErrServerProof, and the Welcome's config is never used.
func TestHandshakeRefusesAServerWithoutTheSecret(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	for name, proof := range map[string]func(dn, sn []byte) []byte{
		"none":             func(dn, sn []byte) []byte { return nil },
		"another key":      func(dn, sn []byte) []byte { return messages.ServerProof([]byte("guess"), dn, sn) },
		"the device's MAC": func(dn, sn []byte) []byte { return messages.MAC(secret, dn, sn, "pot-1") },
		"nonces swapped":   func(dn, sn []byte) []byte { return messages.ServerProof(secret, sn, dn) },
	} {
		t.Run(name, func(t *testing.T) {
			closes := make(chan *devicepb.Close, 1)
			addr := edge(t, func(c *deviceclient.Conn) {
				f, err := c.Recv(time.Second)
				if err != nil {
					return
				}
				dn := f.GetHello().DeviceNonce
				sn := []byte("server-nonce-16b")
				_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Challenge{Challenge: &devicepb.Challenge{ServerNonce: sn}}})
				if _, err = c.Recv(time.Second); err != nil {
					return
				}
				_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Welcome{Welcome: &devicepb.Welcome{SessionId: "evil",
					Config: &devicepb.Config{MaxWaterMs: 3600000}, ServerProof: proof(dn, sn)}}})
				if f, err = c.Recv(time.Second); err == nil {
					closes <- f.GetClose()
				}
			})
			c, err := deviceclient.Dial(addr, "", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			w, err := c.Handshake(deviceclient.Hello{DeviceID: "pot-1", Secret: secret}, time.Second)
			if !errors.Is(err, deviceclient.ErrServerProof) || w != nil || c.Welcome != nil {
				t.Fatalf("want ErrServerProof and no Welcome, got %v %v", w, err)
			}
			select {
			case cl := <-closes:
				if cl.GetReason() != devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED {
					t.Fatalf("the client said %v, want Close(AUTH_FAILED)", cl)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the client sent no Close")
			}
		})
	}
}
