package wechatsim_test

import (
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// The simulator is written from WeChat's documentation: its code imports nothing of Sprout (and,
// since it imports only the standard library, nothing of Sprout indirectly either).
func TestTheSimulatorImportsOnlyTheStandardLibrary(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			first, _, _ := strings.Cut(path, "/")
			if strings.Contains(first, ".") {
				t.Errorf("%s imports %s: the simulator may use the standard library only", f, path)
			}
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("only %d files checked", checked)
	}
	if _, err := os.Stat("sim.go"); err != nil {
		t.Fatal(err)
	}
}

func TestANewTokenRevokesThePreviousOneAndTokensExpire(t *testing.T) {
	c := newClock()
	p := start(t, wechatsim.Options{Clock: c.Now})
	first, second := newAPI(t, p), newAPI(t, p)
	if code := errcode(first.get("/device/get_stat?device_id=d")); code != 40001 {
		t.Fatalf("replaced token: errcode %d, want 40001", code)
	}
	if code := errcode(second.get("/device/get_stat?device_id=d")); code != 0 {
		t.Fatalf("current token: errcode %d", code)
	}
	c.Advance(7201 * time.Second)
	if code := errcode(second.get("/device/get_stat?device_id=d")); code != 42001 {
		t.Fatalf("expired token: errcode %d, want 42001", code)
	}
	if p.TokenFetches() != 2 {
		t.Fatalf("fetches = %d", p.TokenFetches())
	}
	bad := &api{t: t, p: p}
	if code := errcode(bad.get("/cgi-bin/token?grant_type=client_credential&appid=" + p.AppID() + "&secret=wrong")); code != 40125 {
		t.Fatalf("wrong secret: errcode %d", code)
	}
}

func TestEveryAPIEndpointChecksTheAccessToken(t *testing.T) {
	p := start(t, wechatsim.Options{})
	paths := []string{"/cgi-bin/message/template/send", "/cgi-bin/message/custom/send", "/cgi-bin/qrcode/create",
		"/cgi-bin/template/get_all_private_template", "/device/transmsg", "/device/getqrcode",
		"/device/authorize_device", "/device/compel_bind", "/device/compel_unbind", "/device/get_stat",
		"/device/get_openid", "/device/get_bind_device", "/device/verify_qrcode"}
	noTok := &api{t: t, p: p}
	forged := &api{t: t, p: p, tok: "forged"}
	for _, path := range paths {
		if c := errcode(noTok.post(path, "{}")); c != 41001 {
			t.Errorf("%s without a token: errcode %d, want 41001", path, c)
		}
		if c := errcode(forged.post(path, "{}")); c != 40001 {
			t.Errorf("%s with a forged token: errcode %d, want 40001", path, c)
		}
	}
}

func TestInjectedFailuresHitTheNextCallsOnlyAndShowInTheConversation(t *testing.T) {
	p := start(t, wechatsim.Options{})
	a := newAPI(t, p)
	p.FailNext("", 2, -1)
	p.FailNext("/device/get_stat", 1, 45009)
	stat := func() int { return errcode(a.get("/device/get_stat?device_id=d")) }
	got := []int{stat(), stat(), stat(), stat()}
	if got[0] != -1 || got[1] != -1 || got[2] != 45009 || got[3] != 0 {
		t.Fatalf("errcodes %v, want [-1 -1 45009 0]", got)
	}
	a = newAPI(t, p) // token endpoints are not hit by path-less failures
	p.NewUser("oF")
	p.FailNext("/cgi-bin/message/custom/send", 1, 45011)
	if c := a.cs("oF", "hello"); c != 45011 {
		t.Fatalf("errcode %d", c)
	}
	if e := last(p, "oF"); e.Kind != wechatsim.KindRefused || e.Errcode != 45011 || e.Text != "hello" {
		t.Fatalf("refusal recorded as %+v", e)
	}
}

func TestCallbacksAreBuiltSignedAndEncryptedAsWeChatDoes(t *testing.T) {
	for _, mode := range []wechatsim.Mode{wechatsim.ModePlaintext, wechatsim.ModeCompatible, wechatsim.ModeSafe} {
		t.Run(mode.String(), func(t *testing.T) {
			opts := wechatsim.Options{Mode: mode}
			if mode != wechatsim.ModePlaintext {
				opts.EncodingAESKey = aesKey
			}
			p := start(t, opts)
			s := newSprout(t, p)
			u := p.NewUser("oCB")
			if _, err := u.Subscribe(ctx5(t)); err != nil {
				t.Fatal(err)
			}
			if _, err := u.ClickMenu(ctx5(t), "WATER"); err != nil {
				t.Fatal(err)
			}
			m := s.all()[1]
			if m.Query.Get("openid") != "oCB" || m.MsgType != "event" || m.Event != "CLICK" || m.EventKey != "WATER" ||
				m.FromUserName != "oCB" || m.ToUserName != p.AccountID() {
				t.Fatalf("push %+v", m)
			}
			hasPlain := strings.Contains(m.Raw, "<EventKey><![CDATA[WATER]]></EventKey>")
			hasEnc := strings.Contains(m.Raw, "<Encrypt>")
			if hasPlain != (mode != wechatsim.ModeSafe) || hasEnc != (mode != wechatsim.ModePlaintext) ||
				(m.Query.Get("encrypt_type") == "aes") != hasEnc {
				t.Fatalf("%s body has plaintext %v, Encrypt %v: %s", mode, hasPlain, hasEnc, m.Raw)
			}
		})
	}
}

