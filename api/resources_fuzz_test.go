package api

// Fuzz targets for the REST API of resources: request bodies (create,
// update, patch) and query strings (list: page, page_size, search,
// ordering, filters) and paths. Every answer must be a 2xx or 4xx with a
// JSON body (DRF's shapes), never a 500. Seed corpora are in
// testdata/fuzz/FuzzREST*.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

const fuzzSecret = "fuzz-secret-0123456789abcdef"

// fuzzResources is the REST handler over SQLite with a resource that has
// a field of every type, owner permissions and search, and a bearer token
// for alice.
func fuzzResources(tb testing.TB) (*Resources, string) {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(tb.TempDir(), "fuzz.db")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	maxLen, minRank, maxRank := 50, 0.0, 100.0
	svc, err := resource.NewService(context.Background(), resource.ServiceConfig{Store: db, Resources: []config.Resource{{
		Name: "notes", PKField: "id", PageSize: 25, Search: []string{"title", "body"}, Ordering: []string{"-id"},
		Fields: []config.Field{
			{Name: "title", Type: config.FieldString, Required: true, MaxLength: &maxLen},
			{Name: "body", Type: config.FieldText},
			{Name: "rank", Type: config.FieldInt, Min: &minRank, Max: &maxRank, Default: 1},
			{Name: "score", Type: config.FieldFloat},
			{Name: "done", Type: config.FieldBool, Default: false},
			{Name: "due", Type: config.FieldDatetime},
			{Name: "meta", Type: config.FieldJSON},
			{Name: "owner", Type: config.FieldString},
		},
		Permissions: config.ResourcePermissions{Read: "anyone", Create: "authenticated", Update: "owner:owner", Delete: "owner:owner"},
	}}})
	if err != nil {
		tb.Fatal(err)
	}
	for _, row := range []string{`{"title": "one", "owner": "alice"}`, `{"title": "two", "owner": "bob"}`} {
		if _, err := svc.Create(context.Background(), "notes", resource.AsServer(), json.RawMessage(row)); err != nil {
			tb.Fatal(err)
		}
	}
	v, err := auth.NewVerifier(config.Auth{Anonymous: true, JWT: config.JWT{HMACSecret: fuzzSecret}})
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(24 * 365 * time.Hour))}).SignedString([]byte(fuzzSecret))
	if err != nil {
		tb.Fatal(err)
	}
	return NewResources(ResourcesConfig{Service: svc, Verifier: v, MaxBody: 64 << 10}), tok
}

// serve runs one request and checks the answer: never 5xx, and a JSON
// body unless it is a 204 or a HEAD.
func serveChecked(t *testing.T, h http.Handler, r *http.Request, what string) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code >= 500 || w.Code < 200 {
		t.Fatalf("%s: status %d: %s", what, w.Code, w.Body)
	}
	if w.Code == http.StatusNoContent || r.Method == http.MethodHead {
		return
	}
	if !json.Valid(w.Body.Bytes()) {
		t.Fatalf("%s: status %d with a body that is not JSON: %q", what, w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
}

// FuzzRESTBody sends a body to create (POST), update (PUT) and patch
// (PATCH), as alice or anonymously.
func FuzzRESTBody(f *testing.F) {
	h, tok := fuzzResources(f)
	targets := []struct{ method, path string }{
		{http.MethodPost, "/api/resources/notes/"},
		{http.MethodPut, "/api/resources/notes/1/"},
		{http.MethodPatch, "/api/resources/notes/1/"},
		{http.MethodPatch, "/api/resources/notes/2/"},
		{http.MethodPut, "/api/resources/notes/999/"},
	}
	f.Fuzz(func(t *testing.T, sel byte, body []byte) {
		target := targets[int(sel)%len(targets)]
		r := httptest.NewRequest(target.method, target.path, strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		if sel&0x80 == 0 {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		serveChecked(t, h, r, target.method+" "+target.path+" "+string(body))
	})
}

// FuzzRESTQuery sends a query string to the list endpoint (page,
// page_size, search, ordering, field filters, token).
func FuzzRESTQuery(f *testing.F) {
	h, _ := fuzzResources(f)
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest(http.MethodGet, "/api/resources/notes/", nil)
		r.URL.RawQuery = query
		serveChecked(t, h, r, "GET ?"+query)
	})
}

// FuzzRESTPath sends GET, DELETE and HEAD to any path under
// /api/resources/.
func FuzzRESTPath(f *testing.F) {
	h, tok := fuzzResources(f)
	methods := []string{http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions}
	f.Fuzz(func(t *testing.T, sel byte, path string) {
		u, err := url.Parse("/api/resources/" + path)
		if err != nil {
			return // net/http refuses such a request line before any handler
		}
		r := httptest.NewRequest(methods[int(sel)%len(methods)], "/", nil)
		r.URL = u
		r.RequestURI = u.RequestURI()
		if sel&0x80 == 0 {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		serveChecked(t, h, r, r.Method+" "+u.String())
	})
}
