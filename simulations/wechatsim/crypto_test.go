package wechatsim

import (
	"strings"
	"testing"
)

// The vectors below are WeChat's own: the message-push doc's signature example and the samples
// shipped with the official "message encryption" code (WXBizMsgCrypt: the Java test's fixed-random
// encryption and the Python sample's encrypted push).

func TestSignatureMatchesWeChatsExample(t *testing.T) {
	if got := sign("AAAAA", "1714036504", "1514711492"); got != "f464b24fc39322e44b38aa78f5edd27bd1441696" {
		t.Fatalf("signature %s", got)
	}
}

func TestEncryptionMatchesTheOfficialJavaSample(t *testing.T) {
	e, err := newEnvelope("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wxb11529c136998cb6")
	if err != nil {
		t.Fatal(err)
	}
	got := e.encryptWith([]byte("aaaabbbbccccdddd"), []byte("我是中文abcd123"))
	if want := "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="; got != want {
		t.Fatalf("encrypt = %s\nwant      %s", got, want)
	}
	plain, err := e.decrypt(got)
	if err != nil || string(plain) != "我是中文abcd123" {
		t.Fatalf("decrypt = %q, %v", plain, err)
	}
}

const pySampleEncrypt = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="

func TestDecryptionAndMsgSignatureMatchTheOfficialPythonSample(t *testing.T) {
	if got := sign("spamtest", "1409735669", "1320562132", pySampleEncrypt); got != "5d197aaffba7e9b25a30732f161a50dee96bd5fa" {
		t.Fatalf("msg_signature %s", got)
	}
	e, _ := newEnvelope("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx2c2769f8efd9abc2")
	plain, err := e.decrypt(pySampleEncrypt)
	if err != nil || !strings.Contains(string(plain), "<Content><![CDATA[abcdteT]]></Content>") {
		t.Fatalf("decrypt = %q, %v", plain, err)
	}
	t.Logf("sample push: %s", plain)
	other, _ := newEnvelope("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wxOTHER")
	if _, err := other.decrypt(pySampleEncrypt); err == nil {
		t.Fatal("a message for another appid was accepted")
	}
}

func TestPaddingIsToThirtyTwoBytes(t *testing.T) {
	e, _ := newEnvelope("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx")
	for n := 0; n < 70; n++ {
		msg := []byte(strings.Repeat("x", n))
		enc := e.encryptWith(make([]byte, 16), msg)
		plain, err := e.decrypt(enc)
		if err != nil || string(plain) != string(msg) {
			t.Fatalf("len %d: %q %v", n, plain, err)
		}
	}
	if _, err := newEnvelope("short", "wx"); err == nil {
		t.Fatal("a 5-character key was accepted")
	}
}
