package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// DeviceQRInfo is what /device/verify_qrcode says a WeChat device QR code names.
type DeviceQRInfo struct {
	DeviceType string `json:"device_type"`
	DeviceID   string `json:"device_id"`
	MAC        string `json:"mac"`
}

// IsDeviceQR reports whether content is a WeChat device QR code (http://we.qq.com/d/<ticket>,
// optionally with #<base64 data>), which VerifyQRCode resolves.
func IsDeviceQR(content string) bool {
	s := strings.TrimSpace(content)
	return strings.HasPrefix(s, "http://we.qq.com/d/") || strings.HasPrefix(s, "https://we.qq.com/d/")
}

// VerifyQRCode resolves a WeChat device QR code's content (what a scan gave) to the device it
// names (/device/verify_qrcode, body {"ticket": content}).
func (c *Client) VerifyQRCode(ctx context.Context, content string) (DeviceQRInfo, error) {
	var out DeviceQRInfo
	if err := c.call(ctx, http.MethodPost, "/device/verify_qrcode", nil, map[string]string{"ticket": strings.TrimSpace(content)}, &out); err != nil {
		return DeviceQRInfo{}, err
	}
	if out.DeviceID == "" {
		return DeviceQRInfo{}, errors.New("wechat api /device/verify_qrcode: response without device_id")
	}
	return out, nil
}
