package wechat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Errors returned by the crypto layer. The handler maps them to 4xx answers.
var (
	ErrBadSignature  = errors.New("wechat: signature mismatch")
	ErrBadKey        = errors.New("wechat: EncodingAESKey must be 43 characters from [A-Za-z0-9]")
	ErrBadCiphertext = errors.New("wechat: ciphertext is not valid base64 of whole AES blocks")
	ErrBadPadding    = errors.New("wechat: bad PKCS#7 padding after decryption")
	ErrBadPlaintext  = errors.New("wechat: decrypted layout is malformed (length field out of range)")
	ErrAppIDMismatch = errors.New("wechat: decrypted message is for another AppID")
	errEmptyAppID    = errors.New("wechat: AppID is required for encryption")
)

// padBlock is the PKCS#7 block size WeChat uses: 32 bytes, not the AES block size of 16.
const padBlock = 32

// Signature is WeChat's request signature: the parts sorted as strings, concatenated, SHA-1,
// lowercase hex. With (token, timestamp, nonce) it is the signature query parameter; with the
// Encrypt field added it is msg_signature.
func Signature(parts ...string) string {
	s := slices.Clone(parts)
	slices.Sort(s)
	sum := sha1.Sum([]byte(strings.Join(s, "")))
	return hex.EncodeToString(sum[:])
}

// MsgSignature is the signature over an encrypted payload: sha1(sort(token, timestamp, nonce, encrypt)).
func MsgSignature(token, timestamp, nonce, encrypt string) string {
	return Signature(token, timestamp, nonce, encrypt)
}

// VerifySignature reports whether got equals the signature of parts, in constant time.
func VerifySignature(got string, parts ...string) bool {
	want := Signature(parts...)
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(got)), []byte(want)) == 1
}

// Cipher implements WeChat's message encryption for one account: AES-256-CBC with the key from the
// EncodingAESKey, IV = key[:16], PKCS#7 padding to 32 bytes, and the plaintext layout
// random(16) || len(4, big endian) || msg || appid.
//
// The cipher has no MAC: integrity comes from msg_signature, which callers must verify before
// calling Decrypt. A Cipher is safe for concurrent use.
type Cipher struct {
	block cipher.Block
	iv    []byte
	appID string
}

// NewCipher returns the Cipher for an account. encodingAESKey is the 43-character value from the
// official-account settings; appID is the account's AppID, appended on encryption and checked on
// decryption.
func NewCipher(encodingAESKey, appID string) (*Cipher, error) {
	key, err := DecodeAESKey(encodingAESKey)
	if err != nil {
		return nil, err
	}
	if appID == "" {
		return nil, errEmptyAppID
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("wechat: %w", err)
	}
	return &Cipher{block: block, iv: slices.Clone(key[:aes.BlockSize]), appID: appID}, nil
}

// DecodeAESKey turns a 43-character EncodingAESKey into the 32-byte AES key (base64 of key+"=").
func DecodeAESKey(encodingAESKey string) ([]byte, error) {
	if len(encodingAESKey) != 43 {
		return nil, ErrBadKey
	}
	for _, c := range encodingAESKey {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return nil, ErrBadKey
		}
	}
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return nil, ErrBadKey
	}
	return key, nil
}

// Encrypt returns base64(AES-CBC(random16 || len || msg || appid)) with a fresh random prefix.
func (c *Cipher) Encrypt(msg []byte) (string, error) {
	var random [16]byte
	if _, err := rand.Read(random[:]); err != nil {
		return "", fmt.Errorf("wechat: reading random prefix: %w", err)
	}
	return c.EncryptWithRandom(random, msg), nil
}

// EncryptWithRandom is Encrypt with a caller-chosen 16-byte prefix, for reproducible tests.
func (c *Cipher) EncryptWithRandom(random [16]byte, msg []byte) string {
	n := 16 + 4 + len(msg) + len(c.appID)
	pad := padBlock - n%padBlock // 1..32; a whole block when already aligned
	buf := make([]byte, 0, n+pad)
	buf = append(buf, random[:]...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(msg)))
	buf = append(buf, msg...)
	buf = append(buf, c.appID...)
	buf = append(buf, bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf)
}

// Decrypt reverses Encrypt and checks that the trailing AppID is this account's.
func (c *Cipher) Decrypt(encrypted string) ([]byte, error) {
	msg, appID, err := c.open(encrypted)
	if err != nil {
		return nil, err
	}
	if appID != c.appID {
		return nil, ErrAppIDMismatch
	}
	return msg, nil
}

func (c *Cipher) open(encrypted string) (msg []byte, appID string, err error) {
	buf, err := base64.StdEncoding.DecodeString(encrypted)
	if err != nil || len(buf) == 0 || len(buf)%aes.BlockSize != 0 {
		return nil, "", ErrBadCiphertext
	}
	cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(buf, buf)
	pad := int(buf[len(buf)-1])
	if pad < 1 || pad > padBlock || pad > len(buf) {
		return nil, "", ErrBadPadding
	}
	for _, b := range buf[len(buf)-pad:] {
		if int(b) != pad {
			return nil, "", ErrBadPadding
		}
	}
	buf = buf[:len(buf)-pad]
	if len(buf) < 20 {
		return nil, "", ErrBadPlaintext
	}
	n := binary.BigEndian.Uint32(buf[16:20])
	if uint64(n) > uint64(len(buf)-20) {
		return nil, "", ErrBadPlaintext
	}
	return buf[20 : 20+n], string(buf[20+n:]), nil
}
