// Package consultest starts real Consul agents for tests: one single-node Consul "cluster" per
// Agent, every port on a free loopback port, and a throwaway data directory. Sprout's cluster
// members find each other through Consul, and its tests do not fake Consul. It is for tests only;
// nothing in production imports it.
//
// The binary is Consul v1.16.1 (the last MPL-2.0 release), built from source by .ci/consul.sh and
// cached outside the repository (${SPROUT_CACHE:-$HOME/.cache/sprout}/consul-1.16.1/consul), or
// the one named by $SPROUT_CONSUL_BIN. The first build takes several minutes (about 3.5 to 10 on 2
// cores), longer than `go test`'s default 10-minute timeout might leave for the tests: run
// `.ci/consul.sh` once beforehand (CI does), or raise -timeout. If the build fails, the test fails
// with the tail of the build output; it is never skipped.
//
// By default an agent runs in dev mode (`consul agent -dev`): it elects itself leader in well under
// a second, and keeps its catalog in memory, so Restart comes back with an empty catalog, as after
// losing a Consul server's state. Config.Persistent runs a real single-server agent (raft on disk)
// instead, whose catalog survives Restart; it takes a second or two to elect a leader.
//
// An agent is a child of the test process and is killed if the test process dies (Pdeathsig);
// its temp directory is then left behind under $TMPDIR (consultest-*).
package consultest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// Version is the Consul version the helper expects (see .ci/consul.sh).
const Version = "1.16.1"

// BinEnv names the environment variable that, when set, gives the consul binary to use instead of
// running .ci/consul.sh.
const BinEnv = "SPROUT_CONSUL_BIN"

// StartTimeout bounds how long an agent may take to start and elect a leader.
var StartTimeout = 30 * time.Second

// Config chooses how an agent runs. The zero value is a dev-mode agent.
type Config struct {
	// Persistent runs a single server with raft on disk (not -dev): the catalog, KV and sessions
	// survive Restart. Leader election takes about 1-2 s instead of about 0.2 s.
	Persistent bool
	// LogLevel is the agent's -log-level (default "info"; "debug" or "trace" for more).
	LogLevel string
	// Node is the node name (default consultest-<pid>-<n>).
	Node string
}

// Agent is one Consul agent process (running or stopped) with its own data directory and ports.
// Its ports and node identity stay the same across Stop and Restart.
type Agent struct {
	cfg                               Config
	bin                               string
	root                              string // temp dir: data/, consul.log
	httpPort, serfLANPort, serverPort int
	mu                                sync.Mutex // serialises Stop/Restart/Close
	cmd                               *exec.Cmd
	exited                            chan struct{} // closed when cmd has exited
	exitErr                           error
	closed                            bool
}

var agentSeq atomic.Int64

// Start starts an agent for the test, waits until it has a leader, and stops it and removes its
// data directory when the test ends. It fails the test (it does not skip it) when Consul cannot be
// built or started.
func Start(t testing.TB, cfg ...Config) *Agent {
	t.Helper()
	var c Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	a, err := NewAgent(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("consultest: last lines of the Consul log (%s):\n%s", a.Addr(), a.LogTail(40))
		}
		if err := a.Close(); err != nil {
			t.Errorf("consultest: %v", err)
		}
	})
	return a
}

// StartShared starts one agent for a whole test binary, stores it in *agent, runs the tests, closes
// the agent and exits. Use it as the body of TestMain. Tests sharing an agent should use distinct
// service names; a test that stops or restarts the agent should use one of its own (Start).
func StartShared(m *testing.M, cfg Config, agent **Agent) {
	a, err := NewAgent(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*agent = a
	code := m.Run()
	if err := a.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "consultest:", err)
	}
	os.Exit(code)
}

