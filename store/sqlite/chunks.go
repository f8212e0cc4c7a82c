package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// The readings layout (migration 00009, store/README.md "Readings: a log and hourly chunks"):
//
//   - WriteBatch appends one reading_log row per group commit holding every reading of the commit
//     (codec.go), and adds them to the in-memory tail below once committed.
//   - The compactor folds log rows older than CompactAge (or beyond CompactRows) into one
//     unsealed part per (device, hour) in reading_chunks + reading_blobs, device by device in
//     transactions of at most CompactParts parts, each recording how far it got (fold_progress,
//     migration 00011), then deletes the folded log rows.
//   - Once an hour is complete (MergeSettle after its end) its parts are merged into sealed parts
//     of at most MaxChunkReadings readings.
//   - Queries read chunks by (device_id, hour) plus the device's tail from memory, consistently:
//     a compaction commits while holding tail.mu, and a query takes its copy of the tail and its
//     database snapshot under tail.mu (read), so a reading is seen either in the tail or in a chunk,
//     never both, never neither.

// tailReading is a committed reading still in reading_log.
type tailReading struct {
	log int64 // reading_log.id
	r   actors.Reading
}

type logMeta struct {
	id int64
	at time.Time // when it was committed (or loaded at Open)
	n  int       // readings
}

// tail is the in-memory index of reading_log: every reading not yet compacted, per device in
// commit order.
type tail struct {
	mu   sync.RWMutex
	dev  map[string][]tailReading
	logs []logMeta
	rows int
}

func (t *tail) add(id int64, groups []logGroup, at time.Time) {
	n := 0
	for _, g := range groups {
		es := t.dev[g.device]
		for _, r := range g.readings {
			es = append(es, tailReading{id, r})
		}
		t.dev[g.device] = es
		n += len(g.readings)
	}
	t.logs = append(t.logs, logMeta{id, at, n})
	t.rows += n
}

// readings returns a copy of the device's tail.
func (t *tail) readings(id string) []actors.Reading {
	es := t.dev[id]
	out := make([]actors.Reading, len(es))
	for i := range es {
		out[i] = es[i].r
	}
	return out
}

func (t *tail) maxSeq(id string) (uint64, bool) {
	var m uint64
	es := t.dev[id]
	for i := range es {
		m = max(m, es[i].r.Seq)
	}
	return m, len(es) > 0
}

func (t *tail) has(id string, seq uint64) bool {
	for _, e := range t.dev[id] {
		if e.r.Seq == seq {
			return true
		}
	}
	return false
}

// loadTail rebuilds the tail from reading_log (at Open). The readings an unfinished fold already
// put into chunks (fold_progress) are left out, and that fold is finished first.
func (s *Store) loadTail(ctx context.Context) error {
	s.tail.dev = map[string][]tailReading{}
	var foldDev string
	err := s.w.QueryRowContext(ctx, `SELECT log_id, device_id FROM fold_progress WHERE id = 1`).Scan(&s.foldAt, &foldDev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store/sqlite: read the fold progress: %w", err)
	}
	rows, err := s.w.QueryContext(ctx, `SELECT id, data FROM reading_log ORDER BY id`)
	if err != nil {
		return fmt.Errorf("store/sqlite: read the reading log: %w", err)
	}
	defer rows.Close()
	now := time.Now()
	for rows.Next() {
		var (
			id   int64
			data []byte
		)
		if err := rows.Scan(&id, &data); err != nil {
			return fmt.Errorf("store/sqlite: read the reading log: %w", err)
		}
		groups, err := decodeLog(data)
		if err != nil {
			return fmt.Errorf("store/sqlite: reading log row %d: %w", id, err)
		}
		if id <= s.foldAt {
			groups = slices.DeleteFunc(groups, func(g logGroup) bool { return g.device <= foldDev })
		}
		s.tail.add(id, groups, now)
	}
	return rows.Err()
}

// dedupe tracks, during one WriteBatch, what is stored and what the batch adds.
type dedupe struct {
	s     *Store
	tx    *sql.Tx
	ctx   context.Context
	batch map[string][]actors.Reading // accepted in this batch, per device
	max   map[string]uint64           // per device: max seq stored or accepted in this batch
	order []string
}

