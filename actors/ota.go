package actors

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Defaults of OTAOptions' zero fields.
const (
	DefaultMaxFirmwareBytes = 4 << 20
	DefaultChunkBytes       = 512
	// MaxChunkBytes is the most one Chunk carries on the TCP edge: the firmware's nanopb buffer (device.options)
	// and the 1024-byte frame limit leave room for it and its header.
	MaxChunkBytes = 512
	// MaxReadChunkBytes is the most ReadChunk returns: the MQTT edge, without the TCP frame
	// limit, may offer chunks up to it (docs/mqtt.md#firmware-updates).
	MaxReadChunkBytes       = 64 << 10
	DefaultFailureThreshold = 0.2
	// DefaultStageTimeout is how long a rollout's stage may stay open before the rollout pauses
	// itself (RolloutSpec.StageTimeout 0).
	DefaultStageTimeout = 24 * time.Hour
	// DefaultTimeoutCheck is how often Run looks for stages past their timeout.
	DefaultTimeoutCheck = time.Minute
)

// OTAOptions configure over-the-air updates.
type OTAOptions struct {
	Store FirmwareStore
	// Devices lists a product's pots when a rollout starts.
	Devices Store
	// MaxFirmwareBytes bounds an image (default 4 MiB).
	MaxFirmwareBytes int
	// ChunkBytes is the chunk size offered to pots (default and maximum 512).
	ChunkBytes int
	// SigningKey signs the manifests of images added without a key of their own (the API and
	// console upload, `sprout serve --firmware-key`); nil: such uploads are refused.
	SigningKey ed25519.PrivateKey
	// ChunkCacheBytes bounds the image bytes kept in memory to serve chunks (64 KiB windows, the
	// most recently used kept; default DefaultChunkCacheBytes, one image of the largest size;
	// negative: none, every chunk is read from the store).
	ChunkCacheBytes int
	// TimeoutCheck is how often Run looks for stages past their timeout (default 1 min).
	TimeoutCheck time.Duration
	// StageOpened is called when a rollout opens a stage (or resumes), so the edge can offer the
	// image to pots already connected. May be nil.
	StageOpened func()
	Clock       Clock
	Logger      *slog.Logger
}

// OTA runs firmware rollouts: it stores signed images, assigns a rollout's targets to stages,
// offers the image to the pots of open stages when they connect, records what each reports,
// opens the next stage when the open ones are done, and pauses a rollout whose failure rate
// reaches its threshold. All state is in the FirmwareStore, so a restarted node (or another
// member sharing a Postgres store) carries on where it was.
type OTA struct {
	o      OTAOptions
	mu     sync.Mutex // serialises rollout evaluation on this node
	chunks *chunkCache
}

// NewOTA returns the rollout service.
func NewOTA(o OTAOptions) *OTA {
	if o.MaxFirmwareBytes <= 0 {
		o.MaxFirmwareBytes = DefaultMaxFirmwareBytes
	}
	if o.ChunkBytes <= 0 || o.ChunkBytes > MaxChunkBytes {
		o.ChunkBytes = DefaultChunkBytes
	}
	if o.Clock == nil {
		o.Clock = RealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.TimeoutCheck <= 0 {
		o.TimeoutCheck = DefaultTimeoutCheck
	}
	if o.ChunkCacheBytes == 0 {
		o.ChunkCacheBytes = DefaultChunkCacheBytes
	}
	s := &OTA{o: o}
	if o.ChunkCacheBytes > 0 && o.Store != nil {
		s.chunks = newChunkCache(o.ChunkCacheBytes, o.Store.ReadFirmware)
	}
	return s
}

// ErrNoSigningKey is AddFirmware without a key on a service that has none (OTAOptions.SigningKey).
var ErrNoSigningKey = errors.New("this node has no firmware signing key (sprout serve --firmware-key)")

// ErrFirmwareTooLarge is an image over OTAOptions.MaxFirmwareBytes.
var ErrFirmwareTooLarge = errors.New("firmware image too large")

// CanSign reports whether AddFirmware can sign without a key of its own.
func (s *OTA) CanSign() bool { return len(s.o.SigningKey) == ed25519.PrivateKeySize }

// MaxFirmwareBytes is the largest image AddFirmware accepts.
func (s *OTA) MaxFirmwareBytes() int { return s.o.MaxFirmwareBytes }

// ReadImage reads an image of at most MaxFirmwareBytes from r: ErrFirmwareTooLarge beyond, having
// read at most one byte more. The CLI, the API and the console all read uploads with it.
func (s *OTA) ReadImage(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(s.o.MaxFirmwareBytes)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > s.o.MaxFirmwareBytes {
		return nil, fmt.Errorf("%w: more than the limit of %d bytes", ErrFirmwareTooLarge, s.o.MaxFirmwareBytes)
	}
	return data, nil
}

// SigningKeyPEMType is the PEM block type of a firmware signing key file: the 32-byte Ed25519
// seed (`sprout firmware keygen` writes one).
const SigningKeyPEMType = "SPROUT FIRMWARE SIGNING KEY"

// ParseSigningKey reads a firmware signing key file's contents.
func ParseSigningKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != SigningKeyPEMType || len(blk.Bytes) != ed25519.SeedSize {
		return nil, errors.New("not a firmware signing key (sprout firmware keygen writes one)")
	}
	return ed25519.NewKeyFromSeed(blk.Bytes), nil
}

