package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
)

func runDevice(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sprout device add|list|revoke [flags]")
	}
	switch args[0] {
	case "add":
		return runDeviceAdd(args[1:])
	case "list":
		return runDeviceList(args[1:])
	case "revoke":
		return runDeviceRevoke(args[1:])
	}
	return fmt.Errorf("unknown device command %q (want add, list or revoke)", args[0])
}

// credential is one line of `sprout device add --json`, the format `sprout sim --creds` reads.
type credential struct {
	ID     string `json:"id"`
	Secret string `json:"secret"` // hex
}

func runDeviceAdd(args []string) error {
	var (
		sf               storeFlags
		id, product, sec string
		prefix           string
		count            int
		asJSON           bool
	)
	fs := newFlagSet("device add", "Provisions devices: generates an id and a secret for each and prints them.\nWrite the secret into the device (vdev --secret, or the factory's NVS image); it is the only copy outside the store.")
	sf.register(fs)
	fs.str(&id, "id", "", "device id (default: generated pot-xxxxxxxxxxxx); with --count, ignored")
	fs.str(&product, "product", "sprout-pot", "product name")
	fs.str(&sec, "secret", "", "the secret as hex (default: 32 random bytes)")
	fs.str(&prefix, "prefix", "", "with --count: ids are PREFIX0001, PREFIX0002, ...")
	fs.int(&count, "count", 1, "how many devices to provision")
	fs.BoolVar(&asJSON, "json", false, "print a JSON array of {id, secret} (what sprout sim --creds reads)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var secret []byte
	if sec != "" {
		var err error
		if secret, err = hex.DecodeString(sec); err != nil || len(secret) < 16 {
			return fmt.Errorf("--secret must be at least 16 bytes of hex")
		}
	}
	ctx := context.Background()
	st, _, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	var out []credential
	for i := 1; i <= count; i++ {
		did := id
		if count > 1 {
			did = ""
			if prefix != "" {
				did = fmt.Sprintf("%s%04d", prefix, i)
			}
		}
		d, err := api.NewDevice(ctx, st, did, product, secret)
		if err != nil {
			return fmt.Errorf("adding device %q: %w", did, err)
		}
		out = append(out, credential{ID: d.ID, Secret: hex.EncodeToString(d.Secret)})
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", " ")
		return enc.Encode(out)
	}
	for _, c := range out {
		fmt.Printf("id=%s secret=%s\n", c.ID, c.Secret)
	}
	return nil
}

func runDeviceList(args []string) error {
	var sf storeFlags
	fs := newFlagSet("device list", "Lists provisioned devices (never their secrets).")
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	st, _, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	after := ""
	for {
		ds, err := st.ListDevices(ctx, actors.ListQuery{AfterID: after, Limit: 1000})
		if err != nil {
			return err
		}
		for _, d := range ds {
			state := "active"
			if d.Revoked() {
				state = "revoked " + d.RevokedAt.Format(time.RFC3339)
			}
			fmt.Printf("%s\t%s\t%s\t%s\n", d.ID, d.Product, d.CreatedAt.Format(time.RFC3339), state)
		}
		if len(ds) < 1000 {
			return nil
		}
		after = ds[len(ds)-1].ID
	}
}

func runDeviceRevoke(args []string) error {
	var sf storeFlags
	fs := newFlagSet("device revoke", "Revokes a device: it can no longer connect. Usage: sprout device revoke [flags] ID")
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: sprout device revoke [flags] ID")
	}
	ctx := context.Background()
	st, _, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.RevokeDevice(ctx, fs.Arg(0), time.Now().UTC())
}
