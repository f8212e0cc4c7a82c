package api

import (
	"errors"
	"fmt"
	"time"
)

// Sentinels matched by errors.Is on an *Error. Branch on these, not on numbers.
var (
	// ErrRetryable: WeChat is busy (-1) or a quota is exhausted (45009, 45011); retry after
	// Error.RetryAfter.
	ErrRetryable = errors.New("wechat api: temporarily refused; retry later")
	// ErrPermanent: retrying the same call cannot succeed.
	ErrPermanent = errors.New("wechat api: permanently refused")
	// ErrWindowExpired (45015): the user has not interacted within 48 h (or unfollowed); use a
	// template message instead of a customer-service message.
	ErrWindowExpired = errors.New("wechat api: customer-service window expired")
	// ErrNotFollowing (43004): the user does not follow the account.
	ErrNotFollowing = errors.New("wechat api: user does not follow the account")
	// ErrInvalidOpenID (40003).
	ErrInvalidOpenID = errors.New("wechat api: invalid openid")
	// ErrTokenRejected (40001, 40014, 42001): the access token was refused even after one refresh.
	ErrTokenRejected = errors.New("wechat api: access token rejected")
	// ErrStatusUnsubscribed: transmsg status push answered ret -1 "get subscribe cache fail" —
	// the user's client no longer subscribes to the device's status; stop pushing it.
	ErrStatusUnsubscribed = errors.New("wechat api: user no longer subscribes to device status")
	// ErrInvalidCode (40029, 40163): an OAuth2 code that is unknown, expired or already used.
	ErrInvalidCode = errors.New("wechat api: invalid or used OAuth2 code")
)

// Error is a refusal from the WeChat API: a non-zero errcode (or ret, or base_resp.errcode).
type Error struct {
	API  string // the path called, e.g. /cgi-bin/message/custom/send
	Code int
	Msg  string
	// RetryAfter is the suggested backoff for retryable errors (zero otherwise).
	RetryAfter time.Duration

	kind error // ErrRetryable, ErrPermanent or nil (unclassified)
	is   error // a more specific sentinel, or nil
}

func (e *Error) Error() string {
	s := fmt.Sprintf("wechat api %s: errcode %d: %s", e.API, e.Code, e.Msg)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

// Is matches the sentinels above.
func (e *Error) Is(target error) bool {
	return target != nil && (target == e.kind || target == e.is)
}

// Retryable reports whether the call may succeed later unchanged.
func (e *Error) Retryable() bool { return e.kind == ErrRetryable }

// RetryAfter returns the suggested backoff if err is a retryable API error.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && e.Retryable() {
		return e.RetryAfter, true
	}
	return 0, false
}

// Error codes the client branches on.
const (
	codeBusy          = -1
	codeInvalidCred   = 40001
	codeInvalidOpenID = 40003
	codeInvalidToken  = 40014
	codeInvalidCode   = 40029
	codeCodeUsed      = 40163
	codeTokenExpired  = 42001
	codeRequireFollow = 43004
	codeDailyQuota    = 45009
	codeMinuteQuota   = 45011
	codeWindowExpired = 45015
)

func isTokenError(code int) bool {
	return code == codeInvalidCred || code == codeInvalidToken || code == codeTokenExpired
}

// Backoffs suggested for retryable errors.
const (
	BusyBackoff        = 2 * time.Second
	MinuteQuotaBackoff = time.Minute
)

// china is UTC+8, where WeChat's daily quotas reset at midnight.
var china = time.FixedZone("CST", 8*3600)

func newError(api string, code int, msg string, now time.Time) *Error {
	e := &Error{API: api, Code: code, Msg: msg}
	switch code {
	case codeBusy:
		e.kind, e.RetryAfter = ErrRetryable, BusyBackoff
	case codeMinuteQuota:
		e.kind, e.RetryAfter = ErrRetryable, MinuteQuotaBackoff
	case codeDailyQuota:
		t := now.In(china)
		midnight := time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, china)
		e.kind, e.RetryAfter = ErrRetryable, midnight.Sub(now)
	case codeWindowExpired:
		e.kind, e.is = ErrPermanent, ErrWindowExpired
	case codeRequireFollow:
		e.kind, e.is = ErrPermanent, ErrNotFollowing
	case codeInvalidOpenID:
		e.kind, e.is = ErrPermanent, ErrInvalidOpenID
	case codeInvalidCred, codeInvalidToken, codeTokenExpired:
		e.is = ErrTokenRejected
	case codeInvalidCode, codeCodeUsed:
		e.kind, e.is = ErrPermanent, ErrInvalidCode
	}
	return e
}
