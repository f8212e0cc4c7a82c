// Command sprout is Sprout's single binary: `sprout serve` runs a node, `sprout device` provisions
// devices, `sprout sim` runs simulated plants against a server, and `sprout demo` (what `make run`
// starts) runs a whole small world in one process.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

const usage = `sprout: a device cloud between WiFi plant pots and WeChat.

Usage:
  sprout serve            run a node (device edge, HTTP, grains); see sprout serve --help
  sprout device add       provision devices: prints ids and secrets (and QR content)
  sprout device list      list provisioned devices
  sprout device revoke ID revoke a device (it can no longer connect)
  sprout command queue    queue a command for a pot or a product, delivered when pots connect (docs/fleet.md)
  sprout config set|show|drift  desired configuration per product or pot, and the pots that drift
  sprout firmware ...     firmware images: keygen, add (signed), list (docs/ota.md)
  sprout rollout ...      staged firmware rollouts: start, list, show, pause, resume, abort
  sprout migrate          apply storage migrations and exit
  sprout sim              run simulated plants against a server
  sprout demo             one node, simulated WeChat and simulated plants (make run)
  sprout scenario run F   run a scenario file (--short, --out DIR); see docs/simulations.md
  sprout tls dev          write a development CA and node certificate (--hosts, --out)

Every command takes --help.
`

const deviceUsage = `Usage: sprout device add|list|revoke [flags]

  sprout device add       provision devices: prints ids and secrets (and QR content)
  sprout device list      list provisioned devices
  sprout device revoke ID revoke a device (it can no longer connect)

Each takes --help.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = runServe(os.Args[2:])
	case "device":
		if len(os.Args) == 3 && isHelp(os.Args[2]) {
			fmt.Print(deviceUsage)
			return
		}
		err = runDevice(os.Args[2:])
	case "command":
		err = runCommand(os.Args[2:])
	case "config":
		err = runConfig(os.Args[2:])
	case "firmware":
		err = runFirmware(os.Args[2:])
	case "rollout":
		err = runRollout(os.Args[2:])
	case "migrate":
		err = runMigrate(os.Args[2:])
	case "sim":
		err = runSim(os.Args[2:])
	case "demo":
		err = runDemo(os.Args[2:])
	case "scenario":
		err = runScenario(os.Args[2:])
	case "tls":
		err = runTLS(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "sprout: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	switch {
	case errors.Is(err, flag.ErrHelp): // the usage is on stdout
	case errors.Is(err, errUsage): // the problem and the usage are on stderr
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "sprout:", err)
		os.Exit(1)
	}
}
