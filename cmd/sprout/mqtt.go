package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sprout-iot/sprout/cluster/telemetry"

	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/edge/mqtt"
	"github.com/sprout-iot/sprout/edge/tlsconf"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
)

// linkConfig is how devices reach a node besides the plaintext TCP edge: MQTT, MQTTS, the TCP
// edge over TLS, and the certificate those serve.
type linkConfig struct {
	mqttAddr, mqttsAddr, edgeTLSAddr string
	tlsCert, tlsKey                  string
	mqtt                             mqtt.Options
}

func (c *linkConfig) register(fs *flagSet) {
	fs.str(&c.mqttAddr, "mqtt-addr", ":1883", "MQTT (3.1.1 and 5) listener for devices, plaintext; empty turns it off (do so in production)")
	fs.str(&c.mqttsAddr, "mqtts-addr", ":8883", "MQTT over TLS listener (needs --tls-cert and --tls-key); empty turns it off")
	fs.str(&c.edgeTLSAddr, "edge-tls-addr", ":7443", "device TCP edge over TLS (needs --tls-cert and --tls-key); empty turns it off")
	fs.str(&c.tlsCert, "tls-cert", "", "PEM certificate (chain) for the TLS listeners; reloaded when the file changes or on SIGHUP. Without it the TLS listeners stay off (sprout tls dev writes a development one)")
	fs.str(&c.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.int(&c.mqtt.MaxPayloadBytes, "mqtt-max-payload-bytes", mqtt.DefaultMaxPayloadBytes, "largest MQTT telemetry/event/result payload; larger ones are refused and counted")
	fs.int(&c.mqtt.MaxPacketBytes, "mqtt-max-packet-bytes", mqtt.DefaultMaxPacketBytes, "largest MQTT packet; a larger one closes the session")
	fs.dur(&c.mqtt.MaxKeepAlive, "mqtt-max-keepalive", mqtt.DefaultMaxKeepAlive, "keep-alive given to MQTT sessions asking for none or a longer one; silent 1.5x this, a pot goes offline")
	fs.int(&c.mqtt.MaxSessions, "mqtt-max-sessions", mqtt.DefaultMaxSessions, "most MQTT sessions this node holds")
	fs.int(&c.mqtt.MaxHeldCommands, "mqtt-max-held-commands", mqtt.DefaultMaxHeldCommand, "commands held for an MQTT session not yet subscribed to its commands topic before it is closed")
	fs.int(&c.mqtt.OTAChunkBytes, "mqtt-ota-chunk-bytes", mqtt.DefaultOTAChunkBytes, "firmware chunk_size offered over MQTT (at most 65536; each chunk counts as one per started 512 bytes against --ota-chunks-per-second)")
}

// links are the listeners startLinks opened, for the node's log and its tests.
type links struct {
	mqtt                             *mqtt.Server
	tls                              *tlsconf.Reloader
	MQTTAddr, MQTTSAddr, EdgeTLSAddr string
}

// startLinks opens the MQTT, MQTTS and TLS edge listeners that are configured.
func startLinks(ctx context.Context, c *linkConfig, cl *pcluster.Cluster, edge *device.Server, log *slog.Logger) (*links, error) {
	l := &links{}
	var tcfg *tls.Config
	if c.tlsCert != "" || c.tlsKey != "" {
		if c.tlsCert == "" || c.tlsKey == "" {
			return nil, fmt.Errorf("--tls-cert and --tls-key go together")
		}
		r, err := tlsconf.Load(c.tlsCert, c.tlsKey, log)
		if err != nil {
			return nil, err
		}
		go r.Watch(ctx, 0)
		l.tls, tcfg = r, r.Config()
	} else if c.mqttsAddr != "" || c.edgeTLSAddr != "" {
		log.Warn("no TLS certificate (SPROUT_TLS_CERT, SPROUT_TLS_KEY): the TLS listeners are off; devices' links travel in the clear")
	}
	listen := func(addr, what string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s on %s: %w", what, addr, err)
		}
		return ln, nil
	}
	if tcfg != nil && c.edgeTLSAddr != "" {
		ln, err := listen(c.edgeTLSAddr, "device edge over TLS")
		if err != nil {
			return l, err
		}
		l.EdgeTLSAddr = ln.Addr().String()
		go func() {
			if err := edge.ServeTLS(ln, tcfg); err != nil {
				log.Error("device TLS edge stopped", "err", err)
			}
		}()
	}
	if c.mqttAddr == "" && (tcfg == nil || c.mqttsAddr == "") {
		return l, nil
	}
	c.mqtt.Logger = log
	m, err := mqtt.New(cl, c.mqtt)
	if err != nil {
		return l, err
	}
	l.mqtt = m
	if c.mqttAddr != "" {
		ln, err := listen(c.mqttAddr, "MQTT")
		if err != nil {
			return l, err
		}
		l.MQTTAddr = ln.Addr().String()
		if err := m.Serve(ln); err != nil {
			return l, err
		}
	}
	if tcfg != nil && c.mqttsAddr != "" {
		ln, err := listen(c.mqttsAddr, "MQTTS")
		if err != nil {
			return l, err
		}
		l.MQTTSAddr = ln.Addr().String()
		if err := m.Serve(tls.NewListener(ln, tcfg)); err != nil {
			return l, err
		}
	}
	return l, nil
}

