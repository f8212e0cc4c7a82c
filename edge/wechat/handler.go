package wechat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Dispatcher receives each verified push. It is where Sprout's logic starts (the user grain for
// m.FromUserName). ctx carries the handler's budget as its deadline; a Dispatcher that needs
// longer must hand the work off and answer at once (for example with Success, then tell the user
// later with a customer-service or template message).
//
// WeChat retries a push it got no answer for, up to three times with the same content, so a
// Dispatcher must be idempotent on m.DedupKey().
type Dispatcher interface {
	Dispatch(ctx context.Context, m *Message) (*Reply, error)
}

// DispatcherFunc adapts a function to Dispatcher.
type DispatcherFunc func(ctx context.Context, m *Message) (*Reply, error)

// Dispatch calls f.
func (f DispatcherFunc) Dispatch(ctx context.Context, m *Message) (*Reply, error) { return f(ctx, m) }

// Mode is the account's message encryption mode (消息加解密方式).
type Mode int

const (
	// ModeAuto is plaintext without an EncodingAESKey, safe with one.
	ModeAuto Mode = iota
	// ModePlaintext (明文): no encryption; a push with encrypt_type=aes is rejected.
	ModePlaintext
	// ModeCompatible (兼容): pushes may carry plaintext, ciphertext or both; replies to encrypted
	// pushes are encrypted.
	ModeCompatible
	// ModeSafe (安全): every push must be encrypted, and every reply is.
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

// Defaults for Options.
const (
	DefaultMaxBodyBytes   = 64 << 10
	DefaultMaxClockSkew   = 5 * time.Minute
	DefaultDispatchBudget = 4 * time.Second // WeChat gives up after 5 s
)

// Options configures a Handler. AppID and Token are required; EncodingAESKey is required unless
// the mode is plaintext.
type Options struct {
	AppID          string // the account's AppID, checked inside every decrypted push
	Token          string // the callback Token from the account settings; a secret, never logged
	EncodingAESKey string // 43 characters; empty means plaintext mode; a secret, never logged
	Mode           Mode   // ModeAuto unless the account is in compatible mode

	// AccountID, when set, is the account's original id (gh_…); pushes addressed to another
	// ToUserName are rejected.
	AccountID string

	// MaxBodyBytes caps a POST body; larger ones get 413. Default 64 KiB (real pushes are < 4 KiB).
	MaxBodyBytes int64
	// MaxClockSkew is how far a POST's timestamp may be from Clock; beyond it the request is a
	// replay or a broken clock and gets 403. Default 5 min.
	MaxClockSkew time.Duration
	// DispatchBudget is the deadline given to the Dispatcher; when it passes the handler answers
	// "success" without the Dispatcher's reply, so WeChat (which waits 5 s) never retries because
	// Sprout was slow. Default 4 s.
	DispatchBudget time.Duration

	Clock  func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
}

// Handler is the WeChat callback endpoint (mounted at /wechat). GET answers URL verification; POST
// verifies, decrypts and parses a push, then calls the Dispatcher.
type Handler struct {
	opts   Options
	mode   Mode
	cipher *Cipher
	d      Dispatcher
	log    *slog.Logger
}

// NewHandler checks opts, fills defaults and returns the handler.
func NewHandler(opts Options, d Dispatcher) (*Handler, error) {
	if opts.AppID == "" || opts.Token == "" {
		return nil, errors.New("wechat: Options.AppID and Options.Token are required")
	}
	if d == nil {
		return nil, errors.New("wechat: a Dispatcher is required")
	}
	h := &Handler{opts: opts, mode: opts.Mode, d: d, log: opts.Logger}
	if h.mode == ModeAuto {
		h.mode = ModePlaintext
		if opts.EncodingAESKey != "" {
			h.mode = ModeSafe
		}
	}
	if h.mode != ModePlaintext {
		c, err := NewCipher(opts.EncodingAESKey, opts.AppID)
		if err != nil {
			return nil, fmt.Errorf("wechat: %s mode: %w", h.mode, err)
		}
		h.cipher = c
	}
	if h.opts.MaxBodyBytes <= 0 {
		h.opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if h.opts.MaxClockSkew <= 0 {
		h.opts.MaxClockSkew = DefaultMaxClockSkew
	}
	if h.opts.DispatchBudget <= 0 {
		h.opts.DispatchBudget = DefaultDispatchBudget
	}
	if h.opts.Clock == nil {
		h.opts.Clock = time.Now
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("component", "wechat-callback", "mode", h.mode.String())
	return h, nil
}

// Mode returns the effective encryption mode.
func (h *Handler) Mode() Mode { return h.mode }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		h.verifyURL(w, r)
	case http.MethodPost:
		h.push(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		h.reject(w, r, http.StatusMethodNotAllowed, "method not allowed", nil)
	}
}

// verifyURL answers WeChat's server-URL check: echostr, byte for byte, when the signature matches.
// The timestamp is not checked for freshness: replaying it only echoes a string back.
func (h *Handler) verifyURL(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sig, ts, nonce, echo := q.Get("signature"), q.Get("timestamp"), q.Get("nonce"), q.Get("echostr")
	if sig == "" || ts == "" || nonce == "" || echo == "" {
		h.reject(w, r, http.StatusBadRequest, "verification request missing signature, timestamp, nonce or echostr", nil)
		return
	}
	if !VerifySignature(sig, h.opts.Token, ts, nonce) {
		h.reject(w, r, http.StatusForbidden, "bad signature on URL verification", nil)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, echo)
}

func (h *Handler) push(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sig, ts, nonce := q.Get("signature"), q.Get("timestamp"), q.Get("nonce")
	if sig == "" || ts == "" || nonce == "" {
		h.reject(w, r, http.StatusBadRequest, "push missing signature, timestamp or nonce", nil)
		return
	}
	if !VerifySignature(sig, h.opts.Token, ts, nonce) {
		h.reject(w, r, http.StatusForbidden, "bad signature", nil)
		return
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, "timestamp is not an integer", nil)
		return
	}
	now := h.opts.Clock()
	if skew := now.Sub(time.Unix(sec, 0)); skew > h.opts.MaxClockSkew || -skew > h.opts.MaxClockSkew {
		h.reject(w, r, http.StatusForbidden, "timestamp outside the allowed clock skew", nil, "skew", skew.Round(time.Second).String())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.reject(w, r, http.StatusRequestEntityTooLarge, "body larger than MaxBodyBytes", nil, "limit", h.opts.MaxBodyBytes)
			return
		}
		h.reject(w, r, http.StatusBadRequest, "reading body", err)
		return
	}
	env, err := parseEnvelope(body)
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, "bad XML", err)
		return
	}
	encrypted := q.Get("encrypt_type") == "aes"
	m := &env.Message
	switch {
	case encrypted && h.mode == ModePlaintext:
		h.reject(w, r, http.StatusBadRequest, "encrypted push but no EncodingAESKey configured", nil)
		return
	case encrypted:
		if env.Encrypt == "" {
			h.reject(w, r, http.StatusBadRequest, "encrypt_type=aes without an Encrypt field", nil)
			return
		}
		if !VerifySignature(q.Get("msg_signature"), h.opts.Token, ts, nonce, env.Encrypt) {
			h.reject(w, r, http.StatusForbidden, "bad msg_signature", nil)
			return
		}
		plain, err := h.cipher.Decrypt(env.Encrypt)
		if errors.Is(err, ErrAppIDMismatch) {
			h.reject(w, r, http.StatusForbidden, "push encrypted for another AppID", nil)
			return
		}
		if err != nil {
			h.reject(w, r, http.StatusBadRequest, "cannot decrypt", err)
			return
		}
		if m, err = ParseMessage(plain); err != nil {
			h.reject(w, r, http.StatusBadRequest, "bad XML inside Encrypt", err)
			return
		}
	case h.mode == ModeSafe:
		h.reject(w, r, http.StatusBadRequest, "plaintext push but the account is in safe mode", nil)
		return
	}
	if m.MsgType == "" || m.FromUserName == "" {
		h.reject(w, r, http.StatusBadRequest, "push without MsgType or FromUserName", nil)
		return
	}
	if h.opts.AccountID != "" && m.ToUserName != h.opts.AccountID {
		h.reject(w, r, http.StatusForbidden, "push addressed to another account", nil, "to", m.ToUserName)
		return
	}

	if m.dropForeignScene() {
		h.log.Info("parametric QR scene is not a Sprout code; dispatched as a plain "+m.Event, "from", m.FromUserName, "scene", m.ForeignScene)
	}
	reply := h.dispatch(r.Context(), m)
	h.answer(w, m, reply, encrypted, now)
}

