package scenario

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sprout-iot/sprout/simulations/fleet"
)

// BuildSprout builds the sprout binary into dir and returns its path. It runs `go build`, so the
// working directory must be inside Sprout's module.
func BuildSprout(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "sprout")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sprout-iot/sprout/cmd/sprout")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building sprout (run inside the repository, or pass the binary): %w\n%s", err, out)
	}
	return bin, nil
}

// node is one `sprout serve` process.
type node struct {
	cmd      *exec.Cmd
	edge     string
	mqtt     string // the node's MQTT listener (plants run over it with --transport mqtt)
	http     string
	token    string
	logPath  string
	logFile  *os.File
	exited   chan struct{}
	exitErr  error
	stopOnce sync.Once
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startNode starts `bin serve` with env (on top of the caller's environment minus its SPROUT_*
// settings, so that a run is reproducible) and waits for /readyz.
func startNode(ctx context.Context, bin, dir string, env map[string]string) (*node, error) {
	edge, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	mqttAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	n := &node{edge: edge, mqtt: mqttAddr, http: httpAddr, token: randHex(12), logPath: filepath.Join(dir, "server.log"), exited: make(chan struct{})}
	if n.logFile, err = os.Create(n.logPath); err != nil {
		return nil, err
	}
	var e []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPROUT_") {
			e = append(e, kv)
		}
	}
	e = append(e, "SPROUT_DATA_DIR="+filepath.Join(dir, "data"), "SPROUT_EDGE_ADDR="+edge, "SPROUT_MQTT_ADDR="+mqttAddr, "SPROUT_HTTP_ADDR="+httpAddr,
		"SPROUT_ADMIN_TOKEN="+n.token, "SPROUT_LOG_LEVEL=warn", "SPROUT_LOG_FORMAT=text")
	for k, v := range env {
		e = append(e, k+"="+v)
	}
	n.cmd = exec.Command(bin, "serve")
	n.cmd.Env = e
	n.cmd.Stdout, n.cmd.Stderr = n.logFile, n.logFile
	if err := n.cmd.Start(); err != nil {
		n.logFile.Close()
		return nil, fmt.Errorf("starting %s serve: %w", bin, err)
	}
	go func() {
		n.exitErr = n.cmd.Wait()
		close(n.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return n, nil
			}
		}
		select {
		case <-n.exited:
			return nil, fmt.Errorf("sprout serve exited before it was ready (%v); its log:\n%s", n.exitErr, n.tail())
		case <-ctx.Done():
			n.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, fmt.Errorf("sprout serve not ready after 30s: %v; its log:\n%s", err, n.tail())
		}
	}
}

// tail is the end of the node's log, for error messages.
func (n *node) tail() string {
	b, _ := os.ReadFile(n.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stop sends SIGTERM, waits up to 10 s for a clean stop, then kills.
func (n *node) stop() { n.signal(syscall.SIGTERM) }

// signal sends sig (SIGKILL: the node dies without warning), waits up to 10 s for the process to
// exit, then kills it. Only the first stop or signal does anything.
func (n *node) signal(sig syscall.Signal) {
	n.stopOnce.Do(func() {
		_ = n.cmd.Process.Signal(sig)
		select {
		case <-n.exited:
		case <-time.After(10 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
		n.logFile.Close()
	})
}

// api calls the node's HTTP API with the admin token.
func (n *node) api(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+n.http+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// provision creates the devices through POST /api/v1/devices, a few at a time.
func (n *node) provision(ctx context.Context, creds []fleet.Credential) error {
	return parallel(ctx, len(creds), 8, func(i int) error {
		c := creds[i]
		return n.api(ctx, http.MethodPost, "/api/v1/devices", map[string]string{
			"id": c.ID, "product": product, "secret": hex.EncodeToString(c.Secret)}, nil)
	})
}

// storedSeqs returns the seqs the node holds for a device, with how many times each is stored:
// its readings and the Event frames in its event log, between from and to (received time), paging
// past the API's limit.
func (n *node) storedSeqs(ctx context.Context, id string, from, to time.Time) (map[uint64]int, uint64, error) {
	var st struct {
		LastSeq uint64 `json:"last_seq"`
	}
	if err := n.api(ctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(id), nil, &st); err != nil {
		return nil, 0, err
	}
	seqs := map[uint64]int{}
	const page = 10000
	for at, first := from, true; ; first = false {
		var rs struct {
			Readings []struct {
				Seq uint64    `json:"seq"`
				At  time.Time `json:"at"`
			} `json:"readings"`
		}
		q := url.Values{"from": {at.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}, "limit": {fmt.Sprint(page)}}
		if err := n.api(ctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(id)+"/readings?"+q.Encode(), nil, &rs); err != nil {
			return nil, 0, err
		}
		for _, r := range rs.Readings {
			// A later page starts at the second the previous one ended in: readings of that second
			// may be read twice, so they are not counted again.
			if !first && seqs[r.Seq] > 0 && !r.At.Truncate(time.Second).After(at) {
				continue
			}
			seqs[r.Seq]++
		}
		if len(rs.Readings) < page {
			break
		}
		next := rs.Readings[len(rs.Readings)-1].At.Truncate(time.Second)
		if !next.After(at) {
			return nil, 0, fmt.Errorf("device %s: more than %d readings in one second; cannot page", id, page)
		}
		at = next
	}
	var evs struct {
		Events []struct {
			Kind string `json:"kind"`
			Seq  uint64 `json:"seq"`
		} `json:"events"`
	}
	q := url.Values{"from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
	if err := n.api(ctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(id)+"/events?"+q.Encode(), nil, &evs); err != nil {
		return nil, 0, err
	}
	for _, e := range evs.Events {
		if e.Kind == "device_event" && e.Seq > 0 {
			seqs[e.Seq]++
		}
	}
	return seqs, st.LastSeq, nil
}

// parallel runs f(0..n-1) on at most width goroutines and returns the first error.
func parallel(ctx context.Context, n, width int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for w := 0; w < width; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		mu.Lock()
		stop := first != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// proxy is the network between the pots and the node: it forwards TCP and can drop every
// connection at once and refuse new ones for a while (a blip).
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
	closed bool
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go p.forward(c)
	}
}

func (p *proxy) forward(c net.Conn) {
	p.mu.Lock()
	down := p.down || p.closed
	p.mu.Unlock()
	if down {
		_ = c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down || p.closed {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

// setDown drops every connection and refuses new ones (true), or lets them through again (false).
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.setDown(true)
}
