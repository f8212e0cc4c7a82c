// Package airkiss encodes WiFi credentials the way WeChat's AirKiss sender does: as the lengths
// of broadcast UDP packets (docs/wechat-hardware.md 6.1). It exists to test the firmware's
// decoder (firmware/core/airkiss.c): Encode produces one round of the sequence, Air adds what a
// sniffing radio sees (a base length offset, noise, loss, other stations' traffic), and the
// vectors command writes both into test vectors the C tests read. It is not a sender.
package airkiss

import (
	"errors"
	"fmt"
)

// Repetitions within one round, as in the public encoders.
const (
	GuideRepeats = 50 // 1,2,3,4 repeated
	MagicRepeats = 20 // the 4 magic words repeated
)

// Limits the decoder supports.
const (
	MaxSSIDBytes     = 32
	MaxPasswordBytes = 64
)

// CRC8 is the Maxim/Dallas CRC8 (reflected polynomial 0x8C, init 0) AirKiss uses.
func CRC8(b []byte) byte {
	var crc byte
	for _, x := range b {
		crc ^= x
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x8C
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// ErrTooLong reports an SSID or password over the limits above.
var ErrTooLong = errors.New("airkiss: ssid or password too long")

// Encode returns one round of AirKiss words (UDP payload lengths, before the radio's base
// offset): guide, magic, prefix, then the sequence groups over password || random || ssid.
// It returns nil for an empty or too long SSID or a too long password; Check says why.
func Encode(ssid, password string, random byte) []int {
	if Check(ssid, password) != nil {
		return nil
	}
	var out []int
	for i := 0; i < GuideRepeats; i++ {
		out = append(out, 1, 2, 3, 4)
	}
	total := len(ssid) + len(password) + 1
	ssidCRC := CRC8([]byte(ssid))
	magic := []int{total >> 4, 0x10 | total&0xF, 0x20 | int(ssidCRC>>4), 0x30 | int(ssidCRC&0xF)}
	if magic[0] == 0 {
		magic[0] = 0x08 // a zero-length word is avoided
	}
	for i := 0; i < MagicRepeats; i++ {
		out = append(out, magic...)
	}
	pl := byte(len(password))
	plCRC := CRC8([]byte{pl})
	out = append(out, 0x40|int(pl>>4), 0x50|int(pl&0xF), 0x60|int(plCRC>>4), 0x70|int(plCRC&0xF))

	data := make([]byte, 0, total)
	data = append(data, password...)
	data = append(data, random)
	data = append(data, ssid...)
	for index := 0; index*4 < len(data); index++ {
		group := data[index*4 : min(index*4+4, len(data))]
		crc := CRC8(append([]byte{byte(index)}, group...))
		out = append(out, 0x80|int(crc&0x7F), 0x80|index)
		for _, b := range group {
			out = append(out, 0x100|int(b))
		}
	}
	return out
}

// Check reports whether ssid and password can be encoded.
func Check(ssid, password string) error {
	if len(ssid) == 0 || len(ssid) > MaxSSIDBytes || len(password) > MaxPasswordBytes {
		return fmt.Errorf("%w: ssid %d bytes (1..%d), password %d bytes (max %d)",
			ErrTooLong, len(ssid), MaxSSIDBytes, len(password), MaxPasswordBytes)
	}
	return nil
}