// dispatch calls the Dispatcher under the budget. Whatever goes wrong (error, panic, timeout), the
// answer is "success": see README.md, "Why failures answer success".
func (h *Handler) dispatch(parent context.Context, m *Message) *Reply {
	// Detached from the request: if WeChat drops the connection the action still completes (its
	// retry is deduplicated by DedupKey) instead of being torn down halfway.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), h.opts.DispatchBudget)
	defer cancel()
	type result struct {
		reply *Reply
		err   error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("dispatcher panicked: %v", p)}
			}
		}()
		rep, err := h.d.Dispatch(ctx, m)
		done <- result{rep, err}
	}()
	attrs := []any{"msg_type", m.MsgType, "event", m.Event, "from", m.FromUserName, "dedup_key", m.DedupKey()}
	select {
	case res := <-done:
		if res.err != nil {
			h.log.Error("dispatcher failed; answering success", append(attrs, "err", res.err)...)
			return nil
		}
		return res.reply
	case <-ctx.Done():
		h.log.Warn("dispatcher exceeded the budget; answering success",
			append(attrs, "budget", h.opts.DispatchBudget, "waited", time.Since(start).Round(time.Millisecond))...)
		return nil
	}
}

func (h *Handler) answer(w http.ResponseWriter, m *Message, reply *Reply, encrypted bool, now time.Time) {
	plain, err := MarshalReply(reply, m, now)
	if err != nil {
		h.log.Error("cannot render reply; answering success", "err", err, "from", m.FromUserName)
		reply, plain = nil, []byte("success")
	}
	if reply.IsEmpty() {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(plain)
		return
	}
	if encrypted {
		sealed, err := SealReply(h.cipher, h.opts.Token, plain, now, newNonce())
		if err != nil {
			h.log.Error("cannot encrypt reply; answering success", "err", err, "from", m.FromUserName)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "success")
			return
		}
		plain = sealed
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Write(plain)
}

// reject answers a request that never reaches the Dispatcher. The log line names the reason and
// the peer, never the token, key, signatures or body.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, status int, reason string, err error, kv ...any) {
	attrs := append([]any{"status", status, "reason", reason, "remote", r.RemoteAddr, "method", r.Method}, kv...)
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	h.log.Warn("wechat callback rejected", attrs...)
	http.Error(w, http.StatusText(status), status)
}

func newNonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
