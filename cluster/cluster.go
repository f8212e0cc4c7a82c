// Package cluster starts a Sprout cluster member: an actor system, protoactor remote on a TCP port,
// and membership through either the local in-process provider (one node, tests) or Consul. It is
// how nodes find each other and start, nothing more: grains live in actors, edges in edge.
package cluster

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/consul"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/consul/api"
)

// Providers.
const (
	ProviderLocal  = "local"
	ProviderConsul = "consul"
)

// Options configures a member. Zero fields take the documented defaults.
type Options struct {
	// Name is the cluster name; members with different names never see each other (default "sprout").
	Name string
	// Provider is ProviderLocal (default) or ProviderConsul.
	Provider string
	// ConsulAddr is the Consul agent's HTTP address (default 127.0.0.1:8500).
	ConsulAddr string
	// ConsulTTL is how long Consul keeps a member that stopped refreshing (default 3 s).
	ConsulTTL time.Duration
	// Host and Port are where this member's remote endpoint listens (default 127.0.0.1, a free port).
	Host string
	Port int
	// AdvertisedHost is the host:port other members dial (default Host:Port).
	AdvertisedHost string
	// RequestTimeout bounds a grain request (default 5 s).
	RequestTimeout time.Duration
	// LocalAgent lets several in-process members share one local provider (tests). Nil: a fresh one.
	LocalAgent *test.InMemAgent
	// Kinds are the grain kinds this member hosts.
	Kinds []*pcluster.Kind
	// Logger receives the actor system's own warnings and errors (default slog.Default()).
	Logger *slog.Logger
}

// Member is a running cluster member.
type Member struct {
	System  *actor.ActorSystem
	Cluster *pcluster.Cluster
}

// Start starts a member and waits until it sees itself in the member list.
func Start(o Options) (*Member, error) {
	if o.Name == "" {
		o.Name = "sprout"
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ConsulAddr == "" {
		o.ConsulAddr = "127.0.0.1:8500"
	}
	if o.ConsulTTL == 0 {
		o.ConsulTTL = 3 * time.Second
	}
	logger := o.Logger
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(levelAtLeast{h: logger.Handler(), min: slog.LevelWarn})
	}))
	var provider pcluster.ClusterProvider
	switch o.Provider {
	case "", ProviderLocal:
		agent := o.LocalAgent
		if agent == nil {
			agent = test.NewInMemAgent()
		}
		provider = test.NewTestProvider(agent)
	case ProviderConsul:
		p, err := consul.NewWithConfig(&api.Config{Address: o.ConsulAddr},
			consul.WithTTL(o.ConsulTTL), consul.WithRefreshTTL(o.ConsulTTL/3))
		if err != nil {
			return nil, fmt.Errorf("consul provider at %s: %w", o.ConsulAddr, err)
		}
		provider = p
	default:
		return nil, fmt.Errorf("unknown cluster provider %q (want %q or %q)", o.Provider, ProviderLocal, ProviderConsul)
	}
	rc := remote.Configure(o.Host, o.Port)
	if o.AdvertisedHost != "" {
		rc = remote.Configure(o.Host, o.Port, remote.WithAdvertisedHost(o.AdvertisedHost))
	}
	cfg := pcluster.Configure(o.Name, provider, disthash.New(), rc,
		pcluster.WithKinds(o.Kinds...), pcluster.WithRequestTimeout(o.RequestTimeout))
	c := pcluster.New(sys, cfg)
	c.StartMember()
	deadline := time.Now().Add(30 * time.Second)
	for c.MemberList.Length() < 1 {
		if time.Now().After(deadline) {
			c.Shutdown(false)
			return nil, fmt.Errorf("cluster member did not join within 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &Member{System: sys, Cluster: c}, nil
}

// Stop leaves the cluster; graceful lets other members learn of it at once.
func (m *Member) Stop(graceful bool) {
	m.Cluster.Shutdown(graceful)
}

// Address is this member's remote address (host:port).
func (m *Member) Address() string { return m.System.Address() }
