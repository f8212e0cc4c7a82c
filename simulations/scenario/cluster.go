package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/cluster/consultest"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/store/pgtest"
)

// localCluster is what a cluster scenario runs against: a Consul dev agent for membership, a
// Postgres server with one database as the shared store, and N `sprout serve` nodes.
type localCluster struct {
	agent *consultest.Agent
	pg    *pgtest.Server
	nodes []*node
}

// startCluster starts the agent, the database and n nodes (each in dir/nodeK with env plus the
// cluster settings) and waits until every node sees all n members. Missing Consul or Postgres
// binaries are reported as ErrNeedsCluster.
func startCluster(ctx context.Context, bin, dir string, n int, env map[string]string, logf func(string, ...any)) (*localCluster, error) {
	if _, err := consultest.Binary(); err != nil {
		return nil, fmt.Errorf("%w: no Consul binary (set %s): %v", ErrNeedsCluster, consultest.BinEnv, err)
	}
	if _, err := pgtest.FindBinaries(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNeedsCluster, err)
	}
	c := &localCluster{}
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()
	logf("starting a Consul agent and a Postgres server...")
	var wg sync.WaitGroup
	var cerr, perr error
	wg.Add(2)
	go func() { defer wg.Done(); c.agent, cerr = consultest.NewAgent(consultest.Config{LogLevel: "warn"}) }()
	go func() { defer wg.Done(); c.pg, perr = pgtest.NewServer(pgtest.Config{}) }()
	wg.Wait()
	if err := errors.Join(cerr, perr); err != nil {
		return nil, err
	}
	dsn, err := c.pg.CreateDatabase(ctx, "sprout_scenario")
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		logf("starting node %d of %d...", i+1, n)
		ndir := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		if err := os.MkdirAll(ndir, 0o755); err != nil {
			return nil, err
		}
		e := map[string]string{"SPROUT_CLUSTER": "consul", "SPROUT_CONSUL_ADDR": c.agent.Addr(), "SPROUT_DB": dsn}
		for k, v := range env {
			e[k] = v
		}
		nd, err := startNode(ctx, bin, ndir, e)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
		c.nodes = append(c.nodes, nd)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, nd := range c.nodes {
		for {
			var m struct {
				Members []string `json:"members"`
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := nd.api(cctx, http.MethodGet, "/api/v1/cluster", nil, &m)
			cancel()
			if err == nil && len(m.Members) == n {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("node %s sees %d cluster members after 30s, want %d (%v); its log:\n%s", nd.http, len(m.Members), n, err, nd.tail())
			}
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return nil, ctx.Err()
			}
		}
	}
	ok = true
	return c, nil
}

// close stops the nodes (in parallel), then the agent and the database server.
func (c *localCluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop() }()
	}
	wg.Wait()
	if c.agent != nil {
		_ = c.agent.Close()
	}
	if c.pg != nil {
		_ = c.pg.Close()
	}
}

// waitOnline polls GET /api/v1/devices/{id} on n for every device, 32 at a time, until all say
// online; it returns how long that took, or an error naming how many are still offline when ctx
// ends.
func waitOnline(ctx context.Context, n *node, creds []fleet.Credential) (time.Duration, error) {
	start := time.Now()
	pending := make([]string, 0, len(creds))
	for _, c := range creds {
		pending = append(pending, c.ID)
	}
	for len(pending) > 0 {
		online := make([]bool, len(pending))
		_ = parallel(ctx, len(pending), 32, func(i int) error {
			var st struct {
				Online bool `json:"online"`
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if n.api(cctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(pending[i]), nil, &st) == nil {
				online[i] = st.Online
			}
			return nil
		})
		var still []string
		for i, id := range pending {
			if !online[i] {
				still = append(still, id)
			}
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return time.Since(start), fmt.Errorf("%d devices still offline (e.g. %s)", len(pending), pending[0])
		}
	}
	return time.Since(start), nil
}