// ErrOTAInvalid marks a request the OTA service refuses as malformed (a 400 for the API).
var ErrOTAInvalid = errors.New("invalid firmware or rollout request")

// AddFirmware signs an image's manifest with key (nil: OTAOptions.SigningKey) and stores it. It is
// the one way images are added: `sprout firmware add`, POST /api/v1/firmware and the console.
func (s *OTA) AddFirmware(ctx context.Context, product, version string, data []byte, key ed25519.PrivateKey) (FirmwareImage, error) {
	if key == nil {
		if !s.CanSign() {
			return FirmwareImage{}, ErrNoSigningKey
		}
		key = s.o.SigningKey
	}
	switch {
	case product == "" || len(product) > 64 || !utf8.ValidString(product):
		return FirmwareImage{}, fmt.Errorf("%w: product must be 1..64 bytes of UTF-8", ErrOTAInvalid)
	case version == "" || len(version) > 32 || !utf8.ValidString(version):
		return FirmwareImage{}, fmt.Errorf("%w: version must be 1..32 bytes of UTF-8", ErrOTAInvalid)
	case len(data) == 0:
		return FirmwareImage{}, fmt.Errorf("%w: empty image", ErrOTAInvalid)
	case len(data) > s.o.MaxFirmwareBytes:
		return FirmwareImage{}, fmt.Errorf("%w: image is %d bytes, more than the limit of %d", ErrFirmwareTooLarge, len(data), s.o.MaxFirmwareBytes)
	case len(key) != ed25519.PrivateKeySize:
		return FirmwareImage{}, fmt.Errorf("%w: no Ed25519 signing key", ErrOTAInvalid)
	}
	sum := sha256.Sum256(data)
	img := FirmwareImage{Product: product, Version: version, Size: len(data), SHA256: sum[:], CreatedAt: s.o.Clock.Now()}
	img.Signature = ed25519.Sign(key, Manifest(product, version, img.Size, img.SHA256))
	if err := s.o.Store.PutFirmware(ctx, img, data); err != nil {
		return FirmwareImage{}, err
	}
	return img, nil
}

// RolloutSpec is what an operator asks for.
type RolloutSpec struct {
	ID      string // empty: derived from product, version and time
	Product string
	Version string
	Devices []string // empty: every pot of the product that is not revoked (or of Tag)
	// Tag, if set, targets only the product's pots with this tag (not with Devices).
	Tag    string
	Stages []int // cumulative percents, ascending, ending at 100 (default 1, 10, 100)
	// FailureThreshold in (0, 1] (default 0.2).
	FailureThreshold float64
	// StageTimeout pauses the rollout when a stage is still open this long after it opened or
	// was resumed (0: DefaultStageTimeout, 24 h; negative: never).
	StageTimeout time.Duration
}

