package mqtt

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

// encoding is how a device writes its payloads; commands to it follow the one it last used.
type encoding uint8

const (
	encJSON     encoding = iota // the default before a device has published
	encProtobuf                 // the devicepb messages, no length prefix
)

// detect takes the MQTT 5 content type when there is one, else the first byte: '{' is JSON.
func detect(pk packets.Packet) encoding {
	switch ct := strings.ToLower(pk.Properties.ContentType); {
	case strings.Contains(ct, "json"):
		return encJSON
	case strings.Contains(ct, "protobuf"), ct == "application/octet-stream":
		return encProtobuf
	}
	if len(pk.Payload) > 0 && pk.Payload[0] == '{' {
		return encJSON
	}
	return encProtobuf
}

// decodeJSON is strict: one object, no unknown fields, nothing after it.
func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

type telemetryJSON struct {
	Seq             *uint64 `json:"seq"`
	DeviceTimeMs    int64   `json:"device_time_ms"`
	SoilMoisturePct float32 `json:"soil_moisture_pct"`
	TemperatureC    float32 `json:"temperature_c"`
	TankLevelPct    float32 `json:"tank_level_pct"`
	SupplyMv        uint32  `json:"supply_mv"`
}

func decodeTelemetry(b []byte, enc encoding) (*devicepb.Telemetry, error) {
	if enc == encProtobuf {
		t := &devicepb.Telemetry{}
		return t, proto.Unmarshal(b, t)
	}
	var j telemetryJSON
	if err := decodeJSON(b, &j); err != nil {
		return nil, err
	}
	if j.Seq == nil {
		return nil, errors.New("telemetry without seq")
	}
	return &devicepb.Telemetry{Seq: *j.Seq, DeviceTimeMs: j.DeviceTimeMs, SoilMoisturePct: j.SoilMoisturePct,
		TemperatureC: j.TemperatureC, TankLevelPct: j.TankLevelPct, SupplyMv: j.SupplyMv}, nil
}

type eventJSON struct {
	Seq          *uint64 `json:"seq"`
	DeviceTimeMs int64   `json:"device_time_ms"`
	Kind         string  `json:"kind"`
	Detail       string  `json:"detail"`
}

func decodeEvent(b []byte, enc encoding) (*devicepb.Event, error) {
	if enc == encProtobuf {
		e := &devicepb.Event{}
		return e, proto.Unmarshal(b, e)
	}
	var j eventJSON
	if err := decodeJSON(b, &j); err != nil {
		return nil, err
	}
	if j.Seq == nil {
		return nil, errors.New("event without seq")
	}
	k, ok := enumValue(devicepb.EventKind_value, "EVENT_KIND_", j.Kind)
	if !ok || k == 0 {
		return nil, fmt.Errorf("unknown event kind %q", j.Kind)
	}
	return &devicepb.Event{Seq: *j.Seq, DeviceTimeMs: j.DeviceTimeMs, Kind: devicepb.EventKind(k), Detail: j.Detail}, nil
}

type resultJSON struct {
	CommandID string `json:"command_id"`
	Status    string `json:"status"`
	Detail    string `json:"detail"`
	WateredMl uint32 `json:"watered_ml"`
}

func decodeResult(b []byte, enc encoding) (*devicepb.CommandResult, error) {
	if enc == encProtobuf {
		r := &devicepb.CommandResult{}
		return r, proto.Unmarshal(b, r)
	}
	var j resultJSON
	if err := decodeJSON(b, &j); err != nil {
		return nil, err
	}
	st, ok := enumValue(devicepb.CommandStatus_value, "COMMAND_STATUS_", j.Status)
	if !ok || st == 0 || j.CommandID == "" {
		return nil, fmt.Errorf("a result needs command_id and a status (DONE, FAILED, REJECTED, BUSY), got %q", j.Status)
	}
	return &devicepb.CommandResult{CommandId: j.CommandID, Status: devicepb.CommandStatus(st), Detail: j.Detail, WateredMl: j.WateredMl}, nil
}

// enumValue accepts the short name (DONE) or the full one (COMMAND_STATUS_DONE).
func enumValue(values map[string]int32, prefix, name string) (int32, bool) {
	if v, ok := values[prefix+name]; ok {
		return v, true
	}
	v, ok := values[name]
	if ok && !strings.HasPrefix(name, prefix) {
		return 0, false
	}
	return v, ok
}

type thresholdsJSON struct {
	SoilMoistureMinPct float32 `json:"soil_moisture_min_pct"`
	TemperatureMaxC    float32 `json:"temperature_max_c"`
	TankEmptyPct       float32 `json:"tank_empty_pct"`
	HysteresisPct      float32 `json:"hysteresis_pct"`
	HysteresisC        float32 `json:"hysteresis_c"`
}

type configJSON struct {
	ReportIntervalS    uint32          `json:"report_interval_s"`
	HeartbeatIntervalS uint32          `json:"heartbeat_interval_s"`
	MaxWaterMs         uint32          `json:"max_water_ms"`
	MinWaterIntervalS  uint32          `json:"min_water_interval_s"`
	Thresholds         *thresholdsJSON `json:"thresholds,omitempty"`
}

func configToJSON(c *devicepb.Config) *configJSON {
	if c == nil {
		return nil
	}
	j := &configJSON{ReportIntervalS: c.ReportIntervalS, HeartbeatIntervalS: c.HeartbeatIntervalS,
		MaxWaterMs: c.MaxWaterMs, MinWaterIntervalS: c.MinWaterIntervalS}
	if t := c.Thresholds; t != nil {
		j.Thresholds = &thresholdsJSON{SoilMoistureMinPct: t.SoilMoistureMinPct, TemperatureMaxC: t.TemperatureMaxC,
			TankEmptyPct: t.TankEmptyPct, HysteresisPct: t.HysteresisPct, HysteresisC: t.HysteresisC}
	}
	return j
}