// accept reports whether r is new for the device (not stored, not already in this batch), and
// adds it to the batch if so.
func (d *dedupe) accept(id string, r actors.Reading) (bool, error) {
	// As stored: microseconds, UTC (the tail must hold what a read of the log would return).
	r.ReceivedAt = store.FromMicros(store.Micros(r.ReceivedAt))
	if !r.DeviceTime.IsZero() {
		r.DeviceTime = store.FromMicros(store.Micros(r.DeviceTime))
	}
	m, ok := d.max[id]
	if !ok {
		var err error
		if m, err = d.s.storedMax(d.ctx, d.tx, id); err != nil {
			return false, err
		}
	}
	if r.Seq <= m {
		// Below what is stored: an exact check (rare: the grain sends increasing seqs).
		for _, b := range d.batch[id] {
			if b.Seq == r.Seq {
				return false, nil
			}
		}
		d.s.tail.mu.RLock()
		inTail := d.s.tail.has(id, r.Seq)
		d.s.tail.mu.RUnlock()
		if inTail {
			return false, nil
		}
		if stored, err := d.s.chunkHas(d.ctx, d.tx, id, r.Seq); err != nil || stored {
			return false, err
		}
	}
	if _, seen := d.batch[id]; !seen {
		d.order = append(d.order, id)
	}
	d.batch[id] = append(d.batch[id], r)
	d.max[id] = max(m, r.Seq)
	return true, nil
}

// storedMax is the highest stored seq of a device's readings (cached after the first lookup).
func (s *Store) storedMax(ctx context.Context, tx *sql.Tx, id string) (uint64, error) {
	if m, ok := s.maxSeq[id]; ok {
		return m, nil
	}
	var m sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max(seq_max) FROM reading_chunks WHERE device_id = ?`, id).Scan(&m); err != nil {
		return 0, fmt.Errorf("max seq of %q: %w", id, err)
	}
	s.tail.mu.RLock()
	tm, _ := s.tail.maxSeq(id)
	s.tail.mu.RUnlock()
	v := max(uint64(max(m.Int64, 0)), tm)
	s.maxSeq[id] = v
	return v, nil
}

// chunkHas reports whether a chunk of the device holds seq.
func (s *Store) chunkHas(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, id string, seq uint64) (bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT b.data FROM reading_chunks AS c JOIN reading_blobs AS b ON b.id = c.blob
		WHERE c.device_id = ? AND c.seq_max >= ?2 AND c.seq_min <= ?2`, id, int64(seq))
	if err != nil {
		return false, fmt.Errorf("look up seq %d of %q: %w", seq, id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return false, err
		}
		rs, err := decodeReadings(data)
		if err != nil {
			return false, err
		}
		for i := range rs {
			if rs[i].Seq == seq {
				return true, nil
			}
		}
	}
	return false, rows.Err()
}

type chunkKey struct {
	device string
	hour   int64
}

// compact folds log rows into chunk parts: every row when all, else those older than
// CompactAge, or the oldest beyond CompactRows. It returns the readings folded.
func (s *Store) compact(ctx context.Context, all bool) (int, error) {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	total := 0
	for {
		x := s.foldAt // a fold left unfinished (found at Open) is finished first, up to its row
		if x == 0 {
			if x = s.foldBound(all); x == 0 {
				return total, nil
			}
		}
		n, err := s.fold(ctx, x)
		total += n
		if err != nil {
			return total, readErr("compact readings", err)
		}
		s.foldAt = 0
	}
}

// foldBound is the last log row due for folding, 0 if none.
func (s *Store) foldBound(all bool) int64 {
	s.tail.mu.RLock()
	defer s.tail.mu.RUnlock()
	now := time.Now()
	var x int64
	over := s.tail.rows
	for _, l := range s.tail.logs {
		if !all && now.Sub(l.at) < s.opts.CompactAge && over <= s.opts.CompactRows {
			break
		}
		x, over = l.id, over-l.n
	}
	return x
}

