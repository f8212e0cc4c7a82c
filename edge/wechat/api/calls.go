package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// TemplateValue is one field of a template message.
type TemplateValue struct {
	Value string `json:"value"`
	Color string `json:"color,omitempty"`
}

// MiniProgram makes a template message open a mini-program page.
type MiniProgram struct {
	AppID    string `json:"appid"`
	PagePath string `json:"pagepath,omitempty"`
}

// TemplateMessage is the body of /cgi-bin/message/template/send.
type TemplateMessage struct {
	ToUser      string       `json:"touser"`
	TemplateID  string       `json:"template_id"`
	URL         string       `json:"url,omitempty"`
	MiniProgram *MiniProgram `json:"miniprogram,omitempty"`
	// ClientMsgID makes WeChat send the message at most once per id: use a stable id (for
	// example the alert's or outcome's id) so a retried send cannot notify the user twice.
	ClientMsgID string                   `json:"client_msg_id,omitempty"`
	Data        map[string]TemplateValue `json:"data"`
}

// SendTemplate sends a template message and returns its msgid (the later TEMPLATESENDJOBFINISH
// event carries it as MsgID). Errors: ErrNotFollowing, ErrInvalidOpenID, ErrRetryable, ….
func (c *Client) SendTemplate(ctx context.Context, m TemplateMessage) (int64, error) {
	var out struct {
		MsgID int64 `json:"msgid"`
	}
	err := c.call(ctx, http.MethodPost, "/cgi-bin/message/template/send", nil, m, &out)
	return out.MsgID, err
}

// SendText sends a customer-service text message. It only works within 48 h of the user's last
// interaction: otherwise ErrWindowExpired, and a template message is the way to reach the user.
func (c *Client) SendText(ctx context.Context, openID, text string) error {
	body := map[string]any{"touser": openID, "msgtype": "text", "text": map[string]string{"content": text}}
	return c.call(ctx, http.MethodPost, "/cgi-bin/message/custom/send", nil, body, nil)
}

// TransMsg sends bytes to a device through the user's WeChat client (/device/transmsg).
func (c *Client) TransMsg(ctx context.Context, deviceType, deviceID, openID string, content []byte) error {
	body := map[string]string{"device_type": deviceType, "device_id": deviceID, "open_id": openID,
		"content": base64.StdEncoding.EncodeToString(content)}
	return c.call(ctx, http.MethodPost, "/device/transmsg", nil, body, nil)
}

// TransStatus pushes a WiFi device's connection state to a user's client (/device/transmsg with
// msg_type 2). ErrStatusUnsubscribed means the client no longer subscribes: stop pushing.
func (c *Client) TransStatus(ctx context.Context, deviceType, deviceID, openID string, connected bool) error {
	st := "0"
	if connected {
		st = "1"
	}
	body := map[string]string{"device_type": deviceType, "device_id": deviceID, "open_id": openID,
		"msg_type": "2", "device_status": st}
	return c.call(ctx, http.MethodPost, "/device/transmsg", nil, body, nil)
}

// DeviceQRCode is a device id allocated by WeChat with its QR ticket.
type DeviceQRCode struct {
	DeviceID      string `json:"deviceid"`
	QRTicket      string `json:"qrticket"` // the QR content, http://we.qq.com/d/…; append "#base64" for extra data
	DeviceLicence string `json:"devicelicence"`
}

// GetQRCode allocates a device id and QR ticket for a product (/device/getqrcode). productID ""
// or "1" means the default product. Both result shapes (base_resp and resp_msg) are understood.
func (c *Client) GetQRCode(ctx context.Context, productID string) (DeviceQRCode, error) {
	q := url.Values{}
	if productID != "" && productID != "1" {
		q.Set("product_id", productID)
	}
	var out DeviceQRCode
	if err := c.call(ctx, http.MethodGet, "/device/getqrcode", q, nil, &out); err != nil {
		return DeviceQRCode{}, err
	}
	if out.DeviceID == "" || out.QRTicket == "" {
		return DeviceQRCode{}, errors.New("wechat api /device/getqrcode: response without deviceid or qrticket")
	}
	return out, nil
}