// NewAgent starts an agent and waits until it has a leader. The caller must Close it.
func NewAgent(cfg Config) (*Agent, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.Node == "" {
		cfg.Node = fmt.Sprintf("consultest-%d-%d", os.Getpid(), agentSeq.Add(1))
	}
	a := &Agent{cfg: cfg, bin: bin}
	if a.root, err = os.MkdirTemp("", "consultest-"); err != nil {
		return nil, fmt.Errorf("consultest: %w", err)
	}
	if err := os.Mkdir(a.dataDir(), 0o700); err != nil {
		os.RemoveAll(a.root)
		return nil, fmt.Errorf("consultest: %w", err)
	}
	// Free ports are found by binding and releasing them, so another process may take one before
	// Consul binds it: retry with fresh ports.
	for attempt := 1; ; attempt++ {
		ports, perr := freePorts(3)
		if perr == nil {
			a.httpPort, a.serfLANPort, a.serverPort = ports[0], ports[1], ports[2]
			if err = a.start(); err == nil {
				return a, nil
			}
		} else {
			err = perr
		}
		if attempt == 3 || !strings.Contains(a.LogTail(100), "address already in use") {
			os.RemoveAll(a.root)
			return nil, err
		}
	}
}

func (a *Agent) dataDir() string { return filepath.Join(a.root, "data") }
func (a *Agent) logFile() string { return filepath.Join(a.root, "consul.log") }

// Addr is the host:port of the agent's HTTP API (the same across Stop and Restart).
func (a *Agent) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.httpPort)) }

// URL is the base URL of the agent's HTTP API, e.g. http://127.0.0.1:41234.
func (a *Agent) URL() string { return "http://" + a.Addr() }

// Node is the agent's node name.
func (a *Agent) Node() string { return a.cfg.Node }

// APIConfig returns a Consul API client configuration for this agent (for api.NewClient, or
// protoactor's consul.NewWithConfig). Each call returns a new value.
func (a *Agent) APIConfig() *api.Config {
	return &api.Config{Address: a.Addr(), Scheme: "http"}
}

// Client returns a Consul API client for this agent.
func (a *Agent) Client() (*api.Client, error) { return api.NewClient(a.APIConfig()) }

// LogTail returns up to n last lines of the agent's log (all its runs).
func (a *Agent) LogTail(n int) string { return tailFile(a.logFile(), n) }

// args are the agent's command-line arguments. Every listener is on 127.0.0.1: HTTP, serf LAN and
// server RPC on ports chosen by NewAgent; DNS, gRPC, HTTPS and serf WAN are disabled.
func (a *Agent) args() []string {
	args := []string{"agent"}
	if a.cfg.Persistent {
		args = append(args, "-server", "-bootstrap-expect=1",
			// Dev-mode-like raft timing (the production default multiplies timeouts by 5).
			"-hcl=performance { raft_multiplier = 1 }")
	} else {
		args = append(args, "-dev")
	}
	return append(args,
		"-node="+a.cfg.Node,
		"-data-dir="+a.dataDir(),
		"-bind=127.0.0.1",
		"-client=127.0.0.1",
		"-advertise=127.0.0.1",
		"-http-port="+strconv.Itoa(a.httpPort),
		"-serf-lan-port="+strconv.Itoa(a.serfLANPort),
		"-server-port="+strconv.Itoa(a.serverPort),
		"-serf-wan-port=-1",
		"-dns-port=-1",
		"-grpc-port=-1",
		"-grpc-tls-port=-1",
		"-https-port=-1",
		"-disable-host-node-id=true",
		"-log-level="+a.cfg.LogLevel,
		"-hcl=disable_update_check = true",
	)
}

// start starts the process and waits until it has a leader; on failure the process is stopped.
func (a *Agent) start() error {
	log, err := os.OpenFile(a.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("consultest: %w", err)
	}
	fmt.Fprintf(log, "==== consultest: %s %s\n", a.bin, strings.Join(a.args(), " "))
	cmd := exec.Command(a.bin, a.args()...)
	cmd.Dir = a.root
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = agentEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("consultest: starting %s: %w", a.bin, err)
	}
	log.Close() // the child holds its own descriptor
	exited := make(chan struct{})
	a.cmd, a.exited, a.exitErr = cmd, exited, nil
	go func() {
		err := cmd.Wait()
		a.exitErr = err
		close(exited)
	}()
	if err := a.waitReady(exited); err != nil {
		a.stop(false)
		return fmt.Errorf("consultest: Consul agent on %s: %w\nlast lines of %s:\n%s", a.Addr(), err, a.logFile(), a.LogTail(30))
	}
	return nil
}

