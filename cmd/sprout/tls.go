package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/edge/tlsconf"
)

const tlsUsage = `Usage: sprout tls dev [flags]

  sprout tls dev   write a development CA and a node certificate (for the demo and tests; not for production)
`

// runTLS is `sprout tls dev`: a development CA (reused if DIR has one) and a node certificate
// for a host list, to run the TLS listeners out of the box.
func runTLS(args []string) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Print(tlsUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	if args[0] != "dev" {
		return fmt.Errorf("%w: unknown tls command %q", errUsage, args[0])
	}
	var hosts, out string
	var valid time.Duration
	fs := newFlagSet("tls dev", "Writes a development CA (ca.pem, ca-key.pem; an existing one in --out is reused) and a node\n"+
		"certificate signed by it (node.pem, node-key.pem) for --hosts. Start the node with\n"+
		"SPROUT_TLS_CERT=DIR/node.pem SPROUT_TLS_KEY=DIR/node-key.pem and give devices DIR/ca.pem.\n"+
		"For development and tests only: in production use your own PKI or an ACME client.")
	fs.str(&hosts, "hosts", "localhost,127.0.0.1", "comma-separated DNS names and IP addresses the certificate is for")
	fs.str(&out, "out", "./sprout-data/tls", "directory to write to")
	fs.dur(&valid, "valid-for", 365*24*time.Hour, "how long the node certificate is valid")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var hs []string
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hs = append(hs, h)
		}
	}
	f, err := tlsconf.GenerateDev(out, hs, valid)
	if err != nil {
		return fmt.Errorf("writing development certificates: %w", err)
	}
	fmt.Printf("CA:          %s   (give this to devices and simulators)\ncertificate: %s\nkey:         %s\n\n"+
		"SPROUT_TLS_CERT=%s SPROUT_TLS_KEY=%s sprout serve\n", f.CA, f.Cert, f.Key, f.Cert, f.Key)
	return nil
}
