package api

import (
	"context"
	"net/http"
	"net/url"
)

// BoundDevice is one device in /device/get_bind_device's list.
type BoundDevice struct {
	DeviceType string `json:"device_type"`
	DeviceID   string `json:"device_id"`
}

// GetOpenID lists the users WeChat's device platform has bound to a device
// (GET /device/get_openid?device_type=&device_id=; answers {"open_id":[...],"resp_msg":{...}}).
func (c *Client) GetOpenID(ctx context.Context, deviceType, deviceID string) ([]string, error) {
	var out struct {
		OpenID []string `json:"open_id"`
	}
	err := c.call(ctx, http.MethodGet, "/device/get_openid", url.Values{"device_type": {deviceType}, "device_id": {deviceID}}, nil, &out)
	return out.OpenID, err
}

// GetBindDevice lists the devices WeChat's device platform has bound to a user
// (GET /device/get_bind_device?openid=; answers {"resp_msg":{...},"openid":..,"device_list":[...]}).
func (c *Client) GetBindDevice(ctx context.Context, openID string) ([]BoundDevice, error) {
	var out struct {
		DeviceList []BoundDevice `json:"device_list"`
	}
	err := c.call(ctx, http.MethodGet, "/device/get_bind_device", url.Values{"openid": {openID}}, nil, &out)
	return out.DeviceList, err
}
