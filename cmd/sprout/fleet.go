package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// `sprout command queue` and `sprout config set|show|drift`: fleet management (docs/fleet.md)
// through a running node's API, so that the pots' grains hear of it at once.

const commandUsage = `Usage: sprout command queue [flags] (--device ID | --product P) KIND

  Queues a command (water, read_now, reboot) for one pot or for every pot of a product, through
  a running node (--api, --admin-token); it is delivered when the pot next connects.
`

const configUsage = `Usage: sprout config set|show|drift [flags]

  sprout config set  (--device ID | --product P) --file F   set a desired configuration (F: JSON, - for stdin)
  sprout config show (--device ID | --product P)             show it (a pot: also what it applied, and its drift)
  sprout config drift [--product P]                          pots not running their desired configuration
`

// apiFlags are the flags of commands that talk to a running node.
type apiFlags struct{ url, token, device, product string }

func (a *apiFlags) register(fs *flagSet) {
	fs.str(&a.url, "api", "http://127.0.0.1:8080", "base URL of a running node's HTTP API")
	fs.str(&a.token, "admin-token", "", "bearer token for --api")
	fs.StringVar(&a.device, "device", "", "one pot")
	fs.StringVar(&a.product, "product", "", "every pot of a product")
}

// target is the API path of the pot or the product, exactly one of which must be given.
func (a *apiFlags) target() (string, error) {
	switch {
	case (a.device == "") == (a.product == ""):
		return "", fmt.Errorf("give exactly one of --device and --product")
	case a.device != "":
		return "/api/v1/devices/" + url.PathEscape(a.device), nil
	}
	return "/api/v1/products/" + url.PathEscape(a.product), nil
}

// call sends a request to the node and prints its JSON answer; a non-2xx answer is an error.
func (a *apiFlags) call(method, path string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.url, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, a.url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(out)))
	}
	_, _ = os.Stdout.Write(out)
	return nil
}

func runCommand(args []string) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Print(commandUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	if args[0] != "queue" {
		return fmt.Errorf("unknown command subcommand %q (want queue)", args[0])
	}
	var a apiFlags
	var ttl time.Duration
	var waterMs uint
	fs := newFlagSet("command queue", "Queues a command (water, read_now, reboot) for one pot or every pot of a product,\n"+
		"through a running node; it is delivered when the pot next connects (docs/fleet.md).\n"+
		"Usage: sprout command queue [flags] (--device ID | --product P) KIND")
	a.register(fs)
	fs.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the command may wait for the pot (at most the node's max, 7 days by default)")
	fs.UintVar(&waterMs, "water-ms", 5000, "pump run time for water")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: sprout command queue [flags] (--device ID | --product P) KIND")
	}
	path, err := a.target()
	if err != nil {
		return err
	}
	if ttl < time.Second {
		return fmt.Errorf("--ttl must be at least 1s")
	}
	kind := fs.Arg(0)
	body := fmt.Sprintf(`{"kind":%q,"ttl_s":%d`, kind, int64(ttl/time.Second))
	if kind == "water" {
		body += fmt.Sprintf(`,"water_ms":%d`, waterMs)
	}
	if a.device != "" {
		body += `,"queue":true`
	}
	return a.call(http.MethodPost, path+"/commands", []byte(body+"}"))
}

func runConfig(args []string) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Print(configUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	var a apiFlags
	var file string
	fs := newFlagSet("config "+args[0], "Desired configuration per product or pot, through a running node (docs/fleet.md).\n"+
		strings.TrimPrefix(configUsage, "Usage: sprout config set|show|drift [flags]\n\n"))
	a.register(fs)
	if args[0] == "set" {
		fs.StringVar(&file, "file", "", "the configuration as JSON (report_interval_s, heartbeat_interval_s, max_water_ms, min_water_interval_s, thresholds); - reads stdin")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "set":
		path, err := a.target()
		if err != nil {
			return err
		}
		var b []byte
		switch file {
		case "":
			return fmt.Errorf("--file is required")
		case "-":
			b, err = io.ReadAll(os.Stdin)
		default:
			b, err = os.ReadFile(file)
		}
		if err != nil {
			return err
		}
		return a.call(http.MethodPut, path+"/config", b)
	case "show":
		path, err := a.target()
		if err != nil {
			return err
		}
		return a.call(http.MethodGet, path+"/config", nil)
	case "drift":
		q := ""
		if a.product != "" {
			q = "?product=" + url.QueryEscape(a.product)
		}
		return a.call(http.MethodGet, "/api/v1/config/drift"+q, nil)
	}
	return fmt.Errorf("unknown config subcommand %q (want set, show or drift)", args[0])
}
