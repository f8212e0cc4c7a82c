package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// WeChatResult is "tap water -> result pushed" and "threshold crossed -> alert pushed" through the
// simulated WeChat platform.
type WeChatResult struct {
	Users      int            `json:"users"`
	Rate       int            `json:"rate"`
	Taps       int            `json:"taps"`
	Pushed     int            `json:"pushed"`
	Outcomes   map[string]int `json:"outcomes"`
	TapP50Ms   float64        `json:"tap_p50_ms"`
	TapP99Ms   float64        `json:"tap_p99_ms"`
	Achieved   float64        `json:"achieved_per_second"`
	Alerts     int            `json:"alerts"`
	AlertP50Ms float64        `json:"alert_p50_ms"`
	AlertP99Ms float64        `json:"alert_p99_ms"`
	Store      string         `json:"store"`
	cpuRaw     string         // the node's CPU profile during the taps
}

// wechatBench runs one node with the simulated platform: users bound to one pot each tap "water"
// at a fixed rate; each tap's latency runs from sending the callback to the platform recording the
// pushed result. Then pots cross the dry threshold and the alert's latency runs from sending the
// reading to the platform recording the push.
func wechatBench(bin, dataDir, db string, users, rate int, dur time.Duration, prof *profiler) (*WeChatResult, error) {
	// WeChat identifies an event by user and CreateTime (seconds): one user's second tap within the
	// same second is, to WeChat and to Sprout, a retry of the first. Spread taps over enough users
	// that each taps at most about once a second.
	users = max(users, rate*6/5)
	p, err := wechatsim.NewServer(wechatsim.Options{CallbackTimeout: 10 * time.Second, CallbackAttempts: 1})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	key := []byte("bench-qr-key-0123456789abcdef012")
	sp := &proc{edge: freeAddr(), http: freeAddr(), token: "bench"}
	sp.cmd = exec.Command(bin, "serve")
	sp.cmd.Env = append(os.Environ(), "SPROUT_DATA_DIR="+dataDir, "SPROUT_DB="+db, "SPROUT_EDGE_ADDR="+sp.edge, "SPROUT_MQTT_ADDR=",
		"SPROUT_HTTP_ADDR="+sp.http, "SPROUT_ADMIN_TOKEN="+sp.token, "SPROUT_LOG_LEVEL=error",
		"SPROUT_WECHAT_APPID="+p.AppID(), "SPROUT_WECHAT_SECRET="+p.Secret(), "SPROUT_WECHAT_TOKEN="+p.Token(),
		"SPROUT_WECHAT_ACCOUNT="+p.AccountID(), "SPROUT_WECHAT_API_BASE="+p.URL(), "SPROUT_WATER_MS=1",
		"SPROUT_ALERT_BURST=1000", "SPROUT_QR_KEYS=bench="+hex.EncodeToString(key))
	if err := startProc(sp); err != nil {
		return nil, err
	}
	defer sp.stop()
	p.SetCallbackURL("http://" + sp.http + "/wechat")
	cs := fleet.NewCredentials("wx-", users)
	if err := provisionAll(sp, cs); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Bind one user per pot.
	us := make([]*wechatsim.User, users)
	for i := range us {
		us[i] = p.NewUser(fmt.Sprintf("wxu-%05d", i))
		scene, _ := qr.Scene(key, qr.Code{Product: "bench", Device: cs[i].ID})
		// The account's parametric QR for the pot's code (`device add --qr-wechat`): one scan
		// follows and binds.
		if _, err := us[i].Scan(ctx, p.CreateQR(scene)); err != nil {
			return nil, fmt.Errorf("bind: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "  %d users bound\n", users)
	// Connect the pots (plants answer water commands; 1 ms of pumping).
	go func() {
		_, _ = fleet.Run(ctx, fleet.Options{Devices: cs, Servers: []string{sp.edge}, ConnectRate: 2000})
	}()
	if err := waitOnline(sp, cs); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "  %d pots online\n", users)
	res := &WeChatResult{Users: users, Rate: rate, Outcomes: map[string]int{}, Store: db}
	if res.Store == "" {
		res.Store = "embedded SQLite"
	}
	// Taps: user i taps; the latency ends when user i's next pushed text arrives.
	n := int(float64(rate) * dur.Seconds())
	lat := make([]time.Duration, n)
	outs := make([]string, n)
	var wg sync.WaitGroup
	busy := make([]atomic.Bool, users)
	tick := time.Second / time.Duration(rate)
	cpu := prof.cpu(sp, dur)
	start := time.Now()
	for i := 0; i < n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * tick)); d > 0 {
			time.Sleep(d)
		}
		u := i % users
		if !busy[u].CompareAndSwap(false, true) {
			continue // that user is still waiting for their last result
		}
		wg.Add(1)
		go func(i, u int) {
			defer wg.Done()
			defer busy[u].Store(false)
			before := lastSeq(p, us[u].OpenID)
			t0 := time.Now()
			if _, err := us[u].ClickMenu(ctx, "WATER"); err != nil {
				outs[i] = "callback error"
				return
			}
			e, err := p.WaitFor(us[u].OpenID, 15*time.Second, func(e wechatsim.Entry) bool {
				return e.Kind != wechatsim.KindReply && e.Direction == "out" && e.Seq > before
			})
			if err != nil {
				outs[i] = "no push"
				return
			}
			lat[i] = time.Since(t0)
			outs[i] = classify(e.Text)
		}(i, u)
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.cpuRaw = cpu.wait()
	var done []time.Duration
	for i, o := range outs {
		if o == "" {
			continue
		}
		res.Taps++
		res.Outcomes[o]++
		if lat[i] > 0 {
			res.Pushed++
			done = append(done, lat[i])
		}
	}
	res.TapP50Ms, res.TapP99Ms = pcts(done)
	res.Achieved = float64(res.Taps) / elapsed.Seconds()

	// Alerts: half the pots send a dry reading through their own connection.
	var alerts []time.Duration
	var mu sync.Mutex
	var awg sync.WaitGroup
	k := min(users, 200)
	for i := 0; i < k; i++ {
		awg.Add(1)
		go func(i int) {
			defer awg.Done()
			c, err := plant.Dial(sp.edge, "", 2*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			w, err := c.Handshake(plant.Hello{DeviceID: cs[i].ID, Secret: cs[i].Secret}, 5*time.Second)
			if err != nil {
				return
			}
			before := lastSeq(p, us[i].OpenID)
			t0 := time.Now()
			if err := c.Report(&devicepb.Telemetry{Seq: w.LastSeq + 1000, SoilMoisturePct: 3, TemperatureC: 20, TankLevelPct: 80}, 5*time.Second, nil); err != nil {
				return
			}
			if _, err := p.WaitFor(us[i].OpenID, 10*time.Second, func(e wechatsim.Entry) bool {
				return strings.Contains(e.Text, "土壤太干") && e.Seq > before
			}); err == nil {
				mu.Lock()
				alerts = append(alerts, time.Since(t0))
				mu.Unlock()
			}
		}(i)
		time.Sleep(5 * time.Millisecond)
	}
	awg.Wait()
	res.Alerts = len(alerts)
	res.AlertP50Ms, res.AlertP99Ms = pcts(alerts)
	fmt.Fprintf(os.Stderr, "  taps %d pushed %d %v p50 %.1f ms p99 %.1f ms; alerts %d p50 %.1f ms p99 %.1f ms\n",
		res.Taps, res.Pushed, res.Outcomes, res.TapP50Ms, res.TapP99Ms, res.Alerts, res.AlertP50Ms, res.AlertP99Ms)
	return res, nil
}

func classify(text string) string {
	switch {
	case strings.Contains(text, "浇水完成"):
		return "done"
	case strings.Contains(text, "拒绝"):
		return "rejected"
	case strings.Contains(text, "离线"):
		return "offline"
	case strings.Contains(text, "没有在规定时间内"):
		return "timed_out"
	case strings.Contains(text, "其他操作"):
		return "busy"
	}
	return "other"
}

func pcts(d []time.Duration) (p50, p99 float64) {
	if len(d) == 0 {
		return 0, 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return ms(d[len(d)/2]), ms(d[len(d)*99/100])
}

func waitOnline(p *proc, cs []fleet.Credential) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, c := range cs {
		for {
			var st struct{ Online bool }
			if getJSON(p, "/api/v1/devices/"+c.ID, &st) == nil && st.Online {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s never came online", c.ID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// lastSeq is the platform's sequence number of the user's latest entry (0 if none).
func lastSeq(p *wechatsim.Platform, openID string) int64 {
	c := p.Conversation(openID)
	if len(c) == 0 {
		return 0
	}
	return c[len(c)-1].Seq
}