// StartRollout creates a running rollout; its first stage opens at once.
func (s *OTA) StartRollout(ctx context.Context, spec RolloutSpec) (Rollout, error) {
	if _, err := s.o.Store.GetFirmware(ctx, spec.Product, spec.Version); err != nil {
		return Rollout{}, err
	}
	if len(spec.Stages) == 0 {
		spec.Stages = []int{1, 10, 100}
	}
	for i, p := range spec.Stages {
		if p < 1 || p > 100 || (i > 0 && p <= spec.Stages[i-1]) {
			return Rollout{}, fmt.Errorf("%w: stages must be ascending percents in 1..100", ErrOTAInvalid)
		}
	}
	if spec.Stages[len(spec.Stages)-1] != 100 {
		spec.Stages = append(spec.Stages, 100)
	}
	if spec.FailureThreshold == 0 {
		spec.FailureThreshold = DefaultFailureThreshold
	}
	if spec.FailureThreshold < 0 || spec.FailureThreshold > 1 {
		return Rollout{}, fmt.Errorf("%w: failure threshold must be in (0, 1]", ErrOTAInvalid)
	}
	switch {
	case spec.StageTimeout == 0:
		spec.StageTimeout = DefaultStageTimeout
	case spec.StageTimeout < 0:
		spec.StageTimeout = 0
	case spec.StageTimeout < time.Minute:
		return Rollout{}, fmt.Errorf("%w: a stage timeout must be at least a minute", ErrOTAInvalid)
	}
	if spec.Tag != "" && len(spec.Devices) > 0 {
		return Rollout{}, fmt.Errorf("%w: target a tag or a list of pots, not both", ErrOTAInvalid)
	}
	now := s.o.Clock.Now()
	if spec.ID == "" {
		spec.ID = fmt.Sprintf("%s-%s-%d", spec.Product, spec.Version, now.Unix())
	}
	ids := spec.Devices
	if spec.Tag != "" {
		var err error
		if ids, err = s.taggedDevices(ctx, spec.Product, spec.Tag); err != nil {
			return Rollout{}, err
		}
		if len(ids) == 0 {
			return Rollout{}, fmt.Errorf("%w: no pots of product %q are tagged %q", ErrOTAInvalid, spec.Product, spec.Tag)
		}
	} else if len(ids) == 0 {
		var err error
		if ids, err = s.productDevices(ctx, spec.Product); err != nil {
			return Rollout{}, err
		}
	} else {
		for _, id := range ids {
			d, err := s.o.Devices.GetDevice(ctx, id)
			if err != nil {
				return Rollout{}, fmt.Errorf("device %s: %w", id, err)
			}
			if d.Product != spec.Product {
				return Rollout{}, fmt.Errorf("%w: device %s is a %q, not a %q", ErrOTAInvalid, id, d.Product, spec.Product)
			}
		}
	}
	if len(ids) == 0 {
		return Rollout{}, fmt.Errorf("%w: no pots of product %q to update", ErrOTAInvalid, spec.Product)
	}
	r := Rollout{ID: spec.ID, Product: spec.Product, Version: spec.Version, Stages: spec.Stages,
		FailureThreshold: spec.FailureThreshold, State: RolloutRunning, CreatedAt: now, UpdatedAt: now,
		Tag: spec.Tag, StageTimeout: spec.StageTimeout, StageOpenedAt: now}
	targets := assignStages(r.ID, ids, r.Stages)
	for i := range targets {
		targets[i].UpdatedAt = now
	}
	if err := s.o.Store.CreateRollout(ctx, r, targets); err != nil {
		return Rollout{}, err
	}
	s.opened()
	return r, nil
}

