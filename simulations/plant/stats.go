package plant

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Stats counts what one plant, or a whole fleet sharing one Stats, did on the wire. All fields
// are safe to read while plants run.
type Stats struct {
	Readings      atomic.Uint64 // Telemetry frames created (scheduled, READ_NOW, flood)
	Events        atomic.Uint64 // Event frames created (tank empty, pump fault, refilled)
	FramesSent    atomic.Uint64 // Telemetry and Event frames written, resends included
	FramesResent  atomic.Uint64 // frames written again on a later connection
	FramesAcked   atomic.Uint64 // frames acknowledged for the first time
	DuplicateAcks atomic.Uint64 // acks for frames already acknowledged, or no longer in the ring
	// FramesAckedByWelcome counts ring entries dropped because Welcome.last_seq covered them.
	FramesAckedByWelcome atomic.Uint64
	FramesDropped        atomic.Uint64 // oldest unacked frames dropped because the ring was full

	ConnectAttempts atomic.Uint64 // dials started
	Connects        atomic.Uint64 // handshakes completed (Welcome received)
	Reconnects      atomic.Uint64 // Welcomes after a plant's first
	Connected       atomic.Int64  // sessions open now
	ConnectedMax    atomic.Int64  // highest Connected seen
	PingsSent       atomic.Uint64
	PongsSent       atomic.Uint64

	CommandsReceived   atomic.Uint64
	CommandsRepeated   atomic.Uint64 // a known command id came again and got its earlier result
	commandsByStatus   [5]atomic.Uint64
	commandResultsSent atomic.Uint64

	AckLatency Histogram // from writing a frame to reading its Ack, first ack only

	// Firmware updates (docs/ota.md), for plants with Config.OTAKey.
	OTAOffers        atomic.Uint64 // UpdateOffers received
	OTAAccepted      atomic.Uint64 // offers that passed the checks (a resume counts again)
	OTAChunkRequests atomic.Uint64
	OTAChunks        atomic.Uint64 // chunks written to the slot
	OTABytes         atomic.Uint64
	OTAProgressSent  atomic.Uint64 // UpdateProgress frames written
	OTAFailed        atomic.Uint64 // FAILED said (bad signature, product, size, chunk, sha256 mismatch, no updates)
	OTADropped       atomic.Uint64 // downloads dropped on an empty Chunk
	OTAReboots       atomic.Uint64 // verified images booted
	OTAConfirmed     atomic.Uint64 // RUNNING said after the new image's first Welcome

	errMu  sync.Mutex
	errors map[string]uint64
}

// CommandsDone counts commands that finished with the given status (each command id once).
func (s *Stats) CommandsDone(st devicepb.CommandStatus) uint64 {
	if int(st) < 0 || int(st) >= len(s.commandsByStatus) {
		return 0
	}
	return s.commandsByStatus[st].Load()
}

func (s *Stats) countCommand(st devicepb.CommandStatus) {
	if int(st) >= 0 && int(st) < len(s.commandsByStatus) {
		s.commandsByStatus[st].Add(1)
	}
}

// Error counts one failure of the given kind ("dial", "handshake", "closed: AUTH_FAILED", ...).
func (s *Stats) Error(kind string) {
	s.errMu.Lock()
	if s.errors == nil {
		s.errors = make(map[string]uint64)
	}
	s.errors[kind]++
	s.errMu.Unlock()
}

func (s *Stats) connected() {
	n := s.Connected.Add(1)
	for {
		m := s.ConnectedMax.Load()
		if n <= m || s.ConnectedMax.CompareAndSwap(m, n) {
			return
		}
	}
}