type commandJSON struct {
	CommandID  string      `json:"command_id"`
	Kind       string      `json:"kind"`
	WaterMs    uint32      `json:"water_ms,omitempty"`
	Config     *configJSON `json:"config,omitempty"`
	DeadlineMs uint32      `json:"deadline_ms"`
}

func encodeCommand(c *devicepb.Command, enc encoding) ([]byte, error) {
	if enc == encProtobuf {
		return proto.Marshal(c)
	}
	return json.Marshal(commandJSON{CommandID: c.CommandId, Kind: strings.TrimPrefix(c.Kind.String(), "COMMAND_KIND_"),
		WaterMs: c.WaterMs, Config: configToJSON(c.Config), DeadlineMs: c.DeadlineMs})
}

type welcomeJSON struct {
	SessionID    string      `json:"session_id"`
	ServerTimeMs int64       `json:"server_time_ms"`
	Config       *configJSON `json:"config,omitempty"`
	LastSeq      uint64      `json:"last_seq"`
}

// encodeWelcome is JSON: a device reads it before it has said which encoding it speaks.
func encodeWelcome(w *devicepb.Welcome) ([]byte, error) {
	return json.Marshal(welcomeJSON{SessionID: w.SessionId, ServerTimeMs: w.ServerTimeMs, Config: configToJSON(w.Config), LastSeq: w.LastSeq})
}

// Firmware updates over the air (docs/mqtt.md#firmware-updates). In JSON, hashes and the
// signature are lowercase hex (the pot compares them as text) and chunk data is standard base64.

type offerJSON struct {
	Product   string `json:"product"`
	Version   string `json:"version"`
	Size      uint32 `json:"size"`
	SHA256    string `json:"sha256"`
	Signature string `json:"signature"`
	ChunkSize uint32 `json:"chunk_size"`
}

func encodeOffer(o *devicepb.UpdateOffer, enc encoding) ([]byte, error) {
	if enc == encProtobuf {
		return proto.Marshal(o)
	}
	return json.Marshal(offerJSON{Product: o.Product, Version: o.Version, Size: o.Size, SHA256: hex.EncodeToString(o.Sha256),
		Signature: hex.EncodeToString(o.Signature), ChunkSize: o.ChunkSize})
}

type chunkJSON struct {
	SHA256 string `json:"sha256"`
	Offset uint32 `json:"offset"`
	Data   []byte `json:"data"` // base64
}

func encodeChunk(c *devicepb.Chunk, enc encoding) ([]byte, error) {
	if enc == encProtobuf {
		return proto.Marshal(c)
	}
	data := c.Data
	if data == nil {
		data = []byte{} // "" rather than null: an empty chunk
	}
	return json.Marshal(chunkJSON{SHA256: hex.EncodeToString(c.Sha256), Offset: c.Offset, Data: data})
}

type chunkRequestJSON struct {
	SHA256 string  `json:"sha256"`
	Offset *uint32 `json:"offset"`
	Length *uint32 `json:"length"`
}

func decodeChunkRequest(b []byte, enc encoding) (*devicepb.ChunkRequest, error) {
	if enc == encProtobuf {
		r := &devicepb.ChunkRequest{}
		return r, proto.Unmarshal(b, r)
	}
	var j chunkRequestJSON
	if err := decodeJSON(b, &j); err != nil {
		return nil, err
	}
	sha, err := hexField("sha256", j.SHA256, 32)
	if err != nil {
		return nil, err
	}
	if j.Offset == nil || j.Length == nil {
		return nil, errors.New("a chunk request needs sha256, offset and length")
	}
	return &devicepb.ChunkRequest{Sha256: sha, Offset: *j.Offset, Length: *j.Length}, nil
}

type progressJSON struct {
	SHA256      string `json:"sha256"`
	State       string `json:"state"`
	Percent     uint32 `json:"percent"`
	Reason      string `json:"reason"`
	Version     string `json:"version"`
	RetryAfterS uint32 `json:"retry_after_s"`
}

func decodeProgress(b []byte, enc encoding) (*devicepb.UpdateProgress, error) {
	if enc == encProtobuf {
		p := &devicepb.UpdateProgress{}
		return p, proto.Unmarshal(b, p)
	}
	var j progressJSON
	if err := decodeJSON(b, &j); err != nil {
		return nil, err
	}
	sha, err := hexField("sha256", j.SHA256, 32)
	if err != nil {
		return nil, err
	}
	st, ok := enumValue(devicepb.UpdateState_value, "UPDATE_STATE_", j.State)
	if !ok || st == 0 {
		return nil, fmt.Errorf("unknown update state %q (DOWNLOADING, VERIFYING, REBOOTING, RUNNING, FAILED, ROLLED_BACK, DEFERRED)", j.State)
	}
	return &devicepb.UpdateProgress{Sha256: sha, State: devicepb.UpdateState(st), Percent: j.Percent, Reason: j.Reason,
		Version: j.Version, RetryAfterS: j.RetryAfterS}, nil
}

// hexField decodes a lowercase hex field of exactly n bytes.
func hexField(name, s string, n int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n || s != strings.ToLower(s) {
		return nil, fmt.Errorf("%s must be %d lowercase hex digits", name, 2*n)
	}
	return b, nil
}
