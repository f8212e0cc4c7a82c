package wechatsim

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// This file is WeChat's message signing and encryption (消息加解密), written from the "message
// encryption" documentation and checked against its sample vectors (crypto_test.go). It does not
// share code with Sprout: the simulator must catch Sprout's mistakes, not repeat them.

// Mode is the account's message encryption mode (消息加解密方式) in the server configuration.
type Mode int

const (
	// ModeAuto is plaintext without an EncodingAESKey, safe with one.
	ModeAuto Mode = iota
	// ModePlaintext (明文): callbacks are plain XML.
	ModePlaintext
	// ModeCompatible (兼容): callbacks carry the plain fields and the Encrypt element; the reply
	// may be plain or encrypted.
	ModeCompatible
	// ModeSafe (安全): callbacks carry only ToUserName and Encrypt; the reply must be encrypted.
	ModeSafe
)

func (m Mode) String() string {
	switch m {
	case ModePlaintext:
		return "plaintext"
	case ModeCompatible:
		return "compatible"
	case ModeSafe:
		return "safe"
	}
	return "auto"
}

// sign is WeChat's signature: the strings sorted, concatenated, SHA-1, lower-case hex. With
// (token, timestamp, nonce) it is the URL's signature; with the Encrypt text added, msg_signature.
func sign(parts ...string) string {
	s := append([]string(nil), parts...)
	sort.Strings(s)
	h := sha1.Sum([]byte(strings.Join(s, "")))
	return hex.EncodeToString(h[:])
}

// envelope encrypts and decrypts the safe-mode payload: AESKey = base64(EncodingAESKey+"="),
// AES-256-CBC with IV = AESKey[:16], plaintext random(16) | len(4, big-endian) | msg | appid,
// PKCS#7 padded to a multiple of 32 bytes.
type envelope struct {
	key   []byte
	appID string
	block cipher.Block
}

const padBlock = 32

func newEnvelope(encodingAESKey, appID string) (*envelope, error) {
	if len(encodingAESKey) != 43 {
		return nil, fmt.Errorf("EncodingAESKey must be 43 characters, got %d", len(encodingAESKey))
	}
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("EncodingAESKey is not base64 of 32 bytes")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &envelope{key: key, appID: appID, block: b}, nil
}

// encrypt seals msg with a random 16-byte prefix.
func (e *envelope) encrypt(msg []byte) string {
	r := make([]byte, 16)
	rand.Read(r)
	return e.encryptWith(r, msg)
}

func (e *envelope) encryptWith(random, msg []byte) string {
	var b bytes.Buffer
	b.Write(random)
	binary.Write(&b, binary.BigEndian, uint32(len(msg)))
	b.Write(msg)
	b.WriteString(e.appID)
	n := padBlock - b.Len()%padBlock
	b.Write(bytes.Repeat([]byte{byte(n)}, n))
	out := make([]byte, b.Len())
	cipher.NewCBCEncrypter(e.block, e.key[:16]).CryptBlocks(out, b.Bytes())
	return base64.StdEncoding.EncodeToString(out)
}

// decrypt opens an Encrypt text and checks the trailing appid.
func (e *envelope) decrypt(text string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("field Encrypt is not base64: %w", err)
	}
	if len(raw) == 0 || len(raw)%aes.BlockSize != 0 {
		return nil, errors.New("field Encrypt is not a whole number of AES blocks")
	}
	out := make([]byte, len(raw))
	cipher.NewCBCDecrypter(e.block, e.key[:16]).CryptBlocks(out, raw)
	n := int(out[len(out)-1])
	if n < 1 || n > padBlock || n > len(out) {
		return nil, errors.New("bad padding")
	}
	out = out[:len(out)-n]
	if len(out) < 20 {
		return nil, errors.New("decrypted text too short")
	}
	l := int(binary.BigEndian.Uint32(out[16:20]))
	if l > len(out)-20 {
		return nil, errors.New("bad message length")
	}
	msg, app := out[20:20+l], string(out[20+l:])
	if app != e.appID {
		return nil, fmt.Errorf("encrypted for appid %q, not %q", app, e.appID)
	}
	return msg, nil
}
