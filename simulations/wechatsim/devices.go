package wechatsim

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
)

func respMsg(code int, info string) map[string]any {
	return map[string]any{"ret_code": code, "error_info": info}
}

// getOpenID is /device/get_openid: the users bound to a device. An unknown device answers
// ret_code -1 (not documented; the conservative reading).
func (p *Platform) getOpenID(r *http.Request, _ []byte) any {
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()
	if q.Get("device_type") != p.opts.AccountID {
		return map[string]any{"open_id": []string{}, "resp_msg": respMsg(-1, "invalid device_type")}
	}
	d := p.devices[q.Get("device_id")]
	if d == nil {
		return map[string]any{"open_id": []string{}, "resp_msg": respMsg(-1, "device not exist")}
	}
	ids := []string{}
	for id := range d.bound {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return map[string]any{"open_id": ids, "resp_msg": respMsg(0, "ok")}
}

// getBindDevice is /device/get_bind_device: the devices a user is bound to.
func (p *Platform) getBindDevice(r *http.Request, _ []byte) any {
	openID := r.URL.Query().Get("openid")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.userFor(openID) == nil {
		return errBody(40003)
	}
	list := []map[string]string{}
	var ids []string
	for id, d := range p.devices {
		if d.bound[openID] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		list = append(list, map[string]string{"device_type": p.opts.AccountID, "device_id": id})
	}
	return map[string]any{"resp_msg": respMsg(0, "ok"), "openid": openID, "device_list": list}
}

// verifyQRCode is /device/verify_qrcode: a device QR's content (with or without the #data
// suffix) → the device. An unknown ticket answers 40097 (not documented).
func (p *Platform) verifyQRCode(r *http.Request, body []byte) any {
	var req struct {
		Ticket string `json:"ticket"`
	}
	if json.Unmarshal(body, &req) != nil || req.Ticket == "" {
		return errBody(47001)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.deviceByQR(req.Ticket)
	if d == nil {
		return map[string]any{"errcode": 40097, "errmsg": "invalid args: unknown device qrcode ticket"}
	}
	return ok(map[string]any{"device_type": p.opts.AccountID, "device_id": d.id, "mac": d.mac})
}

// deviceByQR finds the device a device QR (http(s)://we.qq.com/d/<ticket>[#data]) names. Must be
// called with p.mu held.
func (p *Platform) deviceByQR(qr string) *device {
	ticket, _, _ := strings.Cut(strings.TrimSpace(qr), "#")
	ticket = strings.Replace(ticket, "https://", "http://", 1)
	if id, ok := p.deviceQR[ticket]; ok {
		return p.devices[id]
	}
	return nil
}

// BindInWeChatOnly binds openID to deviceID in WeChat without telling Sprout (no callback), to
// create drift between WeChat's bindings and Sprout's. The device is created if unknown.
func (p *Platform) BindInWeChatOnly(deviceID, openID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devices[deviceID]
	if d == nil {
		d = &device{id: deviceID, bound: map[string]bool{}}
		p.devices[deviceID] = d
	}
	d.bound[openID] = true
}

// UnbindInWeChatOnly removes a binding in WeChat without telling Sprout (no callback).
func (p *Platform) UnbindInWeChatOnly(deviceID, openID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.devices[deviceID]; d != nil {
		delete(d.bound, openID)
	}
}

// BoundUsers returns the openids WeChat has bound to a device, sorted.
func (p *Platform) BoundUsers(deviceID string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	if d := p.devices[deviceID]; d != nil {
		for id := range d.bound {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}