// Snapshot is a plain copy of Stats, for reports and JSON.
type Snapshot struct {
	Readings             uint64            `json:"readings"`
	Events               uint64            `json:"events"`
	FramesSent           uint64            `json:"frames_sent"`
	FramesResent         uint64            `json:"frames_resent"`
	FramesAcked          uint64            `json:"frames_acked"`
	DuplicateAcks        uint64            `json:"duplicate_acks"`
	FramesAckedByWelcome uint64            `json:"frames_acked_by_welcome"`
	FramesDropped        uint64            `json:"frames_dropped"`
	ConnectAttempts      uint64            `json:"connect_attempts"`
	Connects             uint64            `json:"connects"`
	Reconnects           uint64            `json:"reconnects"`
	Connected            int64             `json:"connected"`
	ConnectedMax         int64             `json:"connected_max"`
	PingsSent            uint64            `json:"pings_sent"`
	PongsSent            uint64            `json:"pongs_sent"`
	CommandsReceived     uint64            `json:"commands_received"`
	CommandsRepeated     uint64            `json:"commands_repeated"`
	Commands             map[string]uint64 `json:"commands"` // by status name: DONE, FAILED, REJECTED, BUSY
	ResultsSent          uint64            `json:"results_sent"`
	Errors               map[string]uint64 `json:"errors"`
	AckLatency           Latency           `json:"ack_latency"`
	OTAOffers            uint64            `json:"ota_offers,omitempty"`
	OTAChunks            uint64            `json:"ota_chunks,omitempty"`
	OTABytes             uint64            `json:"ota_bytes,omitempty"`
	OTAFailed            uint64            `json:"ota_failed,omitempty"`
	OTAReboots           uint64            `json:"ota_reboots,omitempty"`
	OTAConfirmed         uint64            `json:"ota_confirmed,omitempty"`
}

// Snapshot copies the counters. Counters move while it runs, so totals are only roughly consistent.
func (s *Stats) Snapshot() Snapshot {
	sn := Snapshot{
		Readings:             s.Readings.Load(),
		Events:               s.Events.Load(),
		FramesSent:           s.FramesSent.Load(),
		FramesResent:         s.FramesResent.Load(),
		FramesAcked:          s.FramesAcked.Load(),
		DuplicateAcks:        s.DuplicateAcks.Load(),
		FramesAckedByWelcome: s.FramesAckedByWelcome.Load(),
		FramesDropped:        s.FramesDropped.Load(),
		ConnectAttempts:      s.ConnectAttempts.Load(),
		Connects:             s.Connects.Load(),
		Reconnects:           s.Reconnects.Load(),
		Connected:            s.Connected.Load(),
		ConnectedMax:         s.ConnectedMax.Load(),
		PingsSent:            s.PingsSent.Load(),
		PongsSent:            s.PongsSent.Load(),
		CommandsReceived:     s.CommandsReceived.Load(),
		CommandsRepeated:     s.CommandsRepeated.Load(),
		Commands:             map[string]uint64{},
		ResultsSent:          s.commandResultsSent.Load(),
		Errors:               map[string]uint64{},
		AckLatency:           s.AckLatency.Latency(),
		OTAOffers:            s.OTAOffers.Load(),
		OTAChunks:            s.OTAChunks.Load(),
		OTABytes:             s.OTABytes.Load(),
		OTAFailed:            s.OTAFailed.Load(),
		OTAReboots:           s.OTAReboots.Load(),
		OTAConfirmed:         s.OTAConfirmed.Load(),
	}
	for st := devicepb.CommandStatus_COMMAND_STATUS_DONE; int(st) < len(s.commandsByStatus); st++ {
		if n := s.commandsByStatus[st].Load(); n > 0 {
			sn.Commands[StatusName(st)] = n
		}
	}
	s.errMu.Lock()
	for k, v := range s.errors {
		sn.Errors[k] = v
	}
	s.errMu.Unlock()
	return sn
}

// StatusName is a command status without its enum prefix: "DONE", "BUSY".
func StatusName(st devicepb.CommandStatus) string {
	const prefix = "COMMAND_STATUS_"
	n := st.String()
	if len(n) > len(prefix) && n[:len(prefix)] == prefix {
		return n[len(prefix):]
	}
	return n
}