func (s *OTA) productDevices(ctx context.Context, product string) ([]string, error) {
	var ids []string
	after := ""
	for {
		page, err := s.o.Devices.ListDevices(ctx, ListQuery{AfterID: after, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, d := range page {
			if d.Product == product && !d.Revoked() {
				ids = append(ids, d.ID)
			}
		}
		if len(page) < 1000 {
			return ids, nil
		}
		after = page[len(page)-1].ID
	}
}

// taggedDevices lists the product's pots with the tag that are not revoked.
func (s *OTA) taggedDevices(ctx context.Context, product, tag string) ([]string, error) {
	if err := ValidTag(tag); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOTAInvalid, err)
	}
	ts, ok := s.o.Devices.(TagStore)
	if !ok {
		return nil, fmt.Errorf("%w: this store keeps no tags", ErrOTAInvalid)
	}
	tagged, err := ts.TaggedDevices(ctx, tag)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, id := range tagged {
		d, err := s.o.Devices.GetDevice(ctx, id)
		if err != nil {
			return nil, err
		}
		if d.Product == product && !d.Revoked() {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// CheckStageTimeouts pauses every running rollout whose open stage has been open longer than its
// StageTimeout, with the reason. Run calls it every TimeoutCheck; it returns the rollouts paused.
func (s *OTA) CheckStageTimeouts(ctx context.Context) ([]Rollout, error) {
	list, err := s.o.Store.ListRollouts(ctx)
	if err != nil {
		return nil, err
	}
	now := s.o.Clock.Now()
	var paused []Rollout
	for _, r := range list {
		if r.State != RolloutRunning || r.StageTimeout <= 0 || r.StageOpenedAt.IsZero() || now.Sub(r.StageOpenedAt) < r.StageTimeout {
			continue
		}
		p, ok, err := s.pauseTimedOut(ctx, r.ID, now)
		if err != nil {
			return paused, err
		}
		if ok {
			paused = append(paused, p)
		}
	}
	return paused, nil
}

func (s *OTA) pauseTimedOut(ctx context.Context, id string, now time.Time) (Rollout, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.o.Store.GetRollout(ctx, id) // again, under the lock: it may have moved on
	if err != nil || r.State != RolloutRunning || r.StageTimeout <= 0 || now.Sub(r.StageOpenedAt) < r.StageTimeout {
		return r, false, err
	}
	ts, err := s.o.Store.RolloutTargets(ctx, id)
	if err != nil {
		return r, false, err
	}
	open, done := 0, 0
	for _, t := range ts {
		if t.Stage <= r.Stage {
			open++
			if TargetDone(t.State) {
				done++
			}
		}
	}
	r.State = RolloutPaused
	r.Reason = fmt.Sprintf("stage %d%%: timed out after %s with %d of %d pots not done", r.Stages[r.Stage], r.StageTimeout, open-done, open)
	if err := s.o.Store.UpdateRollout(ctx, id, r.State, r.Stage, r.Reason, now); err != nil {
		return r, false, err
	}
	s.o.Logger.Warn("rollout paused by its stage timeout", "rollout", id, "reason", r.Reason)
	return r, true, nil
}

// Run checks stage timeouts every TimeoutCheck until ctx ends.
func (s *OTA) Run(ctx context.Context) {
	t := s.o.Clock.NewTicker(s.o.TimeoutCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
			if _, err := s.CheckStageTimeouts(ctx); err != nil && ctx.Err() == nil {
				s.o.Logger.Warn("checking rollout stage timeouts", "err", err)
			}
		}
	}
}

// assignStages orders the pots by a hash of rollout id and device id (a fair, stable draw) and
// gives the first ceil(p% of n) of them to the first stage of percent p, and so on.
func assignStages(rollout string, ids []string, stages []int) []RolloutTarget {
	type keyed struct {
		id string
		k  uint64
	}
	ks := make([]keyed, len(ids))
	for i, id := range ids {
		h := sha256.Sum256([]byte(rollout + "\x00" + id))
		ks[i] = keyed{id, binary.BigEndian.Uint64(h[:8])}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].k < ks[j].k })
	out := make([]RolloutTarget, len(ks))
	stage := 0
	for i, k := range ks {
		for stage < len(stages)-1 && i >= int(math.Ceil(float64(len(ks)*stages[stage])/100)) {
			stage++
		}
		out[i] = RolloutTarget{RolloutID: rollout, DeviceID: k.id, Stage: stage, State: TargetPending}
	}
	return out
}

// SetRolloutState pauses, resumes or aborts a rollout (by an operator).
func (s *OTA) SetRolloutState(ctx context.Context, id string, state RolloutState, reason string) (Rollout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.o.Store.GetRollout(ctx, id)
	if err != nil {
		return Rollout{}, err
	}
	switch {
	case r.State == RolloutCompleted || r.State == RolloutAborted:
		return r, fmt.Errorf("%w: rollout %s is %s", ErrOTAInvalid, id, r.State)
	case state != RolloutPaused && state != RolloutRunning && state != RolloutAborted:
		return r, fmt.Errorf("%w: cannot set a rollout %s", ErrOTAInvalid, state)
	}
	if err := s.o.Store.UpdateRollout(ctx, id, state, r.Stage, reason, s.o.Clock.Now()); err != nil {
		return Rollout{}, err
	}
	r.State, r.Reason = state, reason
	if state == RolloutRunning {
		// A resumed rollout may be done with its stage already. The failures that paused it do
		// not pause it again at once: the next failure does, while the rate stays over the threshold.
		if r, err = s.evaluateLocked(ctx, id, false); err != nil {
			return r, err
		}
		s.opened()
	}
	return r, nil
}