// DeviceAuth is one device of /device/authorize_device. All values are strings on the wire.
type DeviceAuth struct {
	ID                string `json:"id"`
	MAC               string `json:"mac"`              // 12 hex digits, no 0x
	ConnectProtocol   string `json:"connect_protocol"` // 4 = WiFi; several joined by "|"
	AuthKey           string `json:"auth_key"`         // 32 hex digits, or "" when unencrypted
	CloseStrategy     string `json:"close_strategy"`
	ConnStrategy      string `json:"conn_strategy"`
	CryptMethod       string `json:"crypt_method"`
	AuthVer           string `json:"auth_ver"`
	ManuMacPos        string `json:"manu_mac_pos"`
	SerMacPos         string `json:"ser_mac_pos"` // spelled right, unlike one SDK's ser_mac_post
	BLESimpleProtocol string `json:"ble_simple_protocol"`
}

// WiFiDevice is a DeviceAuth for an unencrypted WiFi device with the usual strategies.
func WiFiDevice(id, mac string) DeviceAuth {
	return DeviceAuth{ID: id, MAC: mac, ConnectProtocol: "4", CloseStrategy: "1", ConnStrategy: "1",
		CryptMethod: "0", AuthVer: "0", ManuMacPos: "-1", SerMacPos: "-2", BLESimpleProtocol: "0"}
}

// AuthorizeRequest authorises devices (or, with Update, updates their attributes).
type AuthorizeRequest struct {
	Devices   []DeviceAuth
	Update    bool   // op_type 1; ProductID is then omitted
	ProductID string // required when authorising for a product other than "1"
}

// AuthorizeResult is WeChat's answer for one device.
type AuthorizeResult struct {
	DeviceType string
	DeviceID   string
	ErrCode    int
	ErrMsg     string
}

// AuthorizeDevice calls /device/authorize_device. Per-device failures are in the results.
func (c *Client) AuthorizeDevice(ctx context.Context, r AuthorizeRequest) ([]AuthorizeResult, error) {
	body := map[string]any{"device_num": strconv.Itoa(len(r.Devices)), "device_list": r.Devices, "op_type": "0"}
	if r.Update {
		body["op_type"] = "1"
	} else if r.ProductID != "" {
		body["product_id"] = r.ProductID
	}
	var out struct {
		Resp []struct {
			BaseInfo struct {
				DeviceType string `json:"device_type"`
				DeviceID   string `json:"device_id"`
			} `json:"base_info"`
			ErrCode int    `json:"errcode"`
			ErrMsg  string `json:"errmsg"`
		} `json:"resp"`
	}
	if err := c.call(ctx, http.MethodPost, "/device/authorize_device", nil, body, &out); err != nil {
		return nil, err
	}
	res := make([]AuthorizeResult, len(out.Resp))
	for i, r := range out.Resp {
		res[i] = AuthorizeResult{DeviceType: r.BaseInfo.DeviceType, DeviceID: r.BaseInfo.DeviceID, ErrCode: r.ErrCode, ErrMsg: r.ErrMsg}
	}
	return res, nil
}

// CompelBind binds a user to a device without a ticket (after Sprout verified the user itself,
// e.g. through its own signed QR). WeChat pushes no bind event for it.
func (c *Client) CompelBind(ctx context.Context, deviceID, openID string) error {
	return c.call(ctx, http.MethodPost, "/device/compel_bind", nil, map[string]string{"device_id": deviceID, "openid": openID}, nil)
}

// CompelUnbind removes a binding without a ticket.
func (c *Client) CompelUnbind(ctx context.Context, deviceID, openID string) error {
	return c.call(ctx, http.MethodPost, "/device/compel_unbind", nil, map[string]string{"device_id": deviceID, "openid": openID}, nil)
}

