package messages

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// MQTTMaxClockSkew is how far the time a device signed its MQTT password may be from the server's
// clock, either way: a captured password is useless after it.
const MQTTMaxClockSkew = 5 * time.Minute

// MQTTUsername is the MQTT Username a device sends: "<device id>|<unix seconds>".
func MQTTUsername(deviceID string, unixSeconds int64) string {
	return deviceID + "|" + strconv.FormatInt(unixSeconds, 10)
}

// MQTTUsernameFirmware is the Username of a device that names the firmware version it runs
// (which updates over the air need, docs/ota.md): "<device id>|<unix seconds>|<firmware version>".
// An empty version gives MQTTUsername.
func MQTTUsernameFirmware(deviceID string, unixSeconds int64, firmware string) string {
	if firmware == "" {
		return MQTTUsername(deviceID, unixSeconds)
	}
	return MQTTUsername(deviceID, unixSeconds) + "|" + firmware
}

// MQTTMAC is the MQTT proof: HMAC-SHA256(secret, "<device id>|<unix seconds>").
func MQTTMAC(secret []byte, deviceID string, unixSeconds int64) []byte {
	return MQTTMACFirmware(secret, deviceID, unixSeconds, "")
}

// MQTTMACFirmware is the MQTT proof over MQTTUsernameFirmware: the password signs the whole
// Username, the version with it.
func MQTTMACFirmware(secret []byte, deviceID string, unixSeconds int64, firmware string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(MQTTUsernameFirmware(deviceID, unixSeconds, firmware)))
	return m.Sum(nil)
}

// MQTTPassword is the MQTT Password a device sends: MQTTMAC in lowercase hex.
func MQTTPassword(secret []byte, deviceID string, unixSeconds int64) string {
	return hex.EncodeToString(MQTTMAC(secret, deviceID, unixSeconds))
}
