// Package clients holds what the server serves to clients: the browser
// bundle of the TypeScript client (@switchyard/client, built from js/ and
// committed as switchyard.js), embedded in the binary.
//
// Handler serves it at /switchyard.js (revalidated with its content hash as
// ETag) and at /switchyard.<hash>.js (cached for a year: the name changes
// with the content). A page with no build step imports it directly:
//
//	<script type="module">
//	import { connect } from "/switchyard.js";
//	</script>
//
// The bundle is rebuilt with `cd clients/js && npm run bundle`; a test
// fails when the committed copy differs from the build of the sources.
package clients

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed switchyard.js
var bundle []byte

// Bundle returns the ESM browser bundle of the TypeScript client.
func Bundle() []byte { return bytes.Clone(bundle) }

// Hash returns the first 16 hex digits of the bundle's SHA-256: its ETag
// and the version in its immutable URL.
func Hash() string {
	sum := sha256.Sum256(bundle)
	return hex.EncodeToString(sum[:8])
}

// Path is the bundle's stable URL path.
const Path = "/switchyard.js"

// HashedPath returns the bundle's immutable URL path, /switchyard.<hash>.js.
func HashedPath() string { return "/switchyard." + Hash() + ".js" }

// Register adds the bundle's two routes to mux.
func Register(mux *http.ServeMux) {
	h := Handler()
	mux.Handle("GET "+Path, h)
	mux.Handle("GET "+HashedPath(), h)
}

// Handler serves the bundle: at HashedPath as immutable, anywhere else
// (Path) with the hash as ETag, revalidated on every use (304 when
// unchanged). It answers GET and HEAD, with Access-Control-Allow-Origin: *
// so that pages of another origin can import it.
func Handler() http.Handler {
	etag := `"` + Hash() + `"`
	hashed := HashedPath()
	modTime := time.Time{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		// A public script: pages of other origins may import it too.
		h.Set("Access-Control-Allow-Origin", "*")
		if r.URL.Path == hashed {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "public, no-cache")
			h.Set("Link", "<"+hashed+">; rel=\"canonical\"")
		}
		http.ServeContent(w, r, "switchyard.js", modTime, bytes.NewReader(bundle))
	})
}