func (s *OTA) opened() {
	if s.o.StageOpened != nil {
		s.o.StageOpened()
	}
}

// OnConnect is called when a pot has been welcomed, with the firmware version from its Hello.
// It settles what the connection says about an update in progress (the pot came back on the new
// version: running; on the old one after rebooting into the new: rolled back) and returns the
// offer to send, or nil.
func (s *OTA) OnConnect(ctx context.Context, deviceID, firmware string) (*devicepb.UpdateOffer, error) {
	r, t, ok, err := s.o.Store.DeviceRollout(ctx, deviceID)
	if err != nil || !ok {
		return nil, err
	}
	if firmware == r.Version {
		if t.State != TargetRunning {
			return nil, s.setTarget(ctx, r, t, TargetRunning, 100, "")
		}
		return nil, nil
	}
	if t.State == TargetRebooting {
		return nil, s.setTarget(ctx, r, t, TargetRolledBack, 0, "came back running "+firmware)
	}
	return s.offer(ctx, r, t)
}

func (s *OTA) offer(ctx context.Context, r Rollout, t RolloutTarget) (*devicepb.UpdateOffer, error) {
	if r.State != RolloutRunning || t.Stage > r.Stage || TargetDone(t.State) {
		return nil, nil
	}
	img, err := s.o.Store.GetFirmware(ctx, r.Product, r.Version)
	if err != nil {
		return nil, err
	}
	if t.State == TargetPending {
		if err := s.setTarget(ctx, r, t, TargetOffered, 0, ""); err != nil {
			return nil, err
		}
	}
	return &devicepb.UpdateOffer{Version: img.Version, Product: img.Product, Size: uint32(img.Size),
		Sha256: img.SHA256, Signature: img.Signature, ChunkSize: uint32(s.o.ChunkBytes)}, nil
}

// Pending returns the offer for a connected pot that has none yet (a stage opened, a rollout
// resumed), or nil.
func (s *OTA) Pending(ctx context.Context, deviceID, firmware string) (*devicepb.UpdateOffer, error) {
	r, t, ok, err := s.o.Store.DeviceRollout(ctx, deviceID)
	if err != nil || !ok || firmware == r.Version || t.State != TargetPending {
		return nil, err
	}
	return s.offer(ctx, r, t)
}

// ReadChunk returns the bytes a ChunkRequest asks for, at most MaxReadChunkBytes (each edge
// bounds a request by the chunk_size it offered).
func (s *OTA) ReadChunk(ctx context.Context, sha []byte, off, n int) ([]byte, error) {
	if n > MaxReadChunkBytes {
		n = MaxReadChunkBytes
	}
	if s.chunks == nil {
		return s.o.Store.ReadFirmware(ctx, sha, off, n)
	}
	return s.chunks.get(ctx, sha, off, n)
}

// Progress records a pot's UpdateProgress.
func (s *OTA) Progress(ctx context.Context, deviceID string, p *devicepb.UpdateProgress) error {
	r, t, ok, err := s.o.Store.DeviceRollout(ctx, deviceID)
	if err != nil || !ok {
		return err
	}
	img, err := s.o.Store.GetFirmware(ctx, r.Product, r.Version)
	if err != nil {
		return err
	}
	if !bytes.Equal(p.Sha256, img.SHA256) {
		s.o.Logger.Info("update progress for another image; ignored", "device", deviceID, "sha256", hex.EncodeToString(p.Sha256))
		return nil
	}
	if TargetDone(t.State) && p.State != devicepb.UpdateState_UPDATE_STATE_ROLLED_BACK {
		return nil
	}
	pct := int(min(p.Percent, 100))
	switch p.State {
	case devicepb.UpdateState_UPDATE_STATE_DOWNLOADING:
		return s.setTarget(ctx, r, t, TargetDownloading, pct, "")
	case devicepb.UpdateState_UPDATE_STATE_VERIFYING:
		return s.setTarget(ctx, r, t, TargetVerifying, 100, "")
	case devicepb.UpdateState_UPDATE_STATE_REBOOTING:
		return s.setTarget(ctx, r, t, TargetRebooting, 100, "")
	case devicepb.UpdateState_UPDATE_STATE_RUNNING:
		return s.setTarget(ctx, r, t, TargetRunning, 100, "")
	case devicepb.UpdateState_UPDATE_STATE_FAILED:
		return s.setTarget(ctx, r, t, TargetFailed, t.Percent, p.Reason)
	case devicepb.UpdateState_UPDATE_STATE_ROLLED_BACK:
		return s.setTarget(ctx, r, t, TargetRolledBack, 0, p.Reason)
	case devicepb.UpdateState_UPDATE_STATE_DEFERRED:
		return s.setTarget(ctx, r, t, TargetDeferred, t.Percent, p.Reason)
	}
	return nil
}

