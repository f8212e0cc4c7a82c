package sqlite

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// The encoding of readings, in reading_log rows and reading_blobs:
//
//	readings := uvarint(n) reading*n
//	reading  := varint(seq - previous seq) varint(received_at - previous received_at)
//	            (0x00 | 0x01 varint(device_time - received_at))
//	            float32 bits (little endian) of soil moisture, temperature, tank level
//	            uvarint(supply_mv)
//
// Times are µs since the epoch; the first reading's "previous" values are 0. Metrics keep their
// bits, so NaN (no value) and ±Inf come back as they were. A log row is
//
//	log := uvarint(devices) (uvarint(len(id)) id readings)*devices
//
// About 20 bytes a reading once sorted by time (seq and time deltas of a byte or two).

var errCorrupt = errors.New("store/sqlite: corrupt reading encoding")

func appendReadings(buf []byte, rs []actors.Reading) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(rs)))
	var ps, pt int64
	for i := range rs {
		r := &rs[i]
		seq, rt := int64(r.Seq), store.Micros(r.ReceivedAt)
		buf = binary.AppendVarint(buf, seq-ps)
		buf = binary.AppendVarint(buf, rt-pt)
		ps, pt = seq, rt
		if r.DeviceTime.IsZero() {
			buf = append(buf, 0)
		} else {
			buf = append(buf, 1)
			buf = binary.AppendVarint(buf, store.Micros(r.DeviceTime)-rt)
		}
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(r.SoilMoisture))
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(r.Temperature))
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(r.TankLevel))
		buf = binary.AppendUvarint(buf, uint64(r.SupplyMillivolt))
	}
	return buf
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.err = errCorrupt
		d.b = nil
		return make([]byte, max(n, 0))
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) f32() float32 { return math.Float32frombits(binary.LittleEndian.Uint32(d.bytes(4))) }

// readings decodes one readings sequence, appending to out.
func (d *decoder) readings(out []actors.Reading) []actors.Reading {
	n := d.uvarint()
	if n > uint64(len(d.b)) { // every reading takes at least 15 bytes
		d.err = errCorrupt
		return out
	}
	out = slices.Grow(out, int(n))
	var ps, pt int64
	for range n {
		if d.err != nil {
			return out
		}
		var r actors.Reading
		ps += d.varint()
		pt += d.varint()
		r.Seq, r.ReceivedAt = uint64(ps), store.FromMicros(pt)
		switch d.bytes(1)[0] {
		case 0:
		case 1:
			r.DeviceTime = store.FromMicros(pt + d.varint())
		default:
			d.err = errCorrupt
		}
		r.SoilMoisture, r.Temperature, r.TankLevel = d.f32(), d.f32(), d.f32()
		r.SupplyMillivolt = uint32(d.uvarint())
		out = append(out, r)
	}
	return out
}

func decodeReadings(b []byte) ([]actors.Reading, error) {
	d := decoder{b: b}
	out := d.readings(nil)
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return out, d.err
}

// logGroup is one device's readings in a log row.
type logGroup struct {
	device   string
	readings []actors.Reading
}

func encodeLog(buf []byte, groups []logGroup) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(groups)))
	for _, g := range groups {
		buf = binary.AppendUvarint(buf, uint64(len(g.device)))
		buf = append(buf, g.device...)
		buf = appendReadings(buf, g.readings)
	}
	return buf
}

func decodeLog(b []byte) ([]logGroup, error) {
	d := decoder{b: b}
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return nil, errCorrupt
	}
	out := make([]logGroup, 0, n)
	for range n {
		id := string(d.bytes(int(d.uvarint())))
		rs := d.readings(nil)
		if d.err != nil {
			return nil, d.err
		}
		out = append(out, logGroup{id, rs})
	}
	if len(d.b) != 0 {
		return nil, errCorrupt
	}
	return out, nil
}

// byTime orders readings as Readings returns them: by received_at, then seq.
func byTime(a, b actors.Reading) int {
	if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
		return c
	}
	switch {
	case a.Seq < b.Seq:
		return -1
	case a.Seq > b.Seq:
		return 1
	}
	return 0
}

// agg is the partial aggregate of a set of readings: their count and, per metric (moisture,
// temperature, tank), the count, min, sum and max of the non-NaN values.
type agg struct {
	count       int64
	n           [3]int64
	lo, sum, hi [3]float64
}

func metrics(r *actors.Reading) [3]float32 {
	return [3]float32{r.SoilMoisture, r.Temperature, r.TankLevel}
}

func (a *agg) add(r *actors.Reading) {
	a.count++
	for i, f := range metrics(r) {
		if f != f {
			continue
		}
		v := float64(f)
		if a.n[i] == 0 || v < a.lo[i] {
			a.lo[i] = v
		}
		if a.n[i] == 0 || v > a.hi[i] {
			a.hi[i] = v
		}
		a.n[i]++
		a.sum[i] += v
	}
}

func (a *agg) merge(b *agg) {
	a.count += b.count
	for i := range 3 {
		if b.n[i] == 0 {
			continue
		}
		if a.n[i] == 0 || b.lo[i] < a.lo[i] {
			a.lo[i] = b.lo[i]
		}
		if a.n[i] == 0 || b.hi[i] > a.hi[i] {
			a.hi[i] = b.hi[i]
		}
		a.n[i] += b.n[i]
		a.sum[i] += b.sum[i]
	}
}

// bucket turns a into an actors.Bucket starting at start; a metric without values is NaN.
func (a *agg) bucket(start time.Time) actors.Bucket {
	nan := float32(math.NaN())
	var v [9]float32
	for i := range 3 {
		if a.n[i] == 0 {
			v[3*i], v[3*i+1], v[3*i+2] = nan, nan, nan
			continue
		}
		v[3*i], v[3*i+1], v[3*i+2] = float32(a.lo[i]), float32(a.sum[i]/float64(a.n[i])), float32(a.hi[i])
	}
	return actors.Bucket{Start: start, Count: int(a.count),
		MoistureMin: v[0], MoistureAvg: v[1], MoistureMax: v[2],
		TempMin: v[3], TempAvg: v[4], TempMax: v[5],
		TankMin: v[6], TankAvg: v[7], TankMax: v[8]}
}

// nullable is a metric's min or max for SQL: NULL without values.
func (a *agg) nullable(i int, v float64) any {
	if a.n[i] == 0 {
		return nil
	}
	return v
}
