package web

import (
	"context"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
)

// The printed label (docs/wechat.md, "Labels"): a QR code of <public URL>/b/<signed code>. WeChat's
// own scanner opens it in WeChat's browser; /b/ sends it on to /app/b/ (where the session cookie
// lives), which signs the user in silently (OAuth snsapi_base) and binds them through the device
// grain in one step. Opening the page again is harmless: the grain answers "already bound".
//
// A GET that binds is deliberate: the label is the capability (whoever can read it may ask to
// join the pot, which after the owner is a request the owner decides), and one scan must be
// enough. Nothing else is changed by a GET.

// FollowState is what Sprout knows of whether a user follows the official account.
type FollowState int

const (
	// FollowUnknown: no record (a new user, a new deployment). The page shows how to follow.
	FollowUnknown FollowState = iota
	// Following: the user's own actions reached the account and they have not unfollowed.
	Following
	// NotFollowing: the user unfollowed, or WeChat refused a push to them as not following.
	NotFollowing
)

// Follow is how a page tells a user to follow the official account (alerts and results reach
// only followers). Either may be empty; with both empty the page only says to follow.
type Follow struct {
	// QR is the content of the account's QR code (its 二维码 from the account settings, e.g.
	// http://weixin.qq.com/r/…), drawn on the page: WeChat's browser follows it on a long press
	// (识别图中二维码).
	QR string
	// URL is a link that opens the account's profile (e.g. an article of the account, or
	// https://mp.weixin.qq.com/mp/profile_ext?action=home&__biz=…#wechat_redirect).
	URL string
	// State tells whether openID follows; nil or an error: FollowUnknown (the hint is shown).
	State func(ctx context.Context, openID string) (FollowState, error)
}

// labelView is the result of opening a label.
type labelView struct {
	State  string // bound, already, pending, bad, expired, unknown, revoked, unavailable
	Text   string
	Plant  *link
	Follow *followView
}

// followView is the follow hint: the account's QR code (a PNG data URI) and link.
type followView struct {
	QR  template.URL
	URL string
}

func init() {
	for k, v := range map[string][2]string{
		"label_bound":       {"绑定成功！这个花盆现在是你的了。", "Bound! This pot is yours now."},
		"label_member":      {"绑定成功！你已加入这个花盆。", "Bound! You have joined this pot."},
		"label_already":     {"你已经绑定了这个花盆。", "You have already bound this pot."},
		"label_pending":     {"这个花盆已经有主人了：已向主人申请加入，主人批准后你就能查看和浇水。", "This pot already has an owner: you have asked to join, and can see and water it once the owner approves."},
		"label_bad":         {"这个二维码不是有效的花盆标签，没有绑定任何花盆。请扫描花盆上印的二维码。", "This QR code is not a valid pot label; nothing was bound. Scan the code printed on the pot."},
		"label_expired":     {"这个标签已过期，没有绑定。请联系卖家获取新的标签。", "This label has expired; nothing was bound. Ask the seller for a new label."},
		"label_unknown":     {"找不到这个花盆，没有绑定。", "No such pot; nothing was bound."},
		"label_revoked":     {"这个花盆已停用，无法绑定。", "This pot has been retired and cannot be bound."},
		"label_unavailable": {"这里暂不支持绑定花盆。", "Binding pots is not available here."},
		"follow_title":      {"关注公众号，接收提醒", "Follow the official account to get alerts"},
		"follow_why":        {"缺水、高温提醒和浇水结果都通过公众号发送。请关注公众号，否则你收不到任何提醒。", "Dry-soil and heat alerts and watering results come through the official account: follow it, or you will receive none."},
		"follow_longpress":  {"长按二维码，选择“识别图中二维码”，然后点“关注公众号”。", "Long-press the code, choose \"Scan QR code in image\", then tap \"Follow\"."},
		"follow_button":     {"去关注公众号", "Follow the account"},
		"snapshot":          {"这是页面快照，无法登录。请点屏幕下方的“使用完整服务”，或在微信里重新打开这个链接。", "This is a snapshot of the page, which cannot sign you in. Tap \"Use full service\" at the bottom, or open the link in WeChat again."},
		"wx_error":          {"微信接口不可用：", "WeChat's interface is not available: "},
		"wx_waiting":        {"正在连接微信…", "Connecting to WeChat…"},
	} {
		textsZH[k], textsEN[k] = v[0], v[1]
	}
}

