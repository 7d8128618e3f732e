package clients_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyardhq/switchyard/clients"
)

// TestBundleUpToDate fails when the committed bundle (what the server
// embeds) differs from the build of the TypeScript sources.
func TestBundleUpToDate(t *testing.T) {
	dir := nodeDir(t)
	built, err := os.ReadFile(filepath.Join(dir, "dist", "switchyard.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, clients.Bundle()) {
		t.Fatal("clients/switchyard.js is not the build of clients/js/src: run `cd clients/js && npm run bundle` and commit it")
	}
}

func TestHandler(t *testing.T) {
	mux := http.NewServeMux()
	clients.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get := func(path, etag string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := get("/switchyard.js", "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(body, clients.Bundle()) {
		t.Fatalf("GET /switchyard.js: %d, %d bytes", resp.StatusCode, len(body))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Fatalf("Content-Type %q: browsers refuse modules that are not JavaScript", ct)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatal("no Access-Control-Allow-Origin: pages of another origin cannot import the bundle")
	}
	etag := resp.Header.Get("ETag")
	if etag != `"`+clients.Hash()+`"` || resp.Header.Get("Cache-Control") != "public, no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, resp.Header.Get("Cache-Control"))
	}
	if !bytes.Contains(body, []byte("export{")) && !bytes.Contains(body, []byte("export {")) {
		t.Fatal("the bundle is not an ES module")
	}
	// Revalidation: unchanged → 304 without a body.
	if r := get("/switchyard.js", etag); r.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current ETag: %d, want 304", r.StatusCode)
	}
	if r := get("/switchyard.js", `"stale"`); r.StatusCode != 200 {
		t.Fatalf("If-None-Match with another ETag: %d, want 200", r.StatusCode)
	}
	// The hashed URL is cached for good.
	r := get(clients.HashedPath(), "")
	if r.StatusCode != 200 || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("GET %s: %d %q", clients.HashedPath(), r.StatusCode, r.Header.Get("Cache-Control"))
	}
	// Only those two paths, only reads.
	if r := get("/switchyard.0000000000000000.js", ""); r.StatusCode != 404 {
		t.Fatalf("a stale hash: %d, want 404", r.StatusCode)
	}
	resp2, err := http.Post(srv.URL+"/switchyard.js", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /switchyard.js: %d, want 405", resp2.StatusCode)
	}
}
