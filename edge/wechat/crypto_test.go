package wechat

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"testing"
)

const (
	testKey   = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	testAppID = "wx1234567890abcdef"
)

func TestSignatureMatchesOfficialVector(t *testing.T) {
	// From the message-push documentation: Token=AAAAA.
	got := Signature("AAAAA", "1714036504", "1514711492")
	if want := "f464b24fc39322e44b38aa78f5edd27bd1441696"; got != want {
		t.Fatalf("Signature = %s, want %s", got, want)
	}
	if !VerifySignature("F464B24FC39322E44B38AA78F5EDD27BD1441696", "AAAAA", "1714036504", "1514711492") {
		t.Error("upper-case hex signature was not accepted")
	}
	if VerifySignature(got, "AAAAB", "1714036504", "1514711492") {
		t.Error("signature verified under another token")
	}
}

func TestMsgSignatureSortsFourStrings(t *testing.T) {
	a := MsgSignature("tok", "123", "456", "ENC")
	b := Signature("ENC", "456", "tok", "123")
	if a != b {
		t.Fatalf("MsgSignature depends on argument order: %s vs %s", a, b)
	}
	if a == Signature("tok", "123", "456") {
		t.Fatal("MsgSignature ignores the Encrypt field")
	}
}

// The expected ciphertext was produced independently: the layout assembled by hand and encrypted
// with `openssl enc -aes-256-cbc -nopad -K key -iv key[:16]`.
func TestEncryptMatchesKnownAnswer(t *testing.T) {
	c := mustCipher(t, testKey, testAppID)
	msg := []byte("<xml><Content><![CDATA[hello]]></Content></xml>")
	got := c.EncryptWithRandom([16]byte([]byte("0123456789abcdef")), msg)
	want := "Q3stYC6hdFzMh9T8HCvyDHbN6Fa9cLm9zFzeI/qFIuHpaVjY+9V07So4UCQVPmCHdg+1x7elCwIxFy1BcXzorf83ASWr99jIQjrY3LDZAwowsSoHQOuy2RRkJMrx0KHI"
	if got != want {
		t.Fatalf("ciphertext\n got %s\nwant %s", got, want)
	}
	plain, err := c.Decrypt(want)
	if err != nil || !bytes.Equal(plain, msg) {
		t.Fatalf("Decrypt = %q, %v", plain, err)
	}
}

func TestEncryptPadsToWhole32ByteBlocks(t *testing.T) {
	c := mustCipher(t, testKey, testAppID)
	for n := 0; n <= 100; n++ {
		msg := bytes.Repeat([]byte{'x'}, n)
		enc := c.EncryptWithRandom([16]byte{}, msg)
		raw, _ := base64.StdEncoding.DecodeString(enc)
		unpadded := 16 + 4 + n + len(testAppID)
		if len(raw)%32 != 0 || len(raw) <= unpadded || len(raw) > unpadded+32 {
			t.Fatalf("len(msg)=%d: ciphertext %d bytes, want the next multiple of 32 above %d", n, len(raw), unpadded)
		}
		got, err := c.Decrypt(enc)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("len(msg)=%d: round trip = %q, %v", n, got, err)
		}
	}
}

func TestRoundTripWithRandomKeysAndMessages(t *testing.T) {
	for i := 0; i < 50; i++ {
		key := randomEncodingAESKey(t)
		c := mustCipher(t, key, "wxrandomapp")
		msg := make([]byte, i*37)
		rand.Read(msg)
		enc, err := c.Encrypt(msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decrypt(enc)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("key %d: round trip failed: %v", i, err)
		}
	}
}

func TestEncryptUsesAFreshRandomPrefix(t *testing.T) {
	c := mustCipher(t, testKey, testAppID)
	a, _ := c.Encrypt([]byte("same"))
	b, _ := c.Encrypt([]byte("same"))
	if a == b {
		t.Fatal("two encryptions of the same message are identical")
	}
}

func TestDecryptRejectsTampering(t *testing.T) {
	c := mustCipher(t, testKey, testAppID)
	good := c.EncryptWithRandom([16]byte{1, 2, 3}, []byte("<xml>hello</xml>"))
	raw, _ := base64.StdEncoding.DecodeString(good)

	flipLast := bytes.Clone(raw)
	flipLast[len(flipLast)-1] ^= 0x01

	cases := []struct {
		name string
		enc  string
		want error
	}{
		{"not base64", "%%%", ErrBadCiphertext},
		{"empty", "", ErrBadCiphertext},
		{"not whole AES blocks", base64.StdEncoding.EncodeToString(raw[:len(raw)-3]), ErrBadCiphertext},
		{"flipped bit in the last block", base64.StdEncoding.EncodeToString(flipLast), ErrBadPadding},
		{"bad padding byte", c.sealRaw(t, append(bytes.Repeat([]byte{'a'}, 31), 0)), ErrBadPadding},
		{"padding larger than the block", c.sealRaw(t, append(bytes.Repeat([]byte{'a'}, 31), 33)), ErrBadPadding},
		{"inconsistent padding", c.sealRaw(t, append(bytes.Repeat([]byte{'a'}, 29), 7, 3, 3)), ErrBadPadding},
		{"length field beyond the data", c.sealRaw(t, layout(1000, "<xml/>", testAppID)), ErrBadPlaintext},
		{"wrong AppID", mustCipher(t, testKey, "wxOTHERAPP").EncryptWithRandom([16]byte{}, []byte("<xml/>")), ErrAppIDMismatch},
		{"no AppID", c.sealRaw(t, layout(6, "<xml/>", "")), ErrAppIDMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Decrypt(tc.enc)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decrypt error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNewCipherRejectsBadKeys(t *testing.T) {
	for _, key := range []string{"", testKey[:42], testKey + "A", testKey[:42] + "+", testKey[:42] + "="} {
		if _, err := NewCipher(key, testAppID); !errors.Is(err, ErrBadKey) {
			t.Errorf("NewCipher(%q) error = %v, want ErrBadKey", key, err)
		}
	}
	if _, err := NewCipher(testKey, ""); err == nil {
		t.Error("NewCipher accepted an empty AppID")
	}
}

func mustCipher(t *testing.T, key, appID string) *Cipher {
	t.Helper()
	c, err := NewCipher(key, appID)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomEncodingAESKey(t *testing.T) string {
	t.Helper()
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 43)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// layout builds random(16) || len || msg || appid, padded correctly, with a chosen length field.
func layout(lenField uint32, msg, appID string) []byte {
	p := make([]byte, 16, 64)
	p = binary.BigEndian.AppendUint32(p, lenField)
	p = append(p, msg...)
	p = append(p, appID...)
	pad := 32 - len(p)%32
	return append(p, bytes.Repeat([]byte{byte(pad)}, pad)...)
}

// sealRaw encrypts already padded bytes, to build malformed plaintexts.
func (c *Cipher) sealRaw(t *testing.T, p []byte) string {
	t.Helper()
	if len(p)%16 != 0 {
		t.Fatalf("sealRaw needs whole blocks, got %d bytes", len(p))
	}
	buf := bytes.Clone(p)
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf)
}