// labelRedirect is what the printed URL opens: /b/<code> → /app/b/<code> (the app's cookies live
// under /app). The query (?lang=en) is kept.
func labelRedirect(w http.ResponseWriter, r *http.Request) {
	target := "/app/b/" + chi.URLParam(r, "code")
	if r.URL.RawQuery != "" && len(r.URL.RawQuery) <= 256 {
		target += "?" + r.URL.RawQuery
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// labelBind checks the label's code and binds the signed-in user to its pot through the grain.
func (h *Handler) labelBind(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	p := h.newPage(r, s)
	v := &labelView{}
	p.Label = v
	status := http.StatusOK
	say := func(st int, state, key string) {
		status, v.State, v.Text = st, state, tr(p.Lang, key)
	}
	code := strings.TrimSpace(chi.URLParam(r, "code"))
	var id string
	var err error
	if h.opts.VerifyScene == nil {
		say(http.StatusServiceUnavailable, "unavailable", "label_unavailable")
	} else if id, err = h.opts.VerifyScene(code); err != nil || id == "" {
		if errors.Is(err, qr.ErrExpired) {
			say(http.StatusGone, "expired", "label_expired")
		} else {
			say(http.StatusBadRequest, "bad", "label_bad")
		}
		h.opts.Logger.Info("web: label refused", "err", err)
	}
	if v.State != "" {
		h.render(w, status, "label.html", p)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	br, err := h.devices.Bind(ctx, id, s.OpenID, "label")
	plant := &link{"/app/plants/" + id + p.Q, tr(p.Lang, "open_plant")}
	switch {
	case errors.Is(err, actors.ErrUnknownDevice):
		say(http.StatusNotFound, "unknown", "label_unknown")
	case errors.Is(err, actors.ErrRevoked):
		say(http.StatusGone, "revoked", "label_revoked")
	case err != nil:
		h.opts.Logger.Warn("web: binding from a label", "device", id, "err", err)
		h.problem(w, r, err)
		return
	case br.Role == rolePending:
		say(http.StatusOK, "pending", "label_pending")
	case br.Already:
		say(http.StatusOK, "already", "label_already")
		v.Plant = plant
	case br.Role == actors.RoleMember:
		say(http.StatusOK, "bound", "label_member")
		v.Plant = plant
	default:
		say(http.StatusOK, "bound", "label_bound")
		v.Plant = plant
	}
	if v.State == "bound" || v.State == "already" || v.State == "pending" {
		v.Follow = h.followHint(r.Context(), s.OpenID)
		if v.State == "bound" {
			p.Links = []link{{"/app/wifi" + p.Q, tr(p.Lang, "wifi_setup")}}
		}
	}
	h.render(w, status, "label.html", p)
}

// rolePending is the grain's role for a scan after the owner's: a request to join that waits for
// the owner (actors.RolePending of the joining rules).
const rolePending = "pending"

// followHint is the "follow the account" box, unless the user is known to follow.
func (h *Handler) followHint(ctx context.Context, openID string) *followView {
	f := h.opts.Follow
	if f.State != nil {
		ctx, cancel := context.WithTimeout(ctx, h.opts.GrainTimeout)
		defer cancel()
		st, err := f.State(ctx, openID)
		if err != nil {
			h.opts.Logger.Warn("web: follow state unknown", "err", err)
		} else if st == Following {
			return nil
		}
	}
	fv := &followView{URL: f.URL}
	if f.QR != "" {
		if png, err := qr.PNG(f.QR, 220); err == nil {
			fv.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
		}
	}
	return fv
}
