package qr_test

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

var (
	potKey   = []byte("0123456789abcdef-pot-key")
	otherKey = []byte("fedcba9876543210-other-key")
	keys     = qr.KeyMap{"pot": potKey, "mini": otherKey}
	now      = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

func TestSignedCodeVerifiesInEveryForm(t *testing.T) {
	c := qr.Code{Product: "pot", Device: "SP-00042-ab", Expires: now.Add(24 * time.Hour).Truncate(time.Second)}
	tok, err := qr.Scene(potKey, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > 64 || !strings.HasPrefix(tok, "s1.pot.SP-00042-ab.") {
		t.Fatalf("token %q (%d chars)", tok, len(tok))
	}
	for _, form := range []string{tok, "qrscene_" + tok, qr.URL("https://sprout.example/bind", tok), qr.URL("https://sprout.example/bind?lang=zh", tok),
		qr.LabelURL("https://sprout.example", tok), qr.LabelURL("https://sprout.example/", tok), qr.LabelURL("https://sprout.example/prefix", tok)} {
		got, err := qr.Verify(keys, form, now)
		if err != nil || got.Product != "pot" || got.Device != "SP-00042-ab" || !got.Expires.Equal(c.Expires) {
			t.Errorf("Verify(%q) = %+v, %v", form, got, err)
		}
	}
	forever, _ := qr.Sign(potKey, qr.Code{Product: "pot", Device: "d1"})
	if got, err := qr.Verify(keys, forever, now.AddDate(50, 0, 0)); err != nil || !got.Expires.IsZero() {
		t.Errorf("a code without expiry: %+v, %v", got, err)
	}
}

func TestVerifyRejectsForgedExpiredAndMalformedCodes(t *testing.T) {
	good, _ := qr.Sign(potKey, qr.Code{Product: "pot", Device: "dev1", Expires: now.Add(time.Hour)})
	parts := strings.Split(good, ".")
	otherDevice := strings.Join([]string{parts[0], parts[1], "dev2", parts[3], parts[4]}, ".")
	longer := strings.Join([]string{parts[0], parts[1], parts[2], "zzzzzz", parts[4]}, ".")
	underOtherKey, _ := qr.Sign(otherKey, qr.Code{Product: "pot", Device: "dev1"})
	expired, _ := qr.Sign(potKey, qr.Code{Product: "pot", Device: "dev1", Expires: now.Add(-time.Second)})
	unknown, _ := qr.Sign(potKey, qr.Code{Product: "lamp", Device: "dev1"})
	flipped := []byte(good)
	if flipped[len(flipped)-1] == 'A' {
		flipped[len(flipped)-1] = 'B'
	} else {
		flipped[len(flipped)-1] = 'A'
	}
	cases := []struct {
		name string
		in   string
		want error
	}{
		{"device swapped", otherDevice, qr.ErrForged},
		{"expiry extended", longer, qr.ErrForged},
		{"signed with another product's key", underOtherKey, qr.ErrForged},
		{"mac altered", string(flipped), qr.ErrForged},
		{"expired", expired, qr.ErrExpired},
		{"unknown product", unknown, qr.ErrUnknownProduct},
		{"empty", "", qr.ErrMalformed},
		{"a WeChat device ticket", "http://we.qq.com/d/AQabc", qr.ErrMalformed},
		{"wrong version", strings.Replace(good, "s1.", "s9.", 1), qr.ErrMalformed},
		{"missing part", strings.Join(parts[:4], "."), qr.ErrMalformed},
		{"bad expiry", strings.Join([]string{parts[0], parts[1], parts[2], "!!", parts[4]}, "."), qr.ErrMalformed},
		{"short mac", good[:len(good)-2], qr.ErrMalformed},
		{"bad characters", strings.Replace(good, "dev1", "dev 1", 1), qr.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := qr.Verify(keys, tc.in, now); !errors.Is(err, tc.want) {
				t.Fatalf("Verify(%q) error = %v, want %v", tc.in, err, tc.want)
			}
		})
	}
}

func TestSignRefusesWeakKeysBadFieldsAndOverlongScenes(t *testing.T) {
	if _, err := qr.Sign([]byte("short"), qr.Code{Product: "pot", Device: "d"}); !errors.Is(err, qr.ErrWeakKey) {
		t.Errorf("weak key: %v", err)
	}
	for _, c := range []qr.Code{{Product: "", Device: "d"}, {Product: "pot", Device: ""}, {Product: "p.t", Device: "d"},
		{Product: "pot", Device: "a/b"}, {Product: strings.Repeat("p", 17), Device: "d"}, {Product: "pot", Device: strings.Repeat("d", 65)}} {
		if _, err := qr.Sign(potKey, c); !errors.Is(err, qr.ErrBadField) {
			t.Errorf("Sign(%+v) error = %v, want ErrBadField", c, err)
		}
	}
	long := qr.Code{Product: "pot", Device: strings.Repeat("d", 40)}
	if _, err := qr.Scene(potKey, long); !errors.Is(err, qr.ErrTooLong) {
		t.Errorf("40-character device as a scene: %v, want ErrTooLong", err)
	}
	tok, err := qr.Sign(potKey, long) // the URL form has no such limit
	if err != nil {
		t.Fatal(err)
	}
	if _, err := qr.Verify(keys, qr.URL("https://sprout.example/b", tok), now); err != nil {
		t.Errorf("long device in the URL form: %v", err)
	}
}

func TestPNGRendersTheToken(t *testing.T) {
	tok, _ := qr.Sign(potKey, qr.Code{Product: "pot", Device: "dev1"})
	b, err := qr.PNG(tok, 256)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 256 || img.Bounds().Dy() != 256 {
		t.Fatalf("image is %v, want 256x256", img.Bounds())
	}
}

// A user scans Sprout's parametric QR in the simulated WeChat; the callback reaches a dispatcher
// that verifies the scene, first as subscribe (qrscene_ prefix), then as SCAN.
func TestScannedSceneVerifiesThroughTheCallback(t *testing.T) {
	sim, err := wechatsim.New(wechatsim.Options{EncodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := wechat.NewHandler(wechat.Options{AppID: sim.AppID(), Token: sim.Token(), EncodingAESKey: sim.EncodingAESKey()},
		wechat.DispatcherFunc(func(_ context.Context, m *wechat.Message) (*wechat.Reply, error) {
			c, err := qr.Verify(keys, m.Scene(), time.Now())
			if err != nil {
				return wechat.TextReply("cannot bind: " + err.Error()), nil
			}
			return wechat.TextReply(m.Event + " bind " + c.Device), nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.Handler(h))
	defer srv.Close()
	sim.SetCallbackURL(srv.URL)

	scene, _ := qr.Scene(potKey, qr.Code{Product: "pot", Device: "SP-7", Expires: time.Now().Add(time.Hour)})
	u := sim.NewUser("")
	for _, want := range []string{"subscribe bind SP-7", "SCAN bind SP-7"} {
		res, err := u.Scan(context.Background(), sim.CreateQR(scene))
		if err != nil || res.Reply == nil || res.Reply.Content != want {
			t.Fatalf("scan %+v, %v; want %q", res, err, want)
		}
	}
	res, err := u.Scan(context.Background(), sim.CreateQR(strings.Replace(scene, "SP-7", "SP-8", 1)))
	if err != nil || res.Reply == nil || !strings.Contains(res.Reply.Content, "forged") {
		t.Fatalf("a forged scene was answered %+v (%v)", res, err)
	}
}

func TestThirtyCharacterDeviceFitsASceneWithExpiry(t *testing.T) {
	c := qr.Code{Product: "potv2x", Device: strings.Repeat("d", 30), Expires: now.AddDate(10, 0, 0)}
	tok, err := qr.Scene(potKey, c)
	if err != nil || len(tok) > 64 {
		t.Fatalf("Scene = %q (%d chars), %v", tok, len(tok), err)
	}
}

func TestLabelURLIsThePublicOriginAndTheToken(t *testing.T) {
	tok, err := qr.Scene(potKey, qr.Code{Product: "pot", Device: "SP-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := qr.LabelURL("https://sprout.example/", tok); got != "https://sprout.example/b/"+tok {
		t.Fatalf("LabelURL = %q", got)
	}
	for _, s := range []string{tok, "qrscene_" + tok, qr.LabelURL("https://x.example", tok), "s1.a.b.0.forgedmacforgedma"} {
		if !qr.IsCode(s) {
			t.Errorf("IsCode(%q) = false, want true (Sprout's shape)", s)
		}
	}
	for _, s := range []string{"", "spring-campaign", "123456", "s1.only.three", "https://example.com/promo", "http://weixin.qq.com/q/02abc", "http://we.qq.com/d/AQAbc"} {
		if qr.IsCode(s) {
			t.Errorf("IsCode(%q) = true, want false (not Sprout's)", s)
		}
	}
}
