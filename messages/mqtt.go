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

// MQTTMAC is the MQTT proof: HMAC-SHA256(secret, "<device id>|<unix seconds>").
func MQTTMAC(secret []byte, deviceID string, unixSeconds int64) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(MQTTUsername(deviceID, unixSeconds)))
	return m.Sum(nil)
}

// MQTTPassword is the MQTT Password a device sends: MQTTMAC in lowercase hex.
func MQTTPassword(secret []byte, deviceID string, unixSeconds int64) string {
	return hex.EncodeToString(MQTTMAC(secret, deviceID, unixSeconds))
}
