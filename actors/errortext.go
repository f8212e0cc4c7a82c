package actors

import (
	"errors"
	"fmt"
)

// errorTexts is what a WeChat user is told when a grain could not do what they asked: the
// taxonomy's one mapping to words (its one mapping to HTTP is in edge/api). Each takes the
// device id.
var errorTexts = map[string]map[error]string{
	LangZH: {
		ErrUnknownDevice: "找不到这个设备（%s），请确认二维码来自 Sprout 花盆。",
		ErrUnavailable:   "%s 暂时无法响应，请稍后再试。",
		ErrTimedOut:      "%s 没有及时响应，请稍后再试。",
		ErrNotBound:      "你没有绑定 %s，无法查看或控制它。",
		ErrRevoked:       "这个设备（%s）已停用。",
		ErrInvalid:       "无法对 %s 执行这个请求。",
		ErrNotOwner:      "只有 %s 的管理员可以这样做。",
	},
	LangEN: {
		ErrUnknownDevice: "No such pot (%s). Please scan the QR code on a Sprout pot.",
		ErrUnavailable:   "%s cannot answer right now; please try again shortly.",
		ErrTimedOut:      "%s did not answer in time; please try again shortly.",
		ErrNotBound:      "You are not bound to %s, so you cannot see or control it.",
		ErrRevoked:       "This pot (%s) has been retired.",
		ErrInvalid:       "That request cannot be done on %s.",
		ErrNotOwner:      "Only the owner of %s may do that.",
	},
}

// errorOrder is the order errors are matched in: ErrTimedOut before ErrUnavailable, which it wraps.
var errorOrder = []error{ErrUnknownDevice, ErrTimedOut, ErrUnavailable, ErrNotBound, ErrRevoked, ErrInvalid, ErrNotOwner}

// ErrorText is the sentence a WeChat user reads in lang (LangZH or LangEN; Chinese for any other)
// when a request about deviceID failed with err. An error outside the taxonomy reads as
// unavailable: worth trying again, never a definitive answer.
func ErrorText(lang string, err error, deviceID string) string {
	ts, ok := errorTexts[lang]
	if !ok {
		ts = errorTexts[LangZH]
	}
	for _, e := range errorOrder {
		if errors.Is(err, e) {
			return fmt.Sprintf(ts[e], deviceID)
		}
	}
	return fmt.Sprintf(ts[ErrUnavailable], deviceID)
}
