package wechatsim_test

import (
	"errors"
	"testing"

	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

type devQR struct{ id, qr string }

func getQR(t *testing.T, a *api) devQR {
	t.Helper()
	m := a.get("/device/getqrcode?product_id=7")
	id, _ := m["deviceid"].(string)
	qr, _ := m["qrticket"].(string)
	if id == "" || qr == "" {
		t.Fatalf("getqrcode %v", m)
	}
	return devQR{id, qr}
}

func TestADeviceQRScannedByANonFollowerFollowsThenBinds(t *testing.T) {
	p := start(t, wechatsim.Options{})
	s := newSprout(t, p)
	a := newAPI(t, p)
	d := getQR(t, a)
	u := p.NewUser("oDEV")
	r, err := u.Scan(ctx5(t), d.qr+"#dD0xMjM=")
	if err != nil || r.Kind != wechatsim.ScanDeviceBind {
		t.Fatalf("scan %+v %v", r, err)
	}
	ps := s.all()
	if len(ps) != 2 || ps[0].Event != "subscribe" || ps[0].EventKey != "" {
		t.Fatalf("pushes %+v", ps)
	}
	b := ps[1]
	if b.MsgType != "device_event" || b.Event != "bind" || b.DeviceID != d.id || b.DeviceType != p.AccountID() ||
		b.Content != "dD0xMjM=" || b.OpenID != "oDEV" || b.SessionID == "" {
		t.Fatalf("bind push %+v", b)
	}
	if !p.IsBound(d.id, "oDEV") {
		t.Fatal("not bound")
	}
	v := a.post("/device/verify_qrcode", map[string]string{"ticket": d.qr})
	if errcode(v) != 0 || v["device_id"] != d.id || v["device_type"] != p.AccountID() || v["mac"] == "" {
		t.Fatalf("verify_qrcode %v", v)
	}
	if errcode(a.post("/device/verify_qrcode", map[string]string{"ticket": "http://we.qq.com/d/NOPE"})) == 0 {
		t.Fatal("an unknown ticket verified")
	}
	if _, err := u.ScanDeviceQR(ctx5(t), "http://we.qq.com/d/NOPE#aGk="); !errors.Is(err, wechatsim.ErrUnknownQR) {
		t.Fatalf("unknown device QR: %v", err)
	}
	if _, err := u.Unbind(ctx5(t), d.id); err != nil || p.IsBound(d.id, "oDEV") {
		t.Fatalf("unbind: %v", err)
	}
	if _, err := u.Unbind(ctx5(t), d.id); !errors.Is(err, wechatsim.ErrNotBound) {
		t.Fatalf("second unbind: %v", err)
	}
}

func TestBindingQueriesSeeCompelCallsAndDrift(t *testing.T) {
	p := start(t, wechatsim.Options{})
	s := newSprout(t, p)
	a := newAPI(t, p)
	p.NewUser("oA")
	p.NewUser("oB")
	ok := func(m map[string]any) bool {
		br, _ := m["base_resp"].(map[string]any)
		return br != nil && br["errcode"].(float64) == 0 && br["errmsg"] == "ok"
	}
	if m := a.post("/device/compel_bind", map[string]string{"device_id": "pot-1", "openid": "oA"}); !ok(m) {
		t.Fatalf("compel_bind %v", m)
	}
	p.BindInWeChatOnly("pot-1", "oB")
	m := a.get("/device/get_openid?device_type=" + p.AccountID() + "&device_id=pot-1")
	ids, _ := m["open_id"].([]any)
	if len(ids) != 2 || ids[0] != "oA" || ids[1] != "oB" || m["resp_msg"].(map[string]any)["ret_code"].(float64) != 0 {
		t.Fatalf("get_openid %v", m)
	}
	m = a.get("/device/get_bind_device?openid=oB")
	list, _ := m["device_list"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["device_id"] != "pot-1" || m["openid"] != "oB" {
		t.Fatalf("get_bind_device %v", m)
	}
	p.UnbindInWeChatOnly("pot-1", "oA")
	if m := a.post("/device/compel_unbind", map[string]string{"device_id": "pot-1", "openid": "oB"}); !ok(m) {
		t.Fatalf("compel_unbind %v", m)
	}
	if got := p.BoundUsers("pot-1"); len(got) != 0 {
		t.Fatalf("still bound: %v", got)
	}
	if len(s.all()) != 0 {
		t.Fatal("compel and drift posted callbacks")
	}
	if code := errcode(a.get("/device/get_bind_device?openid=oNOBODY")); code != 40003 {
		t.Fatalf("unknown user: %d", code)
	}
	if m := a.get("/device/get_openid?device_type=" + p.AccountID() + "&device_id=nope"); m["resp_msg"].(map[string]any)["ret_code"].(float64) == 0 {
		t.Fatalf("unknown device: %v", m)
	}
}
