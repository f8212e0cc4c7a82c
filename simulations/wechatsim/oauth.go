package wechatsim

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"sort"
)

// snapshotOpenID is the openid OAuth gives a snapshot user (快照页模式): a virtual one, not the
// user's real openid.
func snapshotOpenID(openID string) string {
	h := sha1.Sum([]byte("snapshot:" + openID))
	return "oSNAP" + hex.EncodeToString(h[:])[:23]
}

func (p *Platform) handleOAuthToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[r.URL.Path]++
	if code := p.checkApp(q.Get("appid"), q.Get("secret")); code != 0 {
		writeJSON(w, errBody(code))
		return
	}
	if code := p.injected(r.URL.Path); code != 0 {
		writeJSON(w, errBody(code))
		return
	}
	if q.Get("grant_type") != "authorization_code" {
		writeJSON(w, errBody(47001))
		return
	}
	c := p.codes[q.Get("code")]
	switch {
	case c == nil || !p.now().Before(c.expires):
		writeJSON(w, errBody(40029))
		return
	case c.used:
		writeJSON(w, errBody(40163))
		return
	}
	c.used = true
	openID, snap := c.openID, 0
	if c.snapshot {
		openID, snap = snapshotOpenID(c.openID), 1
	}
	writeJSON(w, map[string]any{"access_token": "OAUTH_" + randHex(16), "expires_in": 7200,
		"refresh_token": "REFRESH_" + randHex(16), "openid": openID, "scope": c.scope, "is_snapshotuser": snap})
}

// issueCode must be called with p.mu held.
func (p *Platform) issueCode(openID, scope string) string {
	code := randHex(16)
	st := p.users[openID]
	p.codes[code] = &oauthCode{openID: openID, scope: scope, expires: p.now().Add(p.opts.CodeTTL),
		snapshot: st != nil && st.snapshot}
	return code
}

// authorize is what WeChat's client does with an /connect/oauth2/authorize URL for a signed-in
// user: check the parameters and redirect to redirect_uri with a single-use code. It returns the
// redirect or a message WeChat shows instead (status 400).
func (p *Platform) authorize(openID string, q url.Values) (string, string) {
	if q.Get("appid") != p.opts.AppID {
		return "", "appid 参数错误"
	}
	if q.Get("response_type") != "code" {
		return "", "response_type 参数错误"
	}
	scope := q.Get("scope")
	if scope != "snsapi_base" && scope != "snsapi_userinfo" {
		return "", "scope 参数错误或没有 scope 权限"
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || (redirect.Scheme != "http" && redirect.Scheme != "https") || redirect.Host == "" {
		return "", "redirect_uri 参数错误"
	}
	if len(p.opts.OAuthDomains) > 0 && !slices.Contains(p.opts.OAuthDomains, redirect.Host) &&
		!slices.Contains(p.opts.OAuthDomains, redirect.Hostname()) {
		return "", "redirect_uri 参数错误"
	}
	p.mu.Lock()
	if p.users[openID] == nil {
		p.mu.Unlock()
		return "", "unknown user"
	}
	code := p.issueCode(openID, scope)
	p.mu.Unlock()
	rq := redirect.Query()
	rq.Set("code", code)
	rq.Set("state", q.Get("state"))
	redirect.RawQuery = rq.Encode()
	redirect.Fragment = ""
	return redirect.String(), ""
}

// handleAuthorize plays the WeChat client's OAuth2 page for a browser that is not a simulated
// user's (a person trying the demo): the user is named by the extra parameter sim_openid; without
// it the page lists the users to choose from. A user's own Browser() never comes here: its
// transport answers the authorize URL in process, as that user.
func (p *Platform) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	openID := q.Get("sim_openid")
	p.mu.Lock()
	known := p.users[openID] != nil
	p.mu.Unlock()
	if !known {
		if q.Get("appid") != p.opts.AppID || q.Get("redirect_uri") == "" {
			http.Error(w, "appid, response_type=code and redirect_uri are required", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		ids := make([]string, 0, len(p.users))
		for id := range p.users {
			ids = append(ids, id)
		}
		p.mu.Unlock()
		sort.Strings(ids)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>wechatsim: choose a user</title><h1>Sign in as</h1><ul>`)
		for _, id := range ids {
			v := r.URL.Query()
			v.Set("sim_openid", id)
			fmt.Fprintf(w, `<li><a href="?%s">%s</a></li>`, html.EscapeString(v.Encode()), html.EscapeString(id))
		}
		fmt.Fprint(w, "</ul>")
		return
	}
	q.Del("sim_openid")
	loc, msg := p.authorize(openID, q)
	if msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, loc, http.StatusFound)
}