// waitReady waits until the agent reports a leader and its own node is in the catalog.
func (a *Agent) waitReady(exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	get := func(path string) (string, int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL()+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return "", 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(bytes.TrimSpace(b)), resp.StatusCode, err
	}
	var last string
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 100*time.Millisecond) {
		select {
		case <-exited:
			return fmt.Errorf("exited during startup (%v)", a.exitErr)
		case <-ctx.Done():
			return fmt.Errorf("no leader after %v (last: %s)", StartTimeout, last)
		case <-time.After(delay):
		}
		body, code, err := get("/v1/status/leader")
		switch {
		case err != nil:
			last = err.Error()
			continue
		case code != http.StatusOK:
			last = fmt.Sprintf("/v1/status/leader: HTTP %d %s", code, body)
			continue
		}
		var leader string
		if err := json.Unmarshal([]byte(body), &leader); err != nil || leader == "" {
			last = "/v1/status/leader: " + body
			continue
		}
		body, code, err = get("/v1/catalog/node/" + a.cfg.Node)
		if err != nil || code != http.StatusOK || body == "null" {
			last = fmt.Sprintf("leader %s, node %s not in the catalog yet", leader, a.cfg.Node)
			continue
		}
		return nil
	}
}

// Running reports whether the agent process is running.
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running()
}

func (a *Agent) running() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// Stop stops the agent gracefully (SIGINT: it leaves the cluster), keeping its data directory and
// ports for Restart. Stopping a stopped agent does nothing.
func (a *Agent) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stop(false)
}

// Kill stops the agent abruptly (SIGKILL), as a crash would.
func (a *Agent) Kill() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stop(true)
}

func (a *Agent) stop(kill bool) error {
	if !a.running() {
		a.cmd = nil
		return nil
	}
	pid := a.cmd.Process.Pid
	if kill {
		syscall.Kill(-pid, syscall.SIGKILL)
	} else {
		syscall.Kill(-pid, syscall.SIGINT)
	}
	var err error
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-a.exited
		err = fmt.Errorf("consultest: Consul agent on %s did not stop within 15s of SIGINT; killed it", a.Addr())
	}
	a.cmd = nil
	return err
}

// Restart stops the agent (if it is running) and starts it again on the same ports and data
// directory, then waits until it has a leader. A dev-mode agent comes back with an empty catalog;
// a Persistent one keeps it.
func (a *Agent) Restart() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("consultest: Restart after Close")
	}
	if err := a.stop(false); err != nil {
		return err
	}
	return a.start()
}

// Close stops the agent and removes its directory. It is idempotent.
func (a *Agent) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	err := a.stop(false)
	if rerr := os.RemoveAll(a.root); rerr != nil && err == nil {
		err = fmt.Errorf("consultest: %w", rerr)
	}
	return err
}

// agentEnv is the environment for the agent: the test's, minus CONSUL_* variables that would
// point it (or its CLI) elsewhere.
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONSUL_") {
			env = append(env, kv)
		}
	}
	return env
}

// freePorts returns n distinct loopback ports that were free for both TCP and UDP (serf uses both).
func freePorts(n int) ([]int, error) {
	var ports []int
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 50 {
			return nil, errors.New("consultest: no free loopback ports")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("consultest: %w", err)
		}
		closers = append(closers, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // UDP side taken: try another port
		}
		closers = append(closers, u)
		ports = append(ports, port)
	}
	return ports, nil
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return tailLines(string(b), n)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
