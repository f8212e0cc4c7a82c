package console

import (
	"encoding/hex"
	"net/http"
	"net/http/httptest"

	"github.com/go-chi/chi/v5"
)

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func newRouter(h *Handler) chi.Router {
	r := chi.NewRouter()
	h.Routes(r)
	return r
}

func serve(r http.Handler, method, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}