// targetRank orders target states: a report never moves a pot back (a late frame from the
// connection a pot left as it rebooted must not undo what its next connection said). Deferred
// ranks with downloading: a pot pauses a download when its margins run short, and goes on.
var targetRank = map[string]int{TargetPending: 0, TargetOffered: 1, TargetDeferred: 2, TargetDownloading: 2,
	TargetVerifying: 3, TargetRebooting: 4, TargetRunning: 5, TargetFailed: 5, TargetRolledBack: 6}

func (s *OTA) setTarget(ctx context.Context, r Rollout, t RolloutTarget, state string, pct int, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Read again under the lock: another connection of the pot may have moved it on.
	cur, err := s.o.Store.GetTarget(ctx, t.RolloutID, t.DeviceID)
	if err != nil {
		return err
	}
	t = cur
	if targetRank[state] < targetRank[t.State] || (TargetDone(t.State) && state != TargetRolledBack) {
		return nil
	}
	was := t.State
	t.State, t.Percent, t.Reason, t.UpdatedAt = state, pct, reason, s.o.Clock.Now()
	if err := s.o.Store.SetTargetState(ctx, t); err != nil {
		return err
	}
	if TargetDone(state) && !TargetDone(was) || state == TargetRolledBack && was != TargetRolledBack {
		_, err := s.evaluateLocked(ctx, r.ID, true)
		return err
	}
	return nil
}

// evaluateLocked pauses a running rollout whose failure rate in its open stages has reached the
// threshold, or opens its next stage (completes it) when every target of the open ones is done.
func (s *OTA) evaluateLocked(ctx context.Context, id string, failures bool) (Rollout, error) {
	r, err := s.o.Store.GetRollout(ctx, id)
	if err != nil || r.State != RolloutRunning {
		return r, err
	}
	ts, err := s.o.Store.RolloutTargets(ctx, id)
	if err != nil {
		return r, err
	}
	for {
		open, done, failed := 0, 0, 0
		for _, t := range ts {
			if t.Stage > r.Stage {
				continue
			}
			open++
			if TargetDone(t.State) {
				done++
			}
			if TargetFailedState(t.State) {
				failed++
			}
		}
		switch {
		case failures && open > 0 && float64(failed)/float64(open) >= r.FailureThreshold:
			r.State = RolloutPaused
			r.Reason = fmt.Sprintf("stage %d%%: %d of %d pots failed, threshold %.0f%%", r.Stages[r.Stage], failed, open, r.FailureThreshold*100)
			s.o.Logger.Warn("rollout paused by its failure threshold", "rollout", id, "reason", r.Reason)
		case done < open:
			return r, nil
		case r.Stage+1 < len(r.Stages):
			// The next stage opens; it may hold no pot not already done (a small fleet), so look again.
			r.Stage++
			r.Reason = ""
			if err := s.o.Store.UpdateRollout(ctx, id, r.State, r.Stage, r.Reason, s.o.Clock.Now()); err != nil {
				return r, err
			}
			defer s.opened()
			continue
		default:
			r.State = RolloutCompleted
			r.Reason = fmt.Sprintf("%d of %d pots updated", open-failed, open)
		}
		return r, s.o.Store.UpdateRollout(ctx, id, r.State, r.Stage, r.Reason, s.o.Clock.Now())
	}
}
