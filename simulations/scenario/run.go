package scenario

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/simulations/report"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// product is the product name of every simulated pot (and of its QR key).
const product = "sprout-pot"

// Options tune how a scenario is run, not what it is.
type Options struct {
	// Short runs the short form: the file's short overrides (a few seconds, tens of plants).
	Short bool
	// Binary is the sprout binary to run as `sprout serve`; empty builds ./cmd/sprout (the working
	// directory must then be inside the repository).
	Binary string
	// WorkDir holds the node's data and log; empty: a temporary directory, removed afterwards.
	WorkDir string
	// Cluster names the nodes of an external cluster target. Not implemented: without it, a
	// scenario that requires a cluster runs against a local one the runner starts (Consul,
	// Postgres, Parameters.Nodes `sprout serve` processes).
	Cluster []string
	// Progress, if set, is called once a second with the latest point.
	Progress func(Progress)
	// Log receives setup steps ("provisioning 200 plants..."); nil discards them.
	Log io.Writer
	// Transport is how the plants reach the nodes: plant.TransportTCP (default, the TCP edge) or
	// plant.TransportMQTT (each node's MQTT listener).
	Transport string
}

// Progress is the run's state at one second, for a progress line.
type Progress struct {
	Point    report.Point
	Plants   int
	Elapsed  time.Duration
	Duration time.Duration
	Phase    string // "run", "drain"
	Taps     int
	Waiting  int // accepted taps without an outcome yet
	Pushes   int
}

// Line is Progress as one terminal line.
func (p Progress) Line() string {
	return fmt.Sprintf("%-5s %4.0fs of %.0fs  online %d/%d  acked %5.0f/s  p99 %7.1fms  taps %d (waiting %d)  pushes %d",
		p.Phase, p.Elapsed.Seconds(), p.Duration.Seconds(), p.Point.Connected, p.Plants, p.Point.AckedPerSecond, p.Point.P99,
		p.Taps, p.Waiting, p.Pushes)
}

