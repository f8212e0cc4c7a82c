package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sprout-iot/sprout/simulations/fleet"
)

func runSim(args []string) error {
	var (
		server, creds, apiURL, token, prefix, jsonOut, localIPs string
		transport, tlsCA                                        string
		devices, window, processes                              int
		connectRate                                             float64
		duration, interval                                      time.Duration
		quiet                                                   bool
	)
	fs := newFlagSet("sim", "Runs N simulated plants, each a real TCP client of the device edge, and prints a report.\n"+
		"Credentials come from --creds (the JSON of `sprout device add --count N --json`), or are provisioned\n"+
		"through the API (--api and --admin-token) and then saved to --creds if given.")
	fs.str(&server, "server", "127.0.0.1:7100", "edge addresses, comma-separated; plants spread over them and fail over")
	fs.int(&devices, "devices", 100, "how many plants")
	fs.str(&creds, "creds", "", "credentials file (JSON array of {id, secret})")
	fs.str(&apiURL, "api", "", "base URL of a node's HTTP API, to provision missing devices (e.g. http://127.0.0.1:8080)")
	fs.str(&token, "admin-token", "", "bearer token for --api")
	fs.str(&prefix, "prefix", "sim-", "id prefix of provisioned devices")
	fs.dur(&duration, "duration", 0, "how long to run (0: until Ctrl-C)")
	fs.dur(&interval, "report-interval", 0, "override the report interval (0: the server's config; -1ns: as fast as acks allow)")
	fs.int(&window, "window", 1, "unacked frames in flight per plant")
	fs.str(&localIPs, "local-ips", "", "source addresses, comma-separated (default 127.0.0.1-8 for loopback servers)")
	fs.str(&jsonOut, "json", "", "write the JSON report to this file")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines")
	fs.str(&transport, "transport", "tcp", "tcp (Sprout's frames; --server is the edge) or mqtt (MQTT 3.1.1; --server is the MQTT listener, e.g. 127.0.0.1:1883)")
	fs.str(&tlsCA, "tls-ca", "", "connect over TLS, trusting this CA (PEM; e.g. ca.pem from sprout tls dev); --server is then a TLS listener (:7443, or :8883 with --transport mqtt)")
	fs.float(&connectRate, "connect-rate", fleet.DefaultConnectRate, "plants started per second during the ramp (per process with --processes)")
	fs.int(&processes, "processes", 1, "spread the plants over this many processes (one process holds about 19,990 sockets here), each on its own loopback source addresses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cs, err := simCredentials(ctx, creds, apiURL, token, prefix, devices)
	if err != nil {
		return err
	}
	if processes > 1 {
		return simProcesses(ctx, cs, processes, args, jsonOut)
	}
	o := fleet.Options{Devices: cs, Servers: strings.Split(server, ","), ReportInterval: interval, Window: window, Duration: duration, ConnectRate: connectRate}
	if err := simTransport(&o, transport, tlsCA); err != nil {
		return err
	}
	if localIPs != "" {
		o.LocalIPs = strings.Split(localIPs, ",")
	}
	if !quiet {
		o.Progress = func(s fleet.Snapshot) {
			fmt.Fprintf(os.Stderr, "\r%6.0fs connected %6d  acked %9d  %8.0f frames/s  p99 %v  reconnects %d   ",
				s.Elapsed.Seconds(), s.Connected, s.FramesAcked, s.AckedPerSecond, s.P99.Round(10*time.Microsecond), s.Reconnects)
		}
	}
	rep, err := fleet.Run(ctx, o)
	if !quiet {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	fmt.Print(rep.Summary())
	if jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", " ")
		if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// simCredentials loads credentials, provisioning missing ones through the API when asked to.
func simCredentials(ctx context.Context, path, apiURL, token, prefix string, n int) ([]fleet.Credential, error) {
	var cs []fleet.Credential
	if path != "" {
		if loaded, err := fleet.LoadCredentials(path); err == nil {
			cs = loaded
		} else if !errors.Is(err, fs.ErrNotExist) || apiURL == "" {
			return nil, err
		}
	}
	if len(cs) >= n {
		return cs[:n], nil
	}
	if apiURL == "" {
		return nil, fmt.Errorf("have %d credentials for %d plants: give --creds with enough, or --api and --admin-token to provision", len(cs), n)
	}
	for i := len(cs) + 1; i <= n; i++ {
		id := fmt.Sprintf("%s%05d", prefix, i)
		c, err := provision(ctx, apiURL, token, id)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	if path != "" {
		if err := fleet.SaveCredentials(path, cs); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

func provision(ctx context.Context, apiURL, token, id string) (fleet.Credential, error) {
	body, _ := json.Marshal(map[string]string{"id": id, "product": "sim-pot"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(apiURL, "/")+"/api/v1/devices", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fleet.Credential{}, fmt.Errorf("provisioning %s: %w", id, err)
	}
	defer resp.Body.Close()
	var out struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
		Error  *struct{ Code, Message string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusCreated {
		msg := resp.Status
		if out.Error != nil {
			msg = out.Error.Code + ": " + out.Error.Message
		}
		return fleet.Credential{}, fmt.Errorf("provisioning %s: %s (a device provisioned earlier needs its secret from --creds)", id, msg)
	}
	secret, err := hex.DecodeString(out.Secret)
	if err != nil {
		return fleet.Credential{}, fmt.Errorf("provisioning %s: bad secret in reply", id)
	}
	return fleet.Credential{ID: out.ID, Secret: secret}, nil
}

// simProcesses runs the fleet as n child `sprout sim` processes, each with a share of the
// credentials and its own source addresses (127.0.0.<8i+1>..<8i+8>), and merges their reports.
func simProcesses(ctx context.Context, cs []fleet.Credential, n int, args []string, jsonOut string) error {
	dir, err := os.MkdirTemp("", "sprout-sim")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// The children take every flag but these, which the parent sets per child.
	var pass []string
	skip := map[string]bool{"processes": true, "creds": true, "devices": true, "json": true, "local-ips": true, "api": true}
	for i := 0; i < len(args); i++ {
		name := strings.TrimLeft(args[i], "-")
		name, _, hasValue := strings.Cut(name, "=")
		if skip[name] {
			if !hasValue && i+1 < len(args) && name != "quiet" {
				i++
			}
			continue
		}
		pass = append(pass, args[i])
	}
	type child struct {
		cmd  *exec.Cmd
		json string
	}
	var kids []child
	per := (len(cs) + n - 1) / n
	for i := 0; i < n && i*per < len(cs); i++ {
		part := cs[i*per : min((i+1)*per, len(cs))]
		credFile := filepath.Join(dir, fmt.Sprintf("creds-%d.json", i))
		if err := fleet.SaveCredentials(credFile, part); err != nil {
			return err
		}
		var ips []string
		for k := 1; k <= 8; k++ {
			ips = append(ips, fmt.Sprintf("127.0.%d.%d", i/31, (i%31)*8+k))
		}
		c := child{json: filepath.Join(dir, fmt.Sprintf("report-%d.json", i))}
		c.cmd = exec.CommandContext(ctx, self, append([]string{"sim", "--creds", credFile, "--devices", fmt.Sprint(len(part)),
			"--json", c.json, "--local-ips", strings.Join(ips, ","), "--quiet"}, pass...)...)
		c.cmd.Stderr = os.Stderr
		if err := c.cmd.Start(); err != nil {
			return err
		}
		kids = append(kids, c)
	}
	var merged fleet.Report
	var errs []error
	for i, c := range kids {
		if err := c.cmd.Wait(); err != nil && ctx.Err() == nil {
			errs = append(errs, fmt.Errorf("process %d: %w", i, err))
		}
		b, err := os.ReadFile(c.json)
		if err != nil {
			continue
		}
		var r fleet.Report
		if json.Unmarshal(b, &r) != nil {
			continue
		}
		merged.Devices += r.Devices
		merged.Servers = r.Servers
		merged.ConnectedMax += r.ConnectedMax
		merged.ConnectedFinal += r.ConnectedFinal
		merged.FramesSent += r.FramesSent
		merged.FramesAcked += r.FramesAcked
		merged.FramesPerSecond += r.FramesPerSecond
		merged.SteadyFramesPerSecond += r.SteadyFramesPerSecond
		merged.Reconnects += r.Reconnects
		merged.Elapsed = max(merged.Elapsed, r.Elapsed)
		// Percentiles do not add up: the merged report keeps the worst process's.
		if r.AckLatency.P99 > merged.AckLatency.P99 {
			merged.AckLatency = r.AckLatency
		}
	}
	fmt.Printf("%d processes: %d devices, connected max %d, frames sent %d, acked %d, %.0f frames/s (steady %.0f), worst process ack p99 %v, reconnects %d\n",
		len(kids), merged.Devices, merged.ConnectedMax, merged.FramesSent, merged.FramesAcked, merged.FramesPerSecond,
		merged.SteadyFramesPerSecond, merged.AckLatency.P99, merged.Reconnects)
	if jsonOut != "" {
		b, _ := json.MarshalIndent(merged, "", " ")
		if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}
