package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
)

// `sprout firmware keygen|add|list` and `sprout rollout start|show|pause|resume|abort` (docs/ota.md).

const firmwareUsage = `Usage: sprout firmware keygen|add|list [flags]

  sprout firmware keygen  write a new Ed25519 signing key pair (OUT.key private, OUT.pub public)
  sprout firmware add     store and sign an image (--product P --version V --file F --key K)
  sprout firmware list    list stored images

Each takes --help. See docs/ota.md.
`

const rolloutUsage = `Usage: sprout rollout start|list|show|pause|resume|abort [flags]

  sprout rollout start    roll an image out to a product's pots in stages
  sprout rollout list     list rollouts
  sprout rollout show     a rollout with each pot's state (--id)
  sprout rollout pause|resume|abort --id ID

Each takes --help. See docs/ota.md.
`

func runFirmware(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, firmwareUsage)
	}
	if isHelp(args[0]) {
		fmt.Print(firmwareUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "keygen":
		return runFirmwareKeygen(args[1:])
	case "add":
		return runFirmwareAdd(args[1:])
	case "list":
		return runFirmwareList(args[1:])
	}
	return fmt.Errorf("unknown firmware command %q (want keygen, add or list)", args[0])
}

// Key files: the private key as PEM actors.SigningKeyPEMType (the 32-byte Ed25519 seed), the
// public key as 64 hex digits on one line (what the firmware build and vdev --ota-key take).

