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
	// ErrOverAllowance (45047): the user's customer-service allowance for their last action is
	// used up; use a template message.
	ErrOverAllowance = errors.New("wechat api: customer-service allowance used up")
	// ErrDailyQuota (45009): the API's daily quota is used up (it resets at midnight China time).
	ErrDailyQuota = errors.New("wechat api: daily quota reached")
	// ErrTemplate (40037, 47003, ...): the template id or its data is wrong for the account.
	ErrTemplate = errors.New("wechat api: template id or data refused")
)

// Action is what a sender does about a refusal (Classify).
type Action int

// The classes of refusal.
const (
	// ActionRetry: the same call may succeed later (busy, minute quota, a network failure, a
	// token refused twice); retry after RetryAfter with backoff.
	ActionRetry Action = iota + 1
	// ActionFallback: this channel cannot take the message now (45015 outside the window,
	// 45047 over the allowance, 45009 the day's quota): send it through the other channel at
	// once, or, if there is none, record it as failed with the reason at once.
	ActionFallback
	// ActionStopUser: nothing reaches this user (43004 unfollowed, 40003 not the account's
	// user, 43101 refused): stop sending to them until they act again.
	ActionStopUser
	// ActionStopKind: the account's configuration is wrong (template id or data, permissions,
	// IP whitelist, credentials) or WeChat said something undocumented: record the push as
	// failed, stop this kind of message, and alert the operator.
	ActionStopKind
)

func (a Action) String() string {
	switch a {
	case ActionRetry:
		return "retry"
	case ActionFallback:
		return "fallback"
	case ActionStopUser:
		return "stop_user"
	case ActionStopKind:
		return "stop_kind"
	}
	return "none"
}

// Classify says what to do about an error of a call; nil is 0 (nothing to do). Errors that are
// not WeChat's refusals (network, HTTP status, a bad answer) are ActionRetry.
func Classify(err error) Action {
	if err == nil {
		return 0
	}
	var e *Error
	if !errors.As(err, &e) {
		return ActionRetry
	}
	return ClassifyCode(e.Code)
}

// ClassifyCode classifies one errcode (see Classify and the table in README.md).
func ClassifyCode(code int) Action {
	switch code {
	case 0:
		return 0
	case codeBusy, codeMinuteQuota, codeInvalidCred, codeInvalidToken, codeTokenExpired, codeSystemError:
		return ActionRetry
	case codeWindowExpired, codeOverAllowance, codeDailyQuota:
		return ActionFallback
	case codeRequireFollow, codeInvalidOpenID, codeUserRefused, codeUserBlocked:
		return ActionStopUser
	}
	return ActionStopKind
}

// Code returns the errcode of a WeChat refusal, or 0.
func Code(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

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
	// The rest of the message APIs' documented codes (see Classify).
	codeSystemError     = 45000 // (custom send) system error, retry
	codeOverAllowance   = 45047 // customer-service allowance used up
	codeUserRefused     = 43101 // the user refused this account's messages
	codeUserBlocked     = 43019 // the user is on the account's blacklist
	codeInvalidTemplate = 40037 // invalid template_id
	codeArgInvalid      = 47003 // template data: missing or extra key, or a value breaks its rule
	codeUnauthorized    = 48001 // api unauthorized: the account lacks this API
	codeIPNotAllowed    = 40164 // the caller's IP is not in the account's whitelist
	codeAPIBanned       = 48004 // the API is banned for this account
	codeBadTemplateSize = 40036 // invalid template_id size
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
		// Retryable for callers that can wait (the quota comes back at midnight); the pusher
		// classifies it ActionFallback and does not hold a message until then.
		e.kind, e.is, e.RetryAfter = ErrRetryable, ErrDailyQuota, midnight.Sub(now)
	case codeSystemError:
		e.kind, e.RetryAfter = ErrRetryable, BusyBackoff
	case codeWindowExpired:
		e.kind, e.is = ErrPermanent, ErrWindowExpired
	case codeOverAllowance:
		e.kind, e.is = ErrPermanent, ErrOverAllowance
	case codeInvalidTemplate, codeArgInvalid, codeBadTemplateSize:
		e.kind, e.is = ErrPermanent, ErrTemplate
	case codeUserRefused, codeUserBlocked, codeUnauthorized, codeIPNotAllowed, codeAPIBanned:
		e.kind = ErrPermanent
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
