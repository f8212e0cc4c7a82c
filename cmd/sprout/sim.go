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
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sprout-iot/sprout/simulations/fleet"
)

func runSim(args []string) error {
	var (
		server, creds, apiURL, token, prefix, jsonOut, localIPs string
		devices, window                                         int
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cs, err := simCredentials(ctx, creds, apiURL, token, prefix, devices)
	if err != nil {
		return err
	}
	o := fleet.Options{Devices: cs, Servers: strings.Split(server, ","), ReportInterval: interval, Window: window, Duration: duration}
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
