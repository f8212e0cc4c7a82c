package consultest

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/sprout-iot/sprout/actors/actortest"
)

func client(t *testing.T, a *Agent) *api.Client {
	t.Helper()
	c, err := a.Client()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func passing(c *api.Client, service string) ([]*api.ServiceEntry, error) {
	entries, _, err := c.Health().Service(service, "", true, nil)
	return entries, err
}

func TestServiceWithTTLCheckBecomesHealthy(t *testing.T) {
	start := time.Now()
	a := Start(t)
	t.Logf("agent %s (node %s) ready in %v", a.Addr(), a.Node(), time.Since(start))
	c := client(t, a)

	leader, err := c.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("leader = %q, %v", leader, err)
	}

	reg := &api.AgentServiceRegistration{
		ID:      "sprout-member-1",
		Name:    "sprout",
		Address: "127.0.0.1",
		Port:    12000,
		Check: &api.AgentServiceCheck{
			CheckID:                        "sprout-member-1-ttl",
			TTL:                            "5s",
			DeregisterCriticalServiceAfter: "1m",
		},
	}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	// A TTL check starts critical: the service is registered but not healthy yet.
	actortest.Eventually(t, 5*time.Second, "the service in the catalog", func() bool {
		all, _, err := c.Health().Service("sprout", "", false, nil)
		return err == nil && len(all) == 1
	})
	if p, err := passing(c, "sprout"); err != nil || len(p) != 0 {
		t.Fatalf("before the first TTL pass: %d passing instances (%v), want 0", len(p), err)
	}

	if err := c.Agent().UpdateTTL("sprout-member-1-ttl", "alive", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 5*time.Second, "the service to be healthy", func() bool {
		p, err := passing(c, "sprout")
		return err == nil && len(p) == 1 && p[0].Service.ID == "sprout-member-1" && p[0].Service.Port == 12000
	})

	if err := c.Agent().UpdateTTL("sprout-member-1-ttl", "going", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 5*time.Second, "the service to be unhealthy", func() bool {
		p, err := passing(c, "sprout")
		return err == nil && len(p) == 0
	})

	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if a.Running() {
		t.Fatal("Running() after Stop")
	}
	if conn, err := net.DialTimeout("tcp", a.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after Stop", a.Addr())
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestRestart(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cfg        Config
		keepsState bool
	}{
		{"dev", Config{}, false},
		{"persistent", Config{Persistent: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			a := Start(t, tc.cfg)
			t.Logf("ready in %v", time.Since(start))
			addr := a.Addr()
			c := client(t, a)
			if _, err := c.KV().Put(&api.KVPair{Key: "sprout/k", Value: []byte("v")}, nil); err != nil {
				t.Fatal(err)
			}

			start = time.Now()
			if err := a.Restart(); err != nil {
				t.Fatal(err)
			}
			t.Logf("restarted in %v", time.Since(start))
			if a.Addr() != addr || !a.Running() {
				t.Fatalf("after Restart: Addr %s (was %s), Running %v", a.Addr(), addr, a.Running())
			}
			kv, _, err := c.KV().Get("sprout/k", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := kv != nil; got != tc.keepsState {
				t.Fatalf("after Restart the key is present = %v, want %v", got, tc.keepsState)
			}

			// Stopped, then restarted from stopped.
			if err := a.Kill(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Status().Leader(); err == nil {
				t.Fatal("API answers after Kill")
			}
			if err := a.Restart(); err != nil {
				t.Fatal(err)
			}
			if leader, err := c.Status().Leader(); err != nil || leader == "" {
				t.Fatalf("after Kill and Restart: leader %q, %v", leader, err)
			}
		})
	}
}

func TestAgentsAreIndependent(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() || a.Node() == b.Node() {
		t.Fatalf("agents share Addr %s/%s or node %s/%s", a.Addr(), b.Addr(), a.Node(), b.Node())
	}
	ca, cb := client(t, a), client(t, b)
	if _, err := ca.KV().Put(&api.KVPair{Key: "only-a", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	if kv, _, err := cb.KV().Get("only-a", nil); err != nil || kv != nil {
		t.Fatalf("agent b sees agent a's key: %v, %v", kv, err)
	}
}

func TestBinaryFromEnv(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinEnv, "/nonexistent/consul")
	if _, err := findBinary(); err == nil || !strings.Contains(err.Error(), BinEnv) {
		t.Fatalf("findBinary with a missing $%s: %v", BinEnv, err)
	}
	t.Setenv(BinEnv, bin)
	if got, err := findBinary(); err != nil || got != bin {
		t.Fatalf("findBinary with $%s=%s: %q, %v", BinEnv, bin, got, err)
	}
}
