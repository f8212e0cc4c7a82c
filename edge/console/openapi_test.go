package console

import (
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"go.yaml.in/yaml/v3"

	"github.com/sprout-iot/sprout/edge/api"
)

// openAPI is the part of docs/openapi.yaml the tests check.
type openAPI struct {
	OpenAPI    string                    `yaml:"openapi"`
	Paths      map[string]map[string]any `yaml:"paths"`
	Components map[string]map[string]any `yaml:"components"`
}

func loadOpenAPI(t *testing.T) (openAPI, string) {
	t.Helper()
	raw, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPI
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml does not parse: %v", err)
	}
	return doc, string(raw)
}

// apiRoutes is every "METHOD /path" edge/api registers, less Go's profiler under /debug/ (a
// mounted net/http/pprof, documented in prose, not as an API).
func apiRoutes(t *testing.T) []string {
	t.Helper()
	r := chi.NewRouter()
	api.New(nil, nil, api.Options{}).Routes(r)
	var out []string
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !strings.HasPrefix(route, "/debug/") {
			out = append(out, method+" "+route)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestOpenAPIDocumentsEveryAPIRoute(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi: %q, want 3.x", doc.OpenAPI)
	}
	routes := apiRoutes(t)
	if len(routes) < 10 {
		t.Fatalf("walked only %d routes: %v", len(routes), routes)
	}
	registered := map[string]bool{}
	for _, rt := range routes {
		registered[rt] = true
		method, path, _ := strings.Cut(rt, " ")
		op, ok := doc.Paths[path][strings.ToLower(method)].(map[string]any)
		if !ok {
			t.Errorf("%s is served by edge/api but not documented in docs/openapi.yaml", rt)
			continue
		}
		responses, _ := op["responses"].(map[string]any)
		if strings.HasPrefix(path, "/api/v1/") {
			for _, code := range []string{"401", "403"} {
				if _, ok := responses[code]; !ok {
					t.Errorf("%s: no %s response documented (bearer auth)", rt, code)
				}
			}
		}
	}
	// And nothing documented that the API does not serve.
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			if rt := strings.ToUpper(method) + " " + path; !registered[rt] {
				t.Errorf("docs/openapi.yaml documents %s, which edge/api does not serve", rt)
			}
		}
	}
	if _, ok := doc.Components["securitySchemes"]["bearer"]; !ok {
		t.Error("no bearer security scheme")
	}
}

func TestOpenAPIReferencesResolve(t *testing.T) {
	doc, raw := loadOpenAPI(t)
	for _, line := range strings.Split(raw, "\n") {
		_, ref, ok := strings.Cut(line, `$ref: "#/components/`)
		if !ok {
			continue
		}
		ref, _, _ = strings.Cut(ref, `"`)
		kind, name, _ := strings.Cut(ref, "/")
		if _, ok := doc.Components[kind][name]; !ok {
			t.Errorf("$ref #/components/%s does not resolve", ref)
		}
	}
}

// The error codes the spec lists are the ones edge/api writes.
func TestOpenAPIErrorCodesMatchTheAPI(t *testing.T) {
	_, raw := loadOpenAPI(t)
	src, err := os.ReadFile("../api/api.go")
	if err != nil {
		t.Skipf("edge/api source not at hand: %v", err)
	}
	for _, part := range strings.Split(string(src), "writeErr(w, ")[1:] {
		// writeErr(w, http.StatusX, "code", ...)
		fields := strings.SplitN(part, `"`, 3)
		if len(fields) < 3 {
			continue
		}
		if code := fields[1]; !strings.Contains(raw, code) {
			t.Errorf("edge/api answers error code %q, which docs/openapi.yaml does not mention", code)
		}
	}
	for _, code := range api.ProblemCodes { // the grains' errors, mapped once (api.ProblemOf)
		if !strings.Contains(raw, code) {
			t.Errorf("edge/api answers error code %q, which docs/openapi.yaml does not mention", code)
		}
	}
}