func (l *links) stop(ctx context.Context) {
	if l != nil && l.mqtt != nil {
		_ = l.mqtt.Shutdown(ctx)
	}
}

// simTransport makes the fleet's plants use transport ("tcp" or "mqtt"), over TLS when caFile
// is set.
func simTransport(o *fleet.Options, transport, caFile string) error {
	if transport != plant.TransportTCP && transport != plant.TransportMQTT {
		return fmt.Errorf("%w: --transport must be tcp or mqtt, got %q", errUsage, transport)
	}
	var tc *tls.Config
	if caFile != "" {
		var err error
		if tc, err = tlsconf.ClientConfig(caFile, ""); err != nil {
			return err
		}
	}
	prev := o.Plant
	o.Plant = func(i int, c *plant.Config) {
		c.Transport, c.TLS = transport, tc
		if prev != nil {
			prev(i, c)
		}
	}
	return nil
}

// registerMQTTMetrics exposes the MQTT edge's counters on /metrics (read when scraped).
func registerMQTTMetrics(t *telemetry.Telemetry, l *links) error {
	if l == nil || l.mqtt == nil {
		return nil
	}
	m := t.Meter()
	sessions, err1 := m.Int64ObservableGauge("sprout.mqtt.sessions", metric.WithUnit("{session}"),
		metric.WithDescription("Authenticated MQTT sessions on this node."))
	accepted, err2 := m.Int64ObservableCounter("sprout.mqtt.connections", metric.WithUnit("{connection}"),
		metric.WithDescription("MQTT sockets accepted by this node."))
	reports, err3 := m.Int64ObservableCounter("sprout.mqtt.reports", metric.WithUnit("{message}"),
		metric.WithDescription("Telemetry and events received over MQTT and stored."))
	commands, err4 := m.Int64ObservableCounter("sprout.mqtt.commands", metric.WithUnit("{message}"),
		metric.WithDescription("Commands published to devices over MQTT."))
	refused, err5 := m.Int64ObservableCounter("sprout.mqtt.refused", metric.WithUnit("{message}"),
		metric.WithDescription("MQTT connects and messages refused, by reason (auth, foreign_topic, too_large, bad_payload, unavailable, ota_range, ota_busy)."))
	chunks, err6 := m.Int64ObservableCounter("sprout.mqtt.ota_chunks", metric.WithUnit("{message}"),
		metric.WithDescription("Firmware chunks published to devices over MQTT."))
	held, err7 := m.Int64ObservableCounter("sprout.mqtt.ota_held", metric.WithUnit("{message}"),
		metric.WithDescription("Firmware offers and chunks held for a device not yet subscribed to their topic."))
	for _, err := range []error{err1, err2, err3, err4, err5, err6, err7} {
		if err != nil {
			return fmt.Errorf("mqtt metrics: %w", err)
		}
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := l.mqtt.Stats()
		o.ObserveInt64(sessions, st.Sessions)
		o.ObserveInt64(accepted, st.Accepted)
		o.ObserveInt64(reports, st.Reports)
		o.ObserveInt64(commands, st.Commands)
		o.ObserveInt64(chunks, st.Chunks)
		o.ObserveInt64(held, st.Held)
		for reason, v := range st.Refused {
			o.ObserveInt64(refused, v, metric.WithAttributes(attribute.String("reason", reason)))
		}
		return nil
	}, sessions, accepted, reports, commands, refused, chunks, held)
	if err != nil {
		return fmt.Errorf("mqtt metrics: %w", err)
	}
	return nil
}