func TestSafeModeRefusesAPlaintextOrBadlySignedReply(t *testing.T) {
	p := start(t, wechatsim.Options{EncodingAESKey: aesKey})
	s := newSprout(t, p)
	u := p.NewUser("oSAFE")
	u.Subscribe(ctx5(t))
	s.answer = func(n int, m push) (time.Duration, string) { return 0, textReply(p, m, "plain") }
	if _, err := u.SendText(ctx5(t), "hi"); err == nil || !strings.Contains(err.Error(), "safe mode") {
		t.Fatalf("plaintext reply in safe mode: %v", err)
	}
	s.answer = func(n int, m push) (time.Duration, string) {
		enc := wechatsim.Seal(aesKey, p.AppID(), []byte(textReply(p, m, "秘密")))
		return 0, "<xml><Encrypt><![CDATA[" + enc + "]]></Encrypt><MsgSignature><![CDATA[" +
			wechatsim.Sign(p.Token(), "123", "n", enc) + "]]></MsgSignature><TimeStamp>123</TimeStamp><Nonce><![CDATA[n]]></Nonce></xml>"
	}
	r, err := u.SendText(ctx5(t), "hi")
	if err != nil || !r.Encrypted || r.Content != "秘密" {
		t.Fatalf("encrypted reply: %+v, %v", r, err)
	}
	s.answer = func(n int, m push) (time.Duration, string) {
		enc := wechatsim.Seal(aesKey, p.AppID(), []byte(textReply(p, m, "x")))
		return 0, "<xml><Encrypt><![CDATA[" + enc + "]]></Encrypt><MsgSignature><![CDATA[bad]]></MsgSignature><TimeStamp>1</TimeStamp><Nonce><![CDATA[n]]></Nonce></xml>"
	}
	if _, err := u.SendText(ctx5(t), "hi"); err == nil || !strings.Contains(err.Error(), "MsgSignature") {
		t.Fatalf("badly signed reply: %v", err)
	}
}

func TestAReplyToSomeoneElseIsRefused(t *testing.T) {
	p := start(t, wechatsim.Options{})
	s := newSprout(t, p)
	u := p.NewUser("oME")
	u.Subscribe(ctx5(t))
	s.answer = func(n int, m push) (time.Duration, string) {
		m.FromUserName = "oSOMEONE"
		return 0, textReply(p, m, "wrong person")
	}
	if _, err := u.SendText(ctx5(t), "hi"); err == nil {
		t.Fatal("a reply addressed to another user was shown")
	}
}

func TestACallbackIsRetriedWithTheSameBodyWhenSproutIsSlow(t *testing.T) {
	p := start(t, wechatsim.Options{CallbackTimeout: 100 * time.Millisecond})
	s := newSprout(t, p)
	u := p.NewUser("oRT")
	u.Subscribe(ctx5(t))
	s.answer = func(n int, m push) (time.Duration, string) {
		if n == 2 || n == 3 {
			return time.Second, ""
		}
		return 0, "success"
	}
	r, err := u.SendText(ctx5(t), "hi")
	if err != nil || r.Attempts != 3 || !r.Empty {
		t.Fatalf("reply %+v, %v; want success on the third attempt", r, err)
	}
	ps := s.all()
	if ps[1].Raw != ps[2].Raw || ps[2].Raw != ps[3].Raw || ps[1].Query.Encode() != ps[3].Query.Encode() {
		t.Fatal("retries changed the message")
	}
	s.answer = func(n int, m push) (time.Duration, string) { return time.Second, "" }
	if _, err := u.SendText(ctx5(t), "again"); !errors.Is(err, wechatsim.ErrNoAnswer) {
		t.Fatalf("err %v, want ErrNoAnswer", err)
	}
	if e := last(p, "oRT"); e.Kind != wechatsim.KindCallback || e.Status != 0 || e.Attempts != 3 {
		t.Fatalf("unanswered callback recorded as %+v", e)
	}
}

func TestUsersMustFollowToTalkAndCannotFollowTwice(t *testing.T) {
	p := start(t, wechatsim.Options{})
	newSprout(t, p)
	u := p.NewUser("oNF")
	if _, err := u.SendText(ctx5(t), "hi"); !errors.Is(err, wechatsim.ErrNotFollowing) {
		t.Fatalf("text from a non-follower: %v", err)
	}
	if _, err := u.ClickMenu(ctx5(t), "K"); !errors.Is(err, wechatsim.ErrNotFollowing) {
		t.Fatalf("click from a non-follower: %v", err)
	}
	if _, err := u.Unsubscribe(ctx5(t)); !errors.Is(err, wechatsim.ErrNotFollowing) {
		t.Fatalf("unsubscribe by a non-follower: %v", err)
	}
	u.Subscribe(ctx5(t))
	if _, err := u.Subscribe(ctx5(t)); !errors.Is(err, wechatsim.ErrAlreadyFollowing) {
		t.Fatalf("second subscribe: %v", err)
	}
}