// fold moves every reading of the log rows up to x into chunk parts, device by device in byte
// order, in transactions of at most CompactParts parts and about CompactBatch readings, each
// recording how far it got (fold_progress); then deletes those log rows. Each device's readings
// go whole into one part per hour, so parts stay large however many devices share a commit, and
// appends wait for at most one short transaction.
func (s *Store) fold(ctx context.Context, x int64) (int, error) {
	s.tail.mu.RLock()
	var devs []string
	for dev, es := range s.tail.dev {
		if len(es) > 0 && es[0].log <= x {
			devs = append(devs, dev)
		}
	}
	s.tail.mu.RUnlock()
	slices.Sort(devs)
	total, readings := 0, 0
	groups := map[chunkKey][]actors.Reading{}
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.writeParts(ctx, groups, batch, x); err != nil {
			return err
		}
		total += readings
		groups, batch, readings = map[chunkKey][]actors.Reading{}, nil, 0
		return nil
	}
	for _, dev := range devs {
		mine := map[chunkKey][]actors.Reading{}
		n := 0
		s.tail.mu.RLock()
		for _, e := range s.tail.dev[dev] {
			if e.log > x {
				break
			}
			k := chunkKey{dev, floorHour(store.Micros(e.r.ReceivedAt))}
			mine[k] = append(mine[k], e.r)
			n++
		}
		s.tail.mu.RUnlock()
		if len(batch) > 0 && (len(groups)+len(mine) > s.opts.CompactParts || readings+n > s.opts.CompactBatch) {
			if err := flush(); err != nil {
				return total, err
			}
		}
		for k, rs := range mine {
			groups[k] = rs
		}
		batch, readings = append(batch, dev), readings+n
	}
	if err := flush(); err != nil {
		return total, err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return total, err
	}
	defer tx.Rollback()
	if _, err = tx.ExecContext(ctx, `DELETE FROM reading_log WHERE id <= ?`, x); err != nil {
		return total, err
	}
	if _, err = tx.ExecContext(ctx, `DELETE FROM fold_progress`); err != nil {
		return total, err
	}
	s.tail.mu.Lock()
	defer s.tail.mu.Unlock()
	if err = tx.Commit(); err != nil {
		return total, err
	}
	i := 0
	for i < len(s.tail.logs) && s.tail.logs[i].id <= x {
		i++ // their readings left the tail device by device (writeParts)
	}
	s.tail.logs = slices.Clone(s.tail.logs[i:])
	return total, nil
}

// writeParts writes groups (the readings of devs in the log rows up to x) as new unsealed parts
// and records that devs are folded, in one transaction; it commits holding tail.mu and drops
// the folded readings from the tail.
func (s *Store) writeParts(ctx context.Context, groups map[chunkKey][]actors.Reading, devs []string, x int64) (err error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	w := chunkWriter{ctx: ctx, tx: tx, max: s.opts.MaxChunkReadings, sealBefore: s.sealBefore(time.Now())}
	defer w.close()
	keys := make([]chunkKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b chunkKey) int {
		if a.device != b.device {
			if a.device < b.device {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.hour, b.hour)
	})
	for _, k := range keys {
		if err = w.write(k, groups[k], -1, false); err != nil {
			return err
		}
	}
	if _, err = tx.ExecContext(ctx, `INSERT INTO fold_progress (id, log_id, device_id) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET log_id = excluded.log_id, device_id = excluded.device_id`, x, devs[len(devs)-1]); err != nil {
		return err
	}
	s.tail.mu.Lock()
	defer s.tail.mu.Unlock()
	if err = tx.Commit(); err != nil {
		return err
	}
	for _, dev := range devs {
		es := s.tail.dev[dev]
		i := 0
		for i < len(es) && es[i].log <= x {
			i++
		}
		s.tail.rows -= i
		if i == len(es) {
			delete(s.tail.dev, dev)
		} else if i > 0 {
			s.tail.dev[dev] = slices.Clone(es[i:])
		}
	}
	return nil
}

// chunkWriter inserts chunks inside one transaction.
type chunkWriter struct {
	ctx                        context.Context
	tx                         *sql.Tx
	max                        int
	sealBefore                 int64 // hours before it are complete: a first part of one is written sealed
	buf                        []byte
	insBlob, insPart, nextPart *sql.Stmt
}

func (w *chunkWriter) close() {
	if w.insBlob != nil {
		w.insBlob.Close()
	}
	if w.insPart != nil {
		w.insPart.Close()
	}
	if w.nextPart != nil {
		w.nextPart.Close()
	}
}