// Run runs sc and returns its report. The error is non-nil when the run could not be carried
// out, or when it was and missed a criterion (then the report says which, and so does the
// error). A scenario that requires a cluster runs against a local cluster; it returns a SKIPPED
// report and ErrNeedsCluster when Consul or Postgres cannot be found.
func Run(ctx context.Context, sc *Scenario, o Options) (*report.Report, error) {
	p, err := sc.Params(o.Short)
	if err != nil {
		return nil, err
	}
	crit, err := sc.CriteriaFor(o.Short)
	if err != nil {
		return nil, err
	}
	rep := &report.Report{Scenario: sc.Name, Description: sc.Description, File: sc.File, Short: o.Short,
		Started: time.Now(), Parameters: p.Describe()}
	if sc.Requires == "cluster" && len(o.Cluster) > 0 {
		return nil, fmt.Errorf("scenario %s: runs against an external cluster target are not implemented (leave the target out: the runner starts a local cluster); nothing was run", sc.Name)
	}
	if sc.Requires == "cluster" && p.Nodes == 0 {
		p.Nodes = 3
		rep.Parameters = p.Describe()
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}

	dir := o.WorkDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sprout-scenario-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	bin := o.Binary
	if bin == "" {
		logf("building sprout...")
		if bin, err = BuildSprout(ctx, dir); err != nil {
			return nil, err
		}
	}

	// The simulated WeChat platform lives in this process; Sprout calls its API, and it calls
	// Sprout's /wechat for the users.
	platform, err := wechatsim.NewServer(wechatsim.Options{CallbackTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	defer platform.Close()
	qrKey := make([]byte, 32)
	_, _ = crand.Read(qrKey)
	env := map[string]string{
		"SPROUT_WECHAT_APPID": platform.AppID(), "SPROUT_WECHAT_SECRET": platform.Secret(),
		"SPROUT_WECHAT_TOKEN": platform.Token(), "SPROUT_WECHAT_ACCOUNT": platform.AccountID(),
		"SPROUT_WECHAT_API_BASE": platform.URL(), "SPROUT_QR_KEYS": product + "=" + hex.EncodeToString(qrKey),
		"SPROUT_COMMAND_TIMEOUT": p.CommandTimeout.String(), "SPROUT_WATER_MS": strconv.Itoa(p.WaterMs),
	}
	if p.StoreDelay > 0 {
		env["SPROUT_DEBUG_STORE_DELAY"] = p.StoreDelay.String()
	}
	if p.AlertBurst > 0 {
		env["SPROUT_ALERT_BURST"] = strconv.Itoa(p.AlertBurst)
	}
	if p.AlertWindow > 0 {
		env["SPROUT_ALERT_WINDOW"] = p.AlertWindow.String()
	}
	for k, v := range p.Env {
		env[k] = v
	}
	var nodes []*node
	if sc.Requires == "cluster" {
		cl, err := startCluster(ctx, bin, dir, p.Nodes, env, logf)
		if errors.Is(err, ErrNeedsCluster) {
			rep.Verdict = report.Skipped
			return rep, fmt.Errorf("%s: %w: skipped", sc.Name, err)
		}
		if err != nil {
			return nil, fmt.Errorf("starting the cluster: %w", err)
		}
		defer cl.close()
		nodes = cl.nodes
	} else {
		logf("starting %s serve...", bin)
		n, err := startNode(ctx, bin, dir, env)
		if err != nil {
			return nil, err
		}
		defer n.stop()
		nodes = []*node{n}
	}
	// Node 1 takes the WeChat callbacks, provisions, and is read for the checks; a node failure
	// kills another.
	n := nodes[0]
	if o.WorkDir != "" {
		rep.ServerLog = n.logPath
	}
	platform.SetCallbackURL("http://" + n.http + "/wechat")

	logf("provisioning %d plants through the API...", p.Plants)
	creds := fleet.NewCredentials("sc", p.Plants)
	if err := n.provision(ctx, creds); err != nil {
		return nil, fmt.Errorf("provisioning: %w", err)
	}
	dry := make([]bool, p.Plants)
	for i := range dry {
		// Spread dry pots evenly: plant i is dry when floor((i+1)*f) > floor(i*f).
		dry[i] = int(float64(i+1)*p.DryFraction) > int(float64(i)*p.DryFraction)
	}
	logf("binding %d users to %d pots each...", p.Users, p.PotsPerUser)
	users, err := bindUsers(ctx, platform, qrKey, creds, dry, p)
	if err != nil {
		return nil, err
	}

	var servers []string
	edgeOf := func(nd *node) string { return nd.edge }
	if o.Transport == plant.TransportMQTT {
		edgeOf = func(nd *node) string { return nd.mqtt }
	}
	for _, nd := range nodes {
		servers = append(servers, edgeOf(nd))
	}
	var px *proxy
	if p.Blip != nil {
		if px, err = newProxy(edgeOf(n)); err != nil {
			return nil, err
		}
		defer px.close()
		servers = []string{px.addr()}
	}

	r := &runState{transport: o.Transport, p: p, crit: crit, rep: rep, users: users, platform: platform, tr: newTracker(p.Plants), nodes: nodes}
	logf("running %s for %s...", sc.Name, p.Duration)
	if err := r.run(ctx, creds, servers, dry, px, o.Progress); err != nil {
		return nil, err
	}
	logf("checking every acked frame is stored...")
	r.verifyStored(ctx, n, creds)
	logf("stopping the node(s)...")
	for _, nd := range nodes {
		nd.stop()
	}
	r.finish()
	return rep, rep.Err()
}

// bindUsers makes the users, has each write once (so Sprout answers them in English) and scan
// the QR codes of their pots. User u binds pots u*k .. u*k+k-1 (mod plants).
func bindUsers(ctx context.Context, platform *wechatsim.Platform, key []byte, creds []fleet.Credential, dry []bool, p Parameters) ([]*simUser, error) {
	users := make([]*simUser, p.Users)
	for u := range users {
		var pots []string
		hasDry := false
		for j := 0; j < p.PotsPerUser; j++ {
			i := (u*p.PotsPerUser + j) % len(creds)
			pots = append(pots, creds[i].ID)
			hasDry = hasDry || dry[i]
		}
		users[u] = newSimUser(platform.NewUser(fmt.Sprintf("o-scenario-user-%04d", u+1)), pots)
		users[u].dry = hasDry
	}
	err := parallel(ctx, len(users), 8, func(u int) error {
		su := users[u]
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		for _, pot := range su.pots {
			scene, err := qr.Scene(key, qr.Code{Product: product, Device: pot})
			if err != nil {
				return err
			}
			// The pot's label is the account's parametric QR for the code (`device add
			// --qr-wechat`): scanning it with WeChat's scanner posts SCAN, and Sprout answers.
			res, err := su.u.Scan(cctx, platform.CreateQR(scene))
			if err != nil {
				return fmt.Errorf("user %s scanning %s: %w", su.u.OpenID, pot, err)
			}
			if res.Reply == nil || !containsAny(res.Reply.Content, boundTexts) {
				return fmt.Errorf("user %s scanning %s: %+v is not a binding", su.u.OpenID, pot, res)
			}
		}
		// Following now (the first scan subscribed), the user writes to the account.
		if _, err := su.u.SendText(cctx, "hello"); err != nil {
			return fmt.Errorf("user %s saying hello: %w", su.u.OpenID, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("binding users: %w", err)
	}
	// The bind replies are passive replies; start counting pushes from here.
	for _, su := range users {
		su.scan(platform)
		su.pushes, su.alerts, su.summaries = 0, 0, 0
		clear(su.raised)
	}
	return users, nil
}

// runState is one run in progress.
type runState struct {
	transport string // the plants' (Options.Transport)
	p         Parameters
	crit      Criteria
	rep       *report.Report
	users     []*simUser
	platform  *wechatsim.Platform
	tr        *tracker
	start     time.Time
	nodes     []*node // node 1 first

	fleetRep *fleet.Report

	mu           sync.Mutex
	tapsThisSec  int
	taps         int
	replyLat     []time.Duration
	outcomeLat   []time.Duration
	finals       int // passive final answers this second
	blipBefore   int64
	blipUp       time.Time
	reconnected  time.Duration // -1: not yet
	storedFailed []string
	storedCount  int
	lastSeqFails []string
	duplicates   []string
	killed       bool // a node was killed
	killedAt     time.Time
	failover     time.Duration // kill to every device online again; -1: not within the wait
	failoverAPI  time.Duration // kill to every device online per node 1's API
	failoverErr  string

	connectedFinal int64
}

func (r *runState) since() float64 { return time.Since(r.start).Seconds() }

func (r *runState) mark(label string) {
	r.mu.Lock()
	r.rep.Marks = append(r.rep.Marks, report.Mark{T: r.since(), Label: label})
	r.mu.Unlock()
}

// run drives the fleet, the users, the blip and the sampler, then drains the outstanding taps.
func (r *runState) run(ctx context.Context, creds []fleet.Credential, servers []string, dry []bool, px *proxy, progress func(Progress)) error {
	p := r.p
	fctx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	r.start = time.Now()
	r.reconnected = -1
	fleetDone := make(chan error, 1)
	go func() {
		rep, err := fleet.Run(fctx, fleet.Options{Devices: creds, Servers: servers, ConnectRate: p.ConnectRate,
			ReportInterval: p.ReportInterval.D(), Window: p.Window, Speed: p.Speed,
			Plant: func(i int, c *plant.Config) {
				if dry[i] {
					c.StartMoisture = p.DryMoisture
				}
				c.MaxBackoff = 5 * time.Second
				if r.transport != "" {
					c.Transport = r.transport
				}
				c.Observer = r.tr.observer(i)
			}})
		r.fleetRep = rep
		fleetDone <- err
	}()

	// Sampler: one point a second until stopped.
	sampleStop := make(chan struct{})
	sampleDone := make(chan struct{})
	var phase atomic.Value
	phase.Store("run")
	go func() {
		defer close(sampleDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sampleStop:
				return
			case <-tick.C:
				pt := r.sample()
				if progress != nil {
					r.mu.Lock()
					taps := r.taps
					r.mu.Unlock()
					pushes, waiting := 0, 0
					for _, u := range r.users {
						u.mu.Lock()
						pushes += u.pushes
						u.mu.Unlock()
						waiting += u.waiting()
					}
					progress(Progress{Point: pt, Plants: p.Plants, Elapsed: time.Since(r.start), Duration: p.Duration.D(),
						Phase: phase.Load().(string), Taps: taps, Waiting: waiting, Pushes: pushes})
				}
			}
		}
	}()

	runCtx, endRun := context.WithTimeout(fctx, p.Duration.D())
	defer endRun()
	var taps sync.WaitGroup
	tap := func(u *simUser, k int) {
		taps.Add(1)
		r.mu.Lock()
		r.taps++
		r.tapsThisSec++
		r.mu.Unlock()
		go func() {
			defer taps.Done()
			u.tap(ctx, k, r.tapDone)
		}()
	}

	// Taps at a steady rate, after the ramp.
	var bg sync.WaitGroup
	if p.TapsPerSecond > 0 && len(r.users) > 0 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			r.waitRamp(runCtx)
			rng := rand.New(rand.NewPCG(1, 2))
			for runCtx.Err() == nil {
				wait := time.Duration(rng.ExpFloat64() / p.TapsPerSecond * float64(time.Second))
				select {
				case <-runCtx.Done():
					return
				case <-time.After(wait):
				}
				u := r.users[rng.IntN(len(r.users))]
				tap(u, 1+rng.IntN(len(u.pots)))
			}
		}()
	}
	if b := p.TapBurst; b != nil && len(r.users) > 0 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if !sleepCtx(runCtx, b.At.D()) {
				return
			}
			r.mark(fmt.Sprintf("burst: %d taps", len(r.users)*b.TapsPerUser))
			for _, u := range r.users {
				for k := 0; k < b.TapsPerUser; k++ {
					tap(u, 1+k%len(u.pots))
				}
			}
		}()
	}
	if b := p.Blip; b != nil && px != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if !sleepCtx(runCtx, b.At.D()) {
				return
			}
			r.mu.Lock()
			r.blipBefore = r.tr.connected.Load()
			r.mu.Unlock()
			r.mark("network down")
			px.setDown(true)
			sleepCtx(runCtx, b.Down.D())
			px.setDown(false)
			r.mark("network up")
			up := time.Now()
			r.mu.Lock()
			r.blipUp = up
			want := r.blipBefore
			r.mu.Unlock()
			for runCtx.Err() == nil {
				if r.tr.connected.Load() >= want {
					r.mu.Lock()
					r.reconnected = time.Since(up)
					r.mu.Unlock()
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

	var failing sync.WaitGroup
	if f := p.NodeFailure; f != nil && len(r.nodes) > 1 {
		failing.Add(1)
		go func() {
			defer failing.Done()
			r.failNode(runCtx, fctx, creds, f)
		}()
	}

	<-runCtx.Done()
	bg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Drain: wait for every tap's reply, then for the pushed outcomes, while the plants run on.
	phase.Store("drain")
	taps.Wait()
	within := r.answerWithin()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		waiting := 0
		for _, u := range r.users {
			r.scanUser(u)
			waiting += u.waiting()
		}
		if waiting == 0 {
			break
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	failing.Wait()
	close(sampleStop)
	<-sampleDone
	r.rep.Seconds = time.Since(r.start).Seconds()
	// The fleet's own count at stop races with the plants closing: take ours first.
	r.connectedFinal = r.tr.connected.Load()
	stopFleet()
	if err := <-fleetDone; err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	for _, u := range r.users {
		r.scanUser(u)
	}
	return nil
}

// failNode kills node 2 at the failure's time and measures how long until every device is
// online again: per node 1's API (GET /api/v1/devices/{id}, all polled) and per the plants
// (as many welcomed as before the kill). It gives up DevicesBackWithin + 15 s after the kill.
func (r *runState) failNode(runCtx, ctx context.Context, creds []fleet.Credential, f *NodeFailure) {
	r.failover = -1
	if !sleepCtx(runCtx, f.At.D()) {
		return
	}
	sig, name := syscall.SIGKILL, "SIGKILL"
	if f.Signal == "TERM" {
		sig, name = syscall.SIGTERM, "SIGTERM"
	}
	before := r.tr.connected.Load()
	victim := r.nodes[1]
	r.mark(name + " node 2")
	killed := time.Now()
	if sig == syscall.SIGKILL {
		_ = victim.cmd.Process.Kill() // at once, not after the signal helper's bookkeeping
	}
	victim.signal(sig)
	r.mu.Lock()
	r.killed, r.killedAt = true, killed
	r.mu.Unlock()
	limit := 15 * time.Second
	if w := r.crit.DevicesBackWithin.D(); w > 0 {
		limit += w
	}
	wctx, cancel := context.WithDeadline(ctx, killed.Add(limit))
	defer cancel()
	// The survivors learn of the death from Consul: give them a moment, or the API still shows
	// the victim's devices online.
	sleepCtx(wctx, 300*time.Millisecond)
	_, err := waitOnline(wctx, r.nodes[0], creds)
	api := time.Since(killed)
	for err == nil && r.tr.connected.Load() < before {
		if !sleepCtx(wctx, 20*time.Millisecond) {
			err = fmt.Errorf("plants: %d of %d welcomed again", r.tr.connected.Load(), before)
		}
	}
	back := time.Since(killed)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failoverErr = err.Error()
		return
	}
	r.failover, r.failoverAPI = back, api
	r.rep.Marks = append(r.rep.Marks, report.Mark{T: r.since(), Label: fmt.Sprintf("all online again (%.1fs)", back.Seconds())})
}

func (r *runState) answerWithin() time.Duration {
	if r.crit.TapAnsweredWithin > 0 {
		return r.crit.TapAnsweredWithin.D()
	}
	return r.p.CommandTimeout.D() + 5*time.Second
}

// waitRamp returns once every plant is connected, or after ten seconds.
func (r *runState) waitRamp(ctx context.Context) {
	deadline := time.Now().Add(10 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) && r.tr.connected.Load() < int64(r.p.Plants) {
		time.Sleep(50 * time.Millisecond)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *runState) tapDone(t tapResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.replied {
		r.replyLat = append(r.replyLat, t.reply)
	}
	if t.final != "" {
		r.finals++
	}
	if t.outcome != 0 {
		r.outcomeLat = append(r.outcomeLat, t.outcome)
	}
}

// scanUser reads a user's new entries and returns (outcomes, alerts, pushes) they brought.
func (r *runState) scanUser(u *simUser) scanned {
	s := u.scan(r.platform)
	if len(s.latency) > 0 {
		r.mu.Lock()
		r.outcomeLat = append(r.outcomeLat, s.latency...)
		r.mu.Unlock()
	}
	return s
}

// sample takes one point: the fleet's connections and acks, and the users' new messages.
func (r *runState) sample() report.Point {
	pt := report.Point{T: r.since(), Connected: r.tr.connected.Load()}
	acked, lat := r.tr.interval()
	pt.AckedPerSecond = float64(acked) // the interval is one second
	pt.P50, pt.P90, pt.P99, pt.Max = lat.P50, lat.P90, lat.P99, lat.Max
	for _, u := range r.users {
		s := r.scanUser(u)
		pt.Outcomes += s.outcomes
		pt.Alerts += s.alerts
		pt.Pushes += s.pushes
	}
	r.mu.Lock()
	pt.Taps = r.tapsThisSec
	pt.Outcomes += r.finals
	r.tapsThisSec, r.finals = 0, 0
	r.rep.Series = append(r.rep.Series, pt)
	r.mu.Unlock()
	return pt
}

// verifyStored checks, for every device, that each seq a plant saw acked is in the store.
func (r *runState) verifyStored(ctx context.Context, n *node, creds []fleet.Credential) {
	if !r.crit.NoLostAckedFrames && !r.crit.NoDuplicateFrames {
		return
	}
	from, to := r.start.Add(-time.Minute), time.Now().Add(time.Minute)
	var mu sync.Mutex
	err := parallel(ctx, len(creds), 8, func(i int) error {
		id := creds[i].ID
		acked := r.tr.devs[i].ackedSeqs()
		seqs, last, err := n.storedSeqs(ctx, id, from, to)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, s := range acked {
			if seqs[s] > 1 {
				r.duplicates = append(r.duplicates, fmt.Sprintf("%s seq %d stored %d times", id, s, seqs[s]))
			}
			if seqs[s] == 0 {
				r.storedFailed = append(r.storedFailed, fmt.Sprintf("%s seq %d", id, s))
			} else {
				r.storedCount++
			}
			if s > last {
				r.lastSeqFails = append(r.lastSeqFails, fmt.Sprintf("%s acked %d > last_seq %d", id, s, last))
			}
		}
		return nil
	})
	if err != nil {
		r.storedFailed = append([]string{"could not read the store: " + err.Error()}, r.storedFailed...)
	}
}

// finish fills the report's totals and users and judges the criteria.
func (r *runState) finish() {
	rep, p := r.rep, r.p
	t := &rep.Totals
	t.Plants, t.Users = p.Plants, len(r.users)
	if f := r.fleetRep; f != nil {
		t.ConnectedMax, t.ConnectedFinal = f.ConnectedMax, r.connectedFinal
		t.FramesSent, t.FramesAcked, t.FramesResent, t.FramesDropped = f.FramesSent, f.FramesAcked, f.FramesResent, f.FramesDropped
		t.Reconnects = f.Reconnects
		if len(f.Errors) > 0 {
			t.Errors = map[string]int{}
			for k, v := range f.Errors {
				t.Errors[k] = int(v)
			}
		}
	}
	if rep.Seconds > 0 {
		t.AckedPerSecond = float64(t.FramesAcked) / rep.Seconds
	}
	t.AckLatency = r.tr.total()
	t.StoredChecked = r.storedCount
	t.Outcomes = map[string]int{}
	for _, u := range r.users {
		u.mu.Lock()
		unanswered := 0
		for _, q := range u.pending {
			unanswered += len(q)
		}
		u.unanswered = unanswered
		final := 0
		for k, v := range u.outcomes {
			t.Outcomes[k] += v
			if k != "no_reply" {
				final += v
			}
		}
		t.Taps += u.taps
		t.TapReplies += u.replies
		t.TapsAccepted += u.accepted
		t.Unanswered += unanswered
		t.Alerts += u.alerts
		t.Summaries += u.summaries
		t.Pushes += u.pushes
		rep.Users = append(rep.Users, report.User{OpenID: u.u.OpenID, Pots: len(u.pots), Taps: u.taps, Outcomes: final,
			Unanswered: unanswered, Alerts: u.alerts, Summaries: u.summaries, Pushes: u.pushes})
		u.mu.Unlock()
	}
	r.mu.Lock()
	t.TapReply = report.LatencyOf(r.replyLat)
	t.TapOutcome = report.LatencyOf(r.outcomeLat)
	r.mu.Unlock()
	rep.Criteria = r.judge()
	rep.Verdict = report.Pass
	if len(rep.Failed()) > 0 {
		rep.Verdict = report.Fail
	}
}

// judge checks each stated criterion.
func (r *runState) judge() []report.Criterion {
	c, p, t := r.crit, r.p, r.rep.Totals
	var out []report.Criterion
	add := func(name, want, got string, pass bool, detail []string) {
		cr := report.Criterion{Name: name, Want: want, Got: got, Pass: pass}
		if !pass && len(detail) > 0 {
			if len(detail) > 5 {
				detail = append(detail[:5:5], fmt.Sprintf("and %d more", len(detail)-5))
			}
			cr.Detail = fmt.Sprint(detail)
		}
		out = append(out, cr)
	}
	if c.NoLostAckedFrames {
		var detail []string
		detail = append(detail, r.storedFailed...)
		detail = append(detail, r.lastSeqFails...)
		add("no_lost_acked_frames", "every acked frame stored",
			fmt.Sprintf("%d of %d stored", r.storedCount, r.storedCount+len(r.storedFailed)),
			len(detail) == 0 && r.storedCount > 0, detail)
	}
	if c.EveryTapAnswered {
		var detail []string
		// Under a node failure, taps tapped within the grace after the kill may go without a pot's
		// answer (see Criteria.TapGraceAfterKill): they are counted, not failed.
		r.mu.Lock()
		killedAt := r.killedAt
		r.mu.Unlock()
		excused, strict := 0, 0
		for _, u := range r.users {
			if u.unanswered > 0 {
				detail = append(detail, fmt.Sprintf("%s: %d accepted taps without a pushed outcome", u.u.OpenID, u.unanswered))
			}
			if p.NodeFailure == nil {
				if n := u.outcomes["no_reply"]; n > 0 {
					detail = append(detail, fmt.Sprintf("%s: %d taps without a passive reply", u.u.OpenID, n))
				}
				continue
			}
			for _, b := range u.bad {
				if !killedAt.IsZero() && b.at.After(killedAt.Add(-time.Second)) && b.at.Before(killedAt.Add(c.TapGraceAfterKill.D())) {
					excused++
					continue
				}
				strict++
				detail = append(detail, fmt.Sprintf("%s: tap at %.1fs: %s", u.u.OpenID, b.at.Sub(r.start).Seconds(), b.why))
			}
		}
		noReply := t.Outcomes["no_reply"]
		slow := 0
		within := r.answerWithin()
		r.mu.Lock()
		for _, l := range r.outcomeLat {
			if l > within {
				slow++
			}
		}
		r.mu.Unlock()
		if slow > 0 {
			detail = append(detail, fmt.Sprintf("%d outcomes came later than %s", slow, within))
		}
		want := fmt.Sprintf("all, outcome within %s", within)
		got := fmt.Sprintf("%d taps: %d no reply, %d no outcome, %d late", t.Taps, noReply, t.Unanswered, slow)
		if p.NodeFailure != nil {
			want = fmt.Sprintf("all answered by the pot (done, offline, timed out, rejected, busy, failed), outcome within %s; grace %s after the kill", within, c.TapGraceAfterKill)
			got = fmt.Sprintf("%d taps: %d without the pot's answer (%d in the grace), %d no outcome, %d late", t.Taps, strict+excused, excused, t.Unanswered, slow)
		}
		add("every_tap_answered", want, got, t.Taps > 0 && len(detail) == 0, detail)
	}
	if c.AckP99Max > 0 {
		got := time.Duration(t.AckLatency.P99 * float64(time.Millisecond))
		add("ack_p99", "<= "+c.AckP99Max.String(), got.Round(10*time.Microsecond).String(),
			t.AckLatency.Count > 0 && got <= c.AckP99Max.D(), nil)
	}
	if c.AllConnected {
		add("all_connected", fmt.Sprintf("%d, and %d at the end", p.Plants, p.Plants),
			fmt.Sprintf("max %d, at the end %d", t.ConnectedMax, t.ConnectedFinal),
			t.ConnectedMax >= int64(p.Plants) && t.ConnectedFinal >= int64(p.Plants), nil)
	}
	if c.ReconnectedWithin > 0 {
		r.mu.Lock()
		rec, before := r.reconnected, r.blipBefore
		r.mu.Unlock()
		got := "never (within the run)"
		if p.Blip == nil {
			got = "no blip in this scenario"
		} else if rec >= 0 {
			got = fmt.Sprintf("%s (%d devices)", rec.Round(time.Millisecond), before)
		}
		add("reconnected_within", "<= "+c.ReconnectedWithin.String()+" after the network is back", got,
			p.Blip != nil && rec >= 0 && rec <= c.ReconnectedWithin.D() && before > 0, nil)
	}
	if c.MinThroughputRatio > 0 {
		offered := float64(p.Plants) / p.ReportInterval.D().Seconds()
		var sum float64
		var n int
		for i, pt := range r.rep.Series {
			// Whole seconds with every plant connected at both ends, outside any blip.
			if i > 0 && pt.Connected >= int64(p.Plants) && r.rep.Series[i-1].Connected >= int64(p.Plants) && !r.inBlip(pt.T) {
				sum += pt.AckedPerSecond
				n++
			}
		}
		got := "no second with every plant connected"
		ratio := 0.0
		if n > 0 {
			ratio = sum / float64(n) / offered
			got = fmt.Sprintf("%.2f (%.0f of %.0f/s over %d s)", ratio, sum/float64(n), offered, n)
		}
		add("min_throughput_ratio", fmt.Sprintf(">= %.2f", c.MinThroughputRatio), got, n > 0 && ratio >= c.MinThroughputRatio, nil)
	}
	if c.EveryUserAlerted {
		var detail []string
		want := 0
		for _, u := range r.users {
			if !u.dry {
				continue
			}
			want++
			if u.alerts+u.summaries == 0 {
				detail = append(detail, u.u.OpenID)
			}
		}
		add("every_user_alerted", fmt.Sprintf("%d users with a dry pot", want),
			fmt.Sprintf("%d alerted", want-len(detail)), want > 0 && len(detail) == 0, detail)
	}
	if c.MaxAlertPushesPerUser > 0 {
		most, who := 0, ""
		var detail []string
		for _, u := range r.users {
			n := u.alerts + u.summaries
			if n > most {
				most, who = n, u.u.OpenID
			}
			if n > c.MaxAlertPushesPerUser {
				detail = append(detail, fmt.Sprintf("%s: %d", u.u.OpenID, n))
			}
		}
		add("max_alert_pushes_per_user", fmt.Sprintf("<= %d", c.MaxAlertPushesPerUser), fmt.Sprintf("%d (%s)", most, who),
			len(detail) == 0, detail)
	}
	if c.NoDuplicateFrames {
		got := fmt.Sprintf("%d of %d acked frames stored more than once", len(r.duplicates), r.storedCount)
		add("no_duplicate_frames", "every acked frame stored once", got, len(r.duplicates) == 0 && r.storedCount > 0, r.duplicates)
	}
	if c.NoDuplicateAlerts {
		var detail []string
		raised := 0
		for _, u := range r.users {
			for pot, n := range u.raised {
				raised += n
				if n > 1 {
					detail = append(detail, fmt.Sprintf("%s: %d alerts about %s", u.u.OpenID, n, pot))
				}
			}
		}
		add("no_duplicate_alerts", "no pot's alert pushed twice to a user",
			fmt.Sprintf("%d alert pushes, %d repeated", raised, len(detail)), len(detail) == 0, detail)
	}
	if c.DevicesBackWithin > 0 {
		r.mu.Lock()
		killed, back, api, ferr := r.killed, r.failover, r.failoverAPI, r.failoverErr
		r.mu.Unlock()
		got := "no node was killed"
		switch {
		case killed && back >= 0:
			got = fmt.Sprintf("%s (node 1's API: %s; %d devices)", back.Round(time.Millisecond), api.Round(time.Millisecond), p.Plants)
		case killed:
			got = "not all back: " + ferr
		}
		add("devices_back_within", "<= "+c.DevicesBackWithin.String()+" after the kill", got,
			killed && back >= 0 && back <= c.DevicesBackWithin.D(), nil)
	}
	return out
}

// inBlip reports whether t (seconds since the start) falls in the blip or the second after it.
func (r *runState) inBlip(t float64) bool {
	b := r.p.Blip
	if b == nil {
		return false
	}
	from := b.At.D().Seconds()
	to := from + b.Down.D().Seconds() + 1
	if r.reconnected > 0 {
		to += r.reconnected.Seconds()
	}
	return t >= from && t <= to+1
}

// tracker follows every plant through its Observer: which seqs were acked (for the store check),
// ack latency per second and overall, and how many plants are connected.
type tracker struct {
	devs      []*devTrack
	connected atomic.Int64
	acked     atomic.Uint64
	cur       atomic.Pointer[plant.Histogram]
	all       plant.Histogram
	lastAcked uint64
}

type devTrack struct {
	mu       sync.Mutex
	sent     map[uint64]time.Time
	acked    []uint64
	welcomed bool
}

func newTracker(n int) *tracker {
	t := &tracker{devs: make([]*devTrack, n)}
	for i := range t.devs {
		t.devs[i] = &devTrack{sent: map[uint64]time.Time{}}
	}
	t.cur.Store(&plant.Histogram{})
	return t
}

func (t *tracker) observer(i int) func(plant.Observation) {
	d := t.devs[i]
	return func(o plant.Observation) {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch o.Kind {
		case plant.Sent:
			d.sent[o.Seq] = o.Time
		case plant.Acked:
			if at, ok := d.sent[o.Seq]; ok {
				lat := o.Time.Sub(at)
				t.cur.Load().Record(lat)
				t.all.Record(lat)
				delete(d.sent, o.Seq)
			}
			d.acked = append(d.acked, o.Seq)
			t.acked.Add(1)
		case plant.Welcomed:
			if !d.welcomed {
				d.welcomed = true
				t.connected.Add(1)
			}
			for s := range d.sent {
				if s <= o.Welcome.GetLastSeq() {
					delete(d.sent, s)
				}
			}
		case plant.Closed:
			if d.welcomed {
				d.welcomed = false
				t.connected.Add(-1)
			}
		}
	}
}

// interval returns the frames acked since the last call and their latency, and starts a new interval.
func (t *tracker) interval() (uint64, report.Latency) {
	h := t.cur.Swap(&plant.Histogram{})
	n := t.acked.Load()
	d := n - t.lastAcked
	t.lastAcked = n
	return d, latency(h.Latency())
}

func (t *tracker) total() report.Latency { return latency(t.all.Latency()) }

func latency(l plant.Latency) report.Latency {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return report.Latency{Count: int(l.Count), P50: ms(l.P50), P90: ms(l.P90), P99: ms(l.P99), Max: ms(l.Max)}
}

func (d *devTrack) ackedSeqs() []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]uint64(nil), d.acked...)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
