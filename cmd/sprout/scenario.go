package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sprout-iot/sprout/simulations/scenario"
)

const scenarioUsage = `Usage: sprout scenario run FILE [--short] [--out DIR] [--sprout BIN] [--cluster NODES]

Runs a scenario file (simulations/scenarios/*.yaml): starts "sprout serve" as a process with the
simulated WeChat platform, provisions the plants through the API, runs the fleet and the users,
samples every second, checks the scenario's pass criteria, and writes report.json, report.html
and summary.txt to the output directory. Exits 1 when a criterion is missed, naming it.
A scenario that requires a cluster runs against a local cluster it starts (Consul, Postgres, N nodes;
set SPROUT_CONSUL_BIN outside the repository); it is skipped (exit 0, with a message) when
Consul or Postgres cannot be found.

Flags:
`

// runScenario is `sprout scenario`.
func runScenario(args []string) error {
	fs := flag.NewFlagSet("scenario run", flag.ContinueOnError)
	short := fs.Bool("short", false, "run the short form (a few seconds, tens of plants)")
	out := fs.String("out", "", "directory for the report (default scenario-reports/NAME-TIME)")
	bin := fs.String("sprout", "", "the sprout binary to run as the node (default: this executable)")
	cluster := fs.String("cluster", "", "comma-separated node HTTP addresses of an external cluster target (not implemented; without it, cluster scenarios start a local cluster)")
	transport := fs.String("transport", "tcp", "how the plants reach the node(s): tcp (the TCP edge) or mqtt (each node's MQTT listener)")
	keep := fs.Bool("keep", false, "keep the node's data directory and log in the output directory")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), scenarioUsage)
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "run" {
		if len(args) > 0 && isHelp(args[0]) {
			fs.SetOutput(os.Stdout)
			fs.Usage()
			return flag.ErrHelp
		}
		fs.Usage()
		return fmt.Errorf("%w: want `sprout scenario run FILE`", errUsage)
	}
	// Flags may come before or after FILE.
	var files []string
	rest := args[1:]
	for {
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) != 1 {
		fs.Usage()
		return fmt.Errorf("scenario run: want one scenario file, got %d", len(files))
	}
	sc, err := scenario.Load(files[0])
	if err != nil {
		return err
	}
	if *bin == "" {
		if *bin, err = os.Executable(); err != nil {
			return fmt.Errorf("finding this executable (pass --sprout): %w", err)
		}
	}
	if *out == "" {
		*out = filepath.Join("scenario-reports", sc.Name+"-"+time.Now().Format("20060102-150405"))
	}
	if *transport != "tcp" && *transport != "mqtt" {
		return fmt.Errorf("%w: --transport must be tcp or mqtt, got %q", errUsage, *transport)
	}
	o := scenario.Options{Short: *short, Binary: *bin, Log: os.Stderr, Transport: *transport}
	if *cluster != "" {
		o.Cluster = strings.Split(*cluster, ",")
	}
	if *keep {
		o.WorkDir = filepath.Join(*out, "work")
	}
	tty := isTerminal(os.Stderr)
	o.Progress = func(p scenario.Progress) {
		switch {
		case tty:
			fmt.Fprintf(os.Stderr, "\r%s\x1b[K", p.Line())
		case int(p.Elapsed.Seconds())%5 == 0:
			fmt.Fprintln(os.Stderr, p.Line())
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, runErr := scenario.Run(ctx, sc, o)
	if tty {
		fmt.Fprintln(os.Stderr)
	}
	if errors.Is(runErr, scenario.ErrNeedsCluster) {
		fmt.Println("SKIPPED:", runErr)
		return nil
	}
	if rep == nil {
		return runErr
	}
	jsonPath, htmlPath, textPath, err := rep.Write(*out)
	if err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	fmt.Print(rep.Summary())
	fmt.Printf("report:   %s\n          %s\n          %s\n", htmlPath, jsonPath, textPath)
	return runErr
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