// write stores rs (one device, one hour) as parts of at most w.max readings. part < 0: after
// the existing parts (sealed if there are none and the hour is before w.sealBefore); else
// numbered from part.
func (w *chunkWriter) write(k chunkKey, rs []actors.Reading, part int, sealed bool) error {
	slices.SortFunc(rs, byTime)
	var err error
	if w.insBlob == nil {
		if w.insBlob, err = w.tx.PrepareContext(w.ctx, `INSERT INTO reading_blobs (data) VALUES (?)`); err != nil {
			return err
		}
		if w.insPart, err = w.tx.PrepareContext(w.ctx, `INSERT INTO reading_chunks (device_id, hour, part, sealed,
				seq_min, seq_max, count, moisture_n, moisture_min, moisture_sum, moisture_max,
				temp_n, temp_min, temp_sum, temp_max, tank_n, tank_min, tank_sum, tank_max, blob)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)`); err != nil {
			return err
		}
		if w.nextPart, err = w.tx.PrepareContext(w.ctx, `SELECT coalesce(max(part) + 1, 0) FROM reading_chunks
			WHERE device_id = ? AND hour = ?`); err != nil {
			return err
		}
	}
	if part < 0 {
		if err := w.nextPart.QueryRowContext(w.ctx, k.device, k.hour).Scan(&part); err != nil {
			return err
		}
		// The first part of a complete hour (a bulk load, a late compaction) needs no merge,
		// unless it will not fit one chunk.
		sealed = part == 0 && k.hour < w.sealBefore && len(rs) <= w.max
	}
	for len(rs) > 0 {
		n := min(len(rs), w.max)
		piece := rs[:n]
		rs = rs[n:]
		w.buf = appendReadings(w.buf[:0], piece)
		res, err := w.insBlob.ExecContext(w.ctx, w.buf)
		if err != nil {
			return err
		}
		blob, err := res.LastInsertId()
		if err != nil {
			return err
		}
		var a agg
		smin, smax := piece[0].Seq, piece[0].Seq
		for i := range piece {
			a.add(&piece[i])
			smin, smax = min(smin, piece[i].Seq), max(smax, piece[i].Seq)
		}
		seal := 0
		if sealed {
			seal = 1
		}
		if _, err := w.insPart.ExecContext(w.ctx, k.device, k.hour, part, seal, int64(smin), int64(smax), a.count,
			a.n[0], a.nullable(0, a.lo[0]), a.sum[0], a.nullable(0, a.hi[0]),
			a.n[1], a.nullable(1, a.lo[1]), a.sum[1], a.nullable(1, a.hi[1]),
			a.n[2], a.nullable(2, a.lo[2]), a.sum[2], a.nullable(2, a.hi[2]), blob); err != nil {
			return err
		}
		if part >= 0 {
			part++
		}
	}
	return nil
}

type partRow struct {
	part   int
	sealed bool
	seqMax int64
	count  int64
	blob   int64
}