// DeviceStat is /device/get_stat's answer. Status values are reported (not documented) as
// 0 = not authorised, 1 = authorised and not bound, 2 = bound.
type DeviceStat struct {
	Status     int    `json:"status"`
	StatusInfo string `json:"status_info"`
}

// GetStat returns a device's state on the platform.
func (c *Client) GetStat(ctx context.Context, deviceID string) (DeviceStat, error) {
	var out DeviceStat
	err := c.call(ctx, http.MethodGet, "/device/get_stat", url.Values{"device_id": {deviceID}}, nil, &out)
	return out, err
}

// QRCodeRequest asks for a parametric QR code of the account. Scanning it sends subscribe (with
// EventKey "qrscene_"+Scene) or SCAN (EventKey Scene) to the callback.
type QRCodeRequest struct {
	Scene string // 1..64 characters
	// ExpireSeconds > 0 makes a temporary code (QR_STR_SCENE, at most 30 days); 0 a permanent one
	// (QR_LIMIT_STR_SCENE, limited to 100,000 per account).
	ExpireSeconds int
}

// QRCode is a created parametric QR code.
type QRCode struct {
	Ticket        string `json:"ticket"`
	ExpireSeconds int    `json:"expire_seconds"`
	URL           string `json:"url"` // the QR content; render it yourself, or use ImageURL
}

// ImageURL is WeChat's rendering of the code.
func (q QRCode) ImageURL() string {
	return "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=" + url.QueryEscape(q.Ticket)
}

// CreateQRCode calls /cgi-bin/qrcode/create with a string scene.
func (c *Client) CreateQRCode(ctx context.Context, r QRCodeRequest) (QRCode, error) {
	if len(r.Scene) == 0 || len(r.Scene) > 64 {
		return QRCode{}, fmt.Errorf("wechat api /cgi-bin/qrcode/create: scene must be 1..64 characters, got %d", len(r.Scene))
	}
	body := map[string]any{"action_name": "QR_LIMIT_STR_SCENE",
		"action_info": map[string]any{"scene": map[string]string{"scene_str": r.Scene}}}
	if r.ExpireSeconds > 0 {
		body["action_name"], body["expire_seconds"] = "QR_STR_SCENE", r.ExpireSeconds
	}
	var out QRCode
	err := c.call(ctx, http.MethodPost, "/cgi-bin/qrcode/create", nil, body, &out)
	return out, err
}

// JSTicket is a JS-SDK ticket and when it expires.
type JSTicket struct {
	Value     string
	ExpiresAt time.Time
}

// JSAPITicket fetches the JS-SDK ticket (/cgi-bin/ticket/getticket?type=jsapi) that signs
// wx.config on the account's H5 pages.
func (c *Client) JSAPITicket(ctx context.Context) (JSTicket, error) {
	var out struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := c.call(ctx, http.MethodGet, "/cgi-bin/ticket/getticket", url.Values{"type": {"jsapi"}}, nil, &out); err != nil {
		return JSTicket{}, err
	}
	return JSTicket{Value: out.Ticket, ExpiresAt: time.Now().Add(time.Duration(out.ExpiresIn) * time.Second)}, nil
}

// PrivateTemplate is one of the account's templates (/cgi-bin/template/get_all_private_template).
// Content holds the placeholders {{key.DATA}} whose keys a send must fill exactly.
type PrivateTemplate struct {
	TemplateID      string `json:"template_id"`
	Title           string `json:"title"`
	PrimaryIndustry string `json:"primary_industry"`
	DeputyIndustry  string `json:"deputy_industry"`
	Content         string `json:"content"`
	Example         string `json:"example"`
}

// PrivateTemplates lists the account's templates with their declared content.
func (c *Client) PrivateTemplates(ctx context.Context) ([]PrivateTemplate, error) {
	var out struct {
		List []PrivateTemplate `json:"template_list"`
	}
	if err := c.call(ctx, http.MethodGet, "/cgi-bin/template/get_all_private_template", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.List, nil
}
