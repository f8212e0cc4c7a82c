// Package lang picks the language of a page (Chinese by default, English when asked) and looks
// up its texts, for the users' pages and the console alike.
package lang

import (
	"net/http"
	"strings"
)

// Languages the pages speak.
const (
	ZH = "zh"
	EN = "en"
)

// Of picks the page language: ?lang=en|zh, else Accept-Language, else Chinese.
func Of(r *http.Request) string {
	switch q := r.URL.Query().Get("lang"); {
	case strings.HasPrefix(q, EN):
		return EN
	case strings.HasPrefix(q, ZH):
		return ZH
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch {
		case strings.HasPrefix(tag, ZH):
			return ZH
		case strings.HasPrefix(tag, EN):
			return EN
		}
	}
	return ZH
}

// Text is the text for key in l from the two dictionaries: Chinese when English lacks it, the
// key itself when both do.
func Text(zh, en map[string]string, l, key string) string {
	if l == EN {
		if s, ok := en[key]; ok {
			return s
		}
	}
	if s, ok := zh[key]; ok {
		return s
	}
	return key
}