func readParts(ctx context.Context, tx *sql.Tx, k chunkKey) ([]partRow, error) {
	rows, err := tx.QueryContext(ctx, `SELECT part, sealed, seq_max, count, blob FROM reading_chunks
		WHERE device_id = ? AND hour = ? ORDER BY part`, k.device, k.hour)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []partRow
	for rows.Next() {
		var p partRow
		if err := rows.Scan(&p.part, &p.sealed, &p.seqMax, &p.count, &p.blob); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func loadBlob(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id int64, out []actors.Reading) ([]actors.Reading, error) {
	var data []byte
	if err := q.QueryRowContext(ctx, `SELECT data FROM reading_blobs WHERE id = ?`, id).Scan(&data); err != nil {
		return out, fmt.Errorf("chunk blob %d: %w", id, err)
	}
	d := decoder{b: data}
	out = d.readings(out)
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return out, d.err
}

// dropParts deletes the parts (and their blobs) of one (device, hour).
func dropParts(ctx context.Context, tx *sql.Tx, k chunkKey, parts []partRow) error {
	for _, p := range parts {
		if _, err := tx.ExecContext(ctx, `DELETE FROM reading_blobs WHERE id = ?`, p.blob); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM reading_chunks WHERE device_id = ? AND hour = ?`, k.device, k.hour)
	return err
}

// sealBefore is the first hour not complete at now: hours before it are merged and sealed.
func (s *Store) sealBefore(now time.Time) int64 {
	return floorHour(store.Micros(now.Add(-s.opts.MergeSettle)))
}

// merge seals every hour complete before now - MergeSettle: its parts become sealed parts of at
// most MaxChunkReadings readings, in transactions of about CompactBatch readings.
func (s *Store) merge(ctx context.Context, now time.Time) (int, error) {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	limit := s.sealBefore(now)
	merged := 0
	// A complete hour with a single part of at most MaxChunkReadings is sealed as it is.
	for {
		res, err := s.w.ExecContext(ctx, `UPDATE reading_chunks SET sealed = 1 WHERE (device_id, hour, part) IN (
				SELECT device_id, hour, part FROM reading_chunks AS c WHERE sealed = 0 AND hour < ?1 AND count <= ?2
				AND NOT EXISTS (SELECT 1 FROM reading_chunks AS o WHERE o.device_id = c.device_id AND o.hour = c.hour AND o.part <> c.part)
				LIMIT ?3)`, limit, s.opts.MaxChunkReadings, s.opts.CompactBatch)
		if err != nil {
			return merged, readErr("seal chunks", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return merged, readErr("seal chunks", err)
		}
		merged += int(n)
		if n < int64(s.opts.CompactBatch) {
			break
		}
	}
	for {
		rows, err := s.w.QueryContext(ctx, `SELECT DISTINCT hour, device_id FROM reading_chunks
			WHERE sealed = 0 AND hour < ? ORDER BY hour, device_id LIMIT 256`, limit)
		if err != nil {
			return merged, readErr("merge chunks", err)
		}
		var keys []chunkKey
		for rows.Next() {
			var k chunkKey
			if err := rows.Scan(&k.hour, &k.device); err != nil {
				rows.Close()
				return merged, readErr("merge chunks", err)
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return merged, readErr("merge chunks", err)
		}
		if len(keys) == 0 {
			return merged, nil
		}
		for len(keys) > 0 {
			n, err := s.mergeSome(ctx, keys)
			if err != nil {
				return merged, readErr("merge chunks", err)
			}
			keys = keys[n:]
			merged += n
		}
	}
}

// mergeSome merges keys in one transaction until about CompactBatch readings; returns how many.
func (s *Store) mergeSome(ctx context.Context, keys []chunkKey) (done int, err error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	w := chunkWriter{ctx: ctx, tx: tx, max: s.opts.MaxChunkReadings}
	defer w.close()
	readings := 0
	for _, k := range keys {
		if done > 0 && readings >= s.opts.CompactBatch {
			break
		}
		done++
		parts, err := readParts(ctx, tx, k)
		if err != nil {
			return 0, err
		}
		if len(parts) == 1 && parts[0].count <= int64(s.opts.MaxChunkReadings) {
			if _, err := tx.ExecContext(ctx, `UPDATE reading_chunks SET sealed = 1, part = 0 WHERE device_id = ? AND hour = ?`,
				k.device, k.hour); err != nil {
				return 0, err
			}
			continue
		}
		var rs []actors.Reading
		for _, p := range parts {
			if rs, err = loadBlob(ctx, tx, p.blob, rs); err != nil {
				return 0, err
			}
		}
		readings += len(rs)
		if err := dropParts(ctx, tx, k, parts); err != nil {
			return 0, err
		}
		if err := w.write(k, rs, 0, true); err != nil {
			return 0, err
		}
	}
	return done, tx.Commit()
}

// compactLoop is the background compactor: every CompactAge/4 (or at once when WriteBatch finds
// the tail over CompactRows) it compacts what is due and merges complete hours.
func (s *Store) compactLoop() {
	defer close(s.compactDone)
	tick := time.NewTicker(max(s.opts.CompactAge/4, 10*time.Millisecond))
	defer tick.Stop()
	ctx := context.Background()
	for {
		select {
		case <-s.compactStop:
			return
		case <-tick.C:
		case <-s.compactKick:
		}
		if _, err := s.compact(ctx, false); err != nil && !errors.Is(err, sql.ErrConnDone) {
			s.compactErr.Store(err.Error())
			continue
		}
		if time.Since(s.lastMerge) >= s.opts.CompactAge {
			s.lastMerge = time.Now()
			if _, err := s.merge(ctx, time.Now()); err != nil {
				s.compactErr.Store(err.Error())
			}
		}
	}
}