// ReasonName is a close reason without its enum prefix: "AUTH_FAILED".
func ReasonName(r devicepb.CloseReason) string {
	const prefix = "CLOSE_REASON_"
	n := r.String()
	if len(n) > len(prefix) && n[:len(prefix)] == prefix {
		return n[len(prefix):]
	}
	return n
}

// Histogram is a log-linear latency histogram in the spirit of HdrHistogram: 32 sub-buckets per
// power of two (about 3 % relative error) from 1 ns to about 18 minutes, lock-free to record.
// The zero value is ready to use; it costs about 10 KB, so a fleet shares one.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histMaxBits = 40 // values are clamped below 2^40 ns
	histBuckets = (histMaxBits - histSubBits + 1) * histSub
)

func histIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	u := uint64(v)
	msb := bits.Len64(u) - 1
	if msb < histSubBits {
		return int(u)
	}
	shift := msb - histSubBits
	return (shift+1)*histSub + int(u>>shift) - histSub
}

// histUpper is the largest value that falls in bucket i.
func histUpper(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	m := int64(i%histSub + histSub)
	return (m+1)<<shift - 1
}

// Record adds one sample.
func (h *Histogram) Record(d time.Duration) {
	h.counts[histIndex(int64(d))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Count is the number of samples recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Quantile returns the value at or below which a fraction q of the samples lie (upper bucket bound,
// never above the largest sample). It returns 0 with no samples.
func (h *Histogram) Quantile(q float64) time.Duration {
	return quantile(h.counts[:], h.n.Load(), h.max.Load(), q)
}

func quantile(counts []atomic.Uint64, n uint64, max int64, q float64) time.Duration {
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range counts {
		seen += counts[i].Load()
		if seen >= rank {
			u := histUpper(i)
			if u > max {
				u = max
			}
			return time.Duration(u)
		}
	}
	return time.Duration(max)
}

// Latency summarises a Histogram.
type Latency struct {
	Count uint64        `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Latency computes the usual percentiles.
func (h *Histogram) Latency() Latency {
	return Latency{
		Count: h.Count(),
		P50:   h.Quantile(0.50),
		P90:   h.Quantile(0.90),
		P99:   h.Quantile(0.99),
		P999:  h.Quantile(0.999),
		Max:   time.Duration(h.max.Load()),
	}
}

// HistogramMark is a Histogram's counts at one moment, for the latency of what was recorded
// after it (Histogram.Since): a phase of a run that shares one Histogram with the others.
type HistogramMark struct {
	counts [histBuckets]uint64
	n      uint64
}

// Mark copies the counts now.
func (h *Histogram) Mark() *HistogramMark {
	m := &HistogramMark{n: h.n.Load()}
	for i := range h.counts {
		m.counts[i] = h.counts[i].Load()
	}
	return m
}

// Since summarises the samples recorded after from was taken (all of them if from is nil). Max is
// the upper bound of the highest bucket those samples fell in (at most the largest sample ever).
func (h *Histogram) Since(from *HistogramMark) Latency {
	var d [histBuckets]uint64
	var n uint64
	top := -1
	for i := range h.counts {
		d[i] = h.counts[i].Load()
		if from != nil {
			d[i] -= min(d[i], from.counts[i])
		}
		n += d[i]
		if d[i] > 0 {
			top = i
		}
	}
	if n == 0 {
		return Latency{}
	}
	hmax := h.max.Load()
	mx := min(histUpper(top), hmax)
	q := func(q float64) time.Duration {
		rank := max(uint64(q*float64(n)+0.5), 1)
		var seen uint64
		for i := range d {
			seen += d[i]
			if seen >= rank {
				return time.Duration(min(histUpper(i), mx))
			}
		}
		return time.Duration(mx)
	}
	return Latency{Count: n, P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: time.Duration(mx)}
}