func runFirmwareKeygen(args []string) error {
	var out string
	fs := newFlagSet("firmware keygen", "Writes a new Ed25519 firmware signing key pair: OUT.key (private: keep it off the repository and the nodes)\nand OUT.pub (hex public key: build it into the firmware, docs/ota.md).")
	fs.str(&out, "out", "firmware", "path prefix of the two files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: actors.SigningKeyPEMType, Bytes: priv.Seed()})
	f, err := os.OpenFile(out+".key", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("private key: %w (an existing key is never overwritten)", err)
	}
	if _, err := f.Write(keyPEM); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(out+".pub", []byte(hex.EncodeToString(pub)+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s.key (private) and %s.pub (public: %x)\n", out, out, pub)
	return nil
}

func readSigningKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := actors.ParseSigningKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func runFirmwareAdd(args []string) error {
	var (
		sf                     storeFlags
		product, version, file string
		keyPath                string
		maxBytes               int
	)
	fs := newFlagSet("firmware add", "Stores a firmware image for a product, signing its manifest (product, version, size, SHA-256) with the Ed25519 key.")
	sf.register(fs)
	fs.str(&product, "product", "", "product the image is for")
	fs.str(&version, "version", "", "the image's firmware version (what it says in its Hello)")
	fs.str(&file, "file", "", "the image file")
	fs.str(&keyPath, "key", "", "the private signing key file (sprout firmware keygen)")
	fs.int(&maxBytes, "max-firmware-bytes", actors.DefaultMaxFirmwareBytes, "largest image accepted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if product == "" || version == "" || file == "" || keyPath == "" {
		return fmt.Errorf("%w: --product, --version, --file and --key are required", errUsage)
	}
	key, err := readSigningKey(keyPath)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx := context.Background()
	o, closeStore, err := openOTA(ctx, &sf, maxBytes)
	if err != nil {
		return err
	}
	defer closeStore()
	// The same path as POST /api/v1/firmware and the console: ReadImage, then AddFirmware.
	data, err := o.ReadImage(f)
	if err != nil {
		return err
	}
	img, err := o.AddFirmware(ctx, product, version, data, key)
	if err != nil {
		return err
	}
	fmt.Printf("stored %s %s: %d bytes, sha256 %x\n", img.Product, img.Version, img.Size, img.SHA256)
	return nil
}

func runFirmwareList(args []string) error {
	var (
		sf      storeFlags
		product string
	)
	fs := newFlagSet("firmware list", "Lists stored firmware images, newest first.")
	sf.register(fs)
	fs.str(&product, "product", "", "only this product's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	st, _, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	fw, ok := st.(actors.FirmwareStore)
	if !ok {
		return fmt.Errorf("this store does not keep firmware")
	}
	list, err := fw.ListFirmware(ctx, product)
	if err != nil {
		return err
	}
	for _, f := range list {
		fmt.Printf("%s\t%s\t%d\t%x\n", f.Product, f.Version, f.Size, f.SHA256)
	}
	return nil
}

func openOTA(ctx context.Context, sf *storeFlags, maxBytes int) (*actors.OTA, func(), error) {
	st, _, err := sf.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	fw, ok := st.(actors.FirmwareStore)
	if !ok {
		_ = st.Close()
		return nil, nil, fmt.Errorf("this store does not keep firmware")
	}
	return actors.NewOTA(actors.OTAOptions{Store: fw, Devices: st, MaxFirmwareBytes: maxBytes}), func() { _ = st.Close() }, nil
}

func runRollout(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, rolloutUsage)
	}
	if isHelp(args[0]) {
		fmt.Print(rolloutUsage)
		return flag.ErrHelp
	}
	var (
		sf                   storeFlags
		id, product, version string
		devices, stages      string
		tag                  string
		threshold            float64
		stageTimeout         time.Duration
	)
	fs := newFlagSet("rollout "+args[0], "Starts, shows or steers a firmware rollout (docs/ota.md). Nodes pick a change up within --ota-recheck.")
	sf.register(fs)
	fs.str(&id, "id", "", "rollout id (start: default product-version-time)")
	if args[0] == "start" {
		fs.str(&product, "product", "", "product whose pots to update")
		fs.str(&version, "version", "", "firmware version to roll out (stored with sprout firmware add)")
		fs.str(&devices, "devices", "", "only these pots (comma-separated ids; default every pot of the product)")
		fs.str(&tag, "tag", "", "only the product's pots with this tag (sprout device tag); not with --devices")
		fs.dur(&stageTimeout, "stage-timeout", actors.DefaultStageTimeout, "pause the rollout when a stage is still open this long after it opened or was resumed (0: never)")
		fs.str(&stages, "stages", "1,10,100", "cumulative percents of the pots, one stage each")
		fs.Float64Var(&threshold, "failure-threshold", actors.DefaultFailureThreshold, "pause when this fraction of the open stages' pots failed")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx := context.Background()
	if args[0] == "show" || args[0] == "list" {
		return showRollouts(ctx, &sf, id)
	}
	o, closeStore, err := openOTA(ctx, &sf, 0)
	if err != nil {
		return err
	}
	defer closeStore()
	var r actors.Rollout
	switch args[0] {
	case "start":
		spec := actors.RolloutSpec{ID: id, Product: product, Version: version, FailureThreshold: threshold, Tag: tag, StageTimeout: stageTimeout}
		if stageTimeout == 0 {
			spec.StageTimeout = -1 // never
		}
		if devices != "" {
			spec.Devices = strings.Split(devices, ",")
		}
		for _, p := range strings.Split(stages, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil {
				return fmt.Errorf("%w: --stages %q: %v", errUsage, stages, err)
			}
			spec.Stages = append(spec.Stages, n)
		}
		r, err = o.StartRollout(ctx, spec)
	case "pause", "resume", "abort":
		if id == "" {
			return fmt.Errorf("%w: --id is required", errUsage)
		}
		state := map[string]actors.RolloutState{"pause": actors.RolloutPaused, "resume": actors.RolloutRunning, "abort": actors.RolloutAborted}[args[0]]
		r, err = o.SetRolloutState(ctx, id, state, "by an operator (CLI)")
	default:
		return fmt.Errorf("unknown rollout command %q (want start, show, list, pause, resume or abort)", args[0])
	}
	if err != nil {
		return err
	}
	fmt.Printf("rollout %s: %s %s, stage %d of %v, %s %s\n", r.ID, r.Product, r.Version, r.Stage+1, r.Stages, r.State, r.Reason)
	return nil
}

func showRollouts(ctx context.Context, sf *storeFlags, id string) error {
	st, _, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	fw, ok := st.(actors.FirmwareStore)
	if !ok {
		return fmt.Errorf("this store does not keep firmware")
	}
	if id == "" {
		list, err := fw.ListRollouts(ctx)
		if err != nil {
			return err
		}
		for _, r := range list {
			fmt.Printf("%s\t%s\t%s\tstage %d of %v\t%s\t%s\n", r.ID, r.Product, r.Version, r.Stage+1, r.Stages, r.State, r.Reason)
		}
		return nil
	}
	r, err := fw.GetRollout(ctx, id)
	if err != nil {
		return err
	}
	ts, err := fw.RolloutTargets(ctx, id)
	if err != nil {
		return err
	}
	out := api.RolloutOf(r)
	for _, t := range ts {
		out.Targets = append(out.Targets, api.TargetJSON{DeviceID: t.DeviceID, Stage: t.Stage, State: t.State,
			Percent: t.Percent, Reason: t.Reason, UpdatedAt: t.UpdatedAt})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
