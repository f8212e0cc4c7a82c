// Command devcluster (`make cluster`) runs a local Sprout cluster for development: a Consul dev
// agent, a throwaway Postgres, and N `sprout serve` nodes on loopback ports, each with a device
// edge and HTTP. It prints the addresses and stops everything on Ctrl-C. For several hosts, see
// docs/cluster.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sprout-iot/sprout/cluster/consultest"
	"github.com/sprout-iot/sprout/store/pgtest"
)

func main() {
	nodes := flag.Int("nodes", 3, "how many nodes")
	basePort := flag.Int("base-port", 7101, "node i's device edge listens on base-port+i-1, its HTTP on 8100+i")
	token := flag.String("admin-token", "dev", "SPROUT_ADMIN_TOKEN of every node")
	flag.Parse()
	if err := run(*nodes, *basePort, *token); err != nil {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		os.Exit(1)
	}
}

func run(n, basePort int, token string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "sprout-devcluster")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "sprout")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/sprout").CombinedOutput(); err != nil {
		return fmt.Errorf("building sprout: %v\n%s", err, out)
	}
	fmt.Println("starting Consul (the first run builds it: a few minutes)...")
	agent, err := consultest.NewAgent(consultest.Config{})
	if err != nil {
		return err
	}
	defer agent.Close()
	fmt.Println("starting Postgres...")
	pg, err := pgtest.NewServer(pgtest.Config{Durable: true})
	if err != nil {
		return err
	}
	defer pg.Close()
	dsn, err := pg.CreateDatabase(ctx, "sprout")
	if err != nil {
		return err
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(os.Interrupt)
		}
		for _, p := range procs {
			_ = p.Wait()
		}
	}()
	var edges string
	for i := 1; i <= n; i++ {
		edge := fmt.Sprintf("127.0.0.1:%d", basePort+i-1)
		httpAddr := fmt.Sprintf("127.0.0.1:%d", 8100+i)
		cmd := exec.Command(bin, "serve")
		cmd.Env = append(os.Environ(), "SPROUT_CLUSTER=consul", "SPROUT_CONSUL_ADDR="+agent.Addr(), "SPROUT_DB="+dsn,
			"SPROUT_EDGE_ADDR="+edge, "SPROUT_HTTP_ADDR="+httpAddr, "SPROUT_ADMIN_TOKEN="+token, "SPROUT_LOG_FORMAT=text",
			"SPROUT_LOG_LEVEL=warn")
		log, err := os.Create(filepath.Join(tmp, fmt.Sprintf("node%d.log", i)))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		fmt.Printf("node %d: device edge %s, HTTP http://%s (logs %s)\n", i, edge, httpAddr, log.Name())
		if edges != "" {
			edges += ","
		}
		edges += edge
	}
	fmt.Printf(`
Consul:   http://%s/ui
Postgres: %s
Try:      go run ./cmd/sprout sim --server %s --api http://127.0.0.1:8101 --admin-token %s --devices 300
          curl -H 'Authorization: Bearer %s' http://127.0.0.1:8101/api/v1/cluster
Ctrl-C stops the cluster.
`, agent.Addr(), dsn, edges, token, token)
	<-ctx.Done()
	fmt.Println("stopping...")
	time.Sleep(100 * time.Millisecond)
	return nil
}
