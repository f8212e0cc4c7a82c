package wechatsim_test

import (
	"testing"
	"time"

	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

func TestAMessageFromTheUserAllowsFiveSendsWithin48Hours(t *testing.T) {
	c := newClock()
	p := start(t, wechatsim.Options{Clock: c.Now, TokenTTL: 1000 * time.Hour})
	newSprout(t, p)
	a := newAPI(t, p)
	u := p.NewUser("oMSG")
	u.Subscribe(ctx5(t))
	c.Advance(2 * time.Minute) // the subscribe's minute is over
	if code := a.cs("oMSG", "before"); code != 45015 {
		t.Fatalf("outside any window: %d, want 45015", code)
	}
	u.SendText(ctx5(t), "在吗")
	c.Advance(47 * time.Hour)
	for i := 0; i < 5; i++ {
		if code := a.cs("oMSG", "reply"); code != 0 {
			t.Fatalf("send %d: %d", i+1, code)
		}
	}
	if code := a.cs("oMSG", "sixth"); code != 45047 {
		t.Fatalf("sixth send: %d, want 45047", code)
	}
	u.SendText(ctx5(t), "again") // a new message: a fresh count
	if code := a.cs("oMSG", "after new message"); code != 0 {
		t.Fatalf("after a new message: %d", code)
	}
	c.Advance(48*time.Hour + time.Second)
	if code := a.cs("oMSG", "late"); code != 45015 {
		t.Fatalf("after 48 h: %d, want 45015", code)
	}
	u.SendLocation(ctx5(t), 31.2, 121.5, "上海") // a location message is a message
	if code := a.cs("oMSG", "after location message"); code != 0 {
		t.Fatalf("after a location message: %d", code)
	}
	e := lastSend(p, "oMSG")
	if e.Kind != wechatsim.KindCustomText || e.Text != "after location message" {
		t.Fatalf("last entry %+v", e)
	}
}

func TestAClickSubscribeOrScanAllowsThreeSendsWithinAMinute(t *testing.T) {
	c := newClock()
	p := start(t, wechatsim.Options{Clock: c.Now, TokenTTL: 1000 * time.Hour})
	newSprout(t, p)
	a := newAPI(t, p)
	u := p.NewUser("oEVT")
	u.Subscribe(ctx5(t))
	for i := 0; i < 3; i++ {
		if code := a.cs("oEVT", "welcome"); code != 0 {
			t.Fatalf("send %d after subscribe: %d", i+1, code)
		}
	}
	if code := a.cs("oEVT", "fourth"); code != 45047 {
		t.Fatalf("fourth send: %d, want 45047", code)
	}
	u.ClickMenu(ctx5(t), "WATER")
	c.Advance(59 * time.Second)
	if code := a.cs("oEVT", "watering"); code != 0 {
		t.Fatalf("after click: %d", code)
	}
	c.Advance(2 * time.Second)
	if code := a.cs("oEVT", "late"); code != 45015 {
		t.Fatalf("61 s after the click: %d, want 45015", code)
	}
	// A 1-minute event replaces an open 48-hour window: the latest action decides.
	u.SendText(ctx5(t), "hi")
	u.ClickMenu(ctx5(t), "STATUS")
	c.Advance(2 * time.Minute)
	if code := a.cs("oEVT", "after click replaced text"); code != 45015 {
		t.Fatalf("after the click's minute: %d, want 45015", code)
	}
	scene := p.CreateQR("SP-1")
	if r, err := u.Scan(ctx5(t), scene); err != nil || r.Kind != wechatsim.ScanEvent {
		t.Fatalf("scan: %+v %v", r, err)
	}
	if code := a.cs("oEVT", "after scan"); code != 0 {
		t.Fatalf("after SCAN: %d", code)
	}
}

func TestActionsThatOpenNoWindow(t *testing.T) {
	c := newClock()
	p := start(t, wechatsim.Options{Clock: c.Now, TokenTTL: 1000 * time.Hour})
	newSprout(t, p)
	a := newAPI(t, p)
	u := p.NewUser("oNOWIN")
	u.Subscribe(ctx5(t))
	dev := getQR(t, a)
	c.Advance(2 * time.Minute)
	steps := []struct {
		name string
		do   func()
	}{
		{"VIEW", func() { u.OpenMenuLink(ctx5(t), p.URL()+"/_sim/") }},
		{"LOCATION event", func() { u.ReportLocation(ctx5(t), 31.2, 121.5) }},
		{"subscribe_status", func() { u.SubscribeStatus(ctx5(t), dev.id, 2) }},
		{"unsubscribe_status", func() { u.SubscribeStatus(ctx5(t), dev.id, 0) }},
		{"device bind", func() { u.ScanDeviceQR(ctx5(t), dev.qr) }},
		{"device unbind", func() { u.Unbind(ctx5(t), dev.id) }},
		{"device_text", func() { u.SendDeviceData(ctx5(t), dev.id, []byte{1}) }},
		{"TEMPLATESENDJOBFINISH", func() {
			a.template("oNOWIN", "tmpl_alert_raised", "", alertData())
			p.WaitFor("oNOWIN", 5*time.Second, func(e wechatsim.Entry) bool { return e.Kind == wechatsim.KindReceipt })
		}},
	}
	for _, st := range steps {
		name := st.name
		st.do()
		if code := a.cs("oNOWIN", "after "+name); code != 45015 {
			t.Errorf("after %s: %d, want 45015", name, code)
		}
		if w := p.Window("oNOWIN"); w.Open {
			t.Errorf("after %s the window is open: %+v", name, w)
		}
	}
}

func TestAnUnfollowedUserGets43004ForEverythingUntilTheyFollowAgain(t *testing.T) {
	p := start(t, wechatsim.Options{})
	newSprout(t, p)
	a := newAPI(t, p)
	u := p.NewUser("oGONE")
	u.Subscribe(ctx5(t))
	u.SendText(ctx5(t), "bye")
	u.Unsubscribe(ctx5(t))
	if code := a.cs("oGONE", "still there?"); code != 43004 {
		t.Fatalf("custom send: %d, want 43004", code)
	}
	if code := errcode(a.template("oGONE", "tmpl_alert_raised", "", alertData())); code != 43004 {
		t.Fatalf("template send: %d, want 43004", code)
	}
	if code := a.cs("oNOBODY", "x"); code != 40003 {
		t.Fatalf("unknown openid: %d, want 40003", code)
	}
	es := p.Conversation("oGONE")
	e1, e2 := es[len(es)-2], es[len(es)-1]
	if e1.Kind != wechatsim.KindRefused || e1.Errcode != 43004 || e1.Attempted != wechatsim.KindCustomText ||
		e2.Kind != wechatsim.KindRefused || e2.Attempted != wechatsim.KindTemplate || e2.Title != "设备告警通知" {
		t.Fatalf("refusals recorded as %+v / %+v", e1, e2)
	}
	u.Subscribe(ctx5(t))
	if code := a.cs("oGONE", "welcome back"); code != 0 {
		t.Fatalf("after following again: %d", code)
	}
}

func TestReceivedIsOnlyWhatReachedTheUser(t *testing.T) {
	p := start(t, wechatsim.Options{})
	newSprout(t, p)
	a := newAPI(t, p)
	u := p.NewUser("oRCV")
	u.Subscribe(ctx5(t))
	a.cs("oRCV", "one")
	a.template("oRCV", "tmpl_nope", "", alertData())
	u.SetDeliveryStatus(wechatsim.DeliveryUserBlock)
	a.template("oRCV", "tmpl_alert_raised", "", alertData())
	got := p.Received("oRCV")
	if len(got) != 1 || got[0].Text != "one" {
		t.Fatalf("received %+v", got)
	}
}
