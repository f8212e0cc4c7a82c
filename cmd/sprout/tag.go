package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/actors"
)

// `sprout device tag` (docs/fleet.md): a device's tags, for targeting rollouts (docs/ota.md).

func runDeviceTag(args []string) error {
	var (
		sf    storeFlags
		a     apiFlags
		clear bool
	)
	fs := newFlagSet("device tag", "Shows or replaces a device's tags (1..64 of a-z 0-9 . _ : -, at most 16).\n"+
		"  sprout device tag ID               show them\n"+
		"  sprout device tag ID TAG...        replace them\n"+
		"  sprout device tag --clear ID       remove them\n"+
		"With --api the node's API does it (PUT /api/v1/devices/{id}/tags); without, the store is written\n"+
		"directly (with the embedded store, stop the node first).\n"+
		"Usage: sprout device tag [flags] ID [TAG...]")
	sf.register(fs)
	fs.str(&a.url, "api", "", "base URL of a running node's HTTP API (e.g. http://127.0.0.1:8080)")
	fs.str(&a.token, "admin-token", "", "bearer token for --api")
	fs.BoolVar(&clear, "clear", false, "remove every tag of the device")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return fmt.Errorf("%w: sprout device tag [flags] ID [TAG...]", errUsage)
	}
	id, tags := fs.Arg(0), fs.Args()[1:]
	set := clear || len(tags) > 0
	if clear && len(tags) > 0 {
		return fmt.Errorf("%w: --clear takes no tags", errUsage)
	}
	if _, err := actors.NormalizeTags(tags); err != nil {
		return err
	}
	if a.url != "" {
		path := "/api/v1/devices/" + url.PathEscape(id) + "/tags"
		if !set {
			return a.call(http.MethodGet, path, nil)
		}
		body, _ := json.Marshal(map[string][]string{"tags": append([]string{}, tags...)})
		return a.call(http.MethodPut, path, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, _, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	ts, ok := st.(actors.TagStore)
	if !ok {
		return fmt.Errorf("this store keeps no tags")
	}
	if set {
		if err := ts.SetDeviceTags(ctx, id, tags); err != nil {
			return err
		}
	} else if _, err := st.GetDevice(ctx, id); err != nil {
		return err
	}
	now, err := ts.DeviceTags(ctx, id)
	if err != nil {
		return err
	}
	fmt.Printf("%s\t%s\n", id, strings.Join(now, " "))
	return nil
}
