package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/ws"
)

// ResourcesConfig configures the REST API of resources.
type ResourcesConfig struct {
	Service *resource.Service
	// Verifier identifies callers (Authorization: Bearer, ?token=, the
	// cookie); nil makes everyone anonymous.
	Verifier *auth.Verifier
	// Keys are the server API's keys: a request with
	// "Authorization: apikey <key>" acts as the server (no permission
	// applies, owner fields can be set), as the application's backend.
	Keys []config.Secret
	// CookieName is the cookie the Verifier reads tokens from ("": none).
	// A write whose token came from it must come from an allowed origin.
	CookieName string
	// AllowedOrigins are the origins allowed besides the server's own, as
	// ws.AllowedOrigins reads them (websocket.allowed_origins).
	AllowedOrigins []string
	// PublicURL starts the next and previous links of list pages (such as
	// https://api.example.com); "" makes them relative. They are never
	// built from the request's Host header.
	PublicURL string
	// MaxBody bounds request bodies (default 1 MiB; larger: 413).
	MaxBody int64
	// MaxSearchLength bounds ?search=, in characters (default 256;
	// longer: 400 naming search).
	MaxSearchLength int
	// Logger receives refused requests (info), the causes of 500s and
	// panics in hooks (error, with the stack); nil is slog.Default(), so a
	// failure is never silent.
	Logger *slog.Logger
}

// Resources serves /api/resources/<name>/ and /api/resources/<name>/<pk>/
// with Django REST framework's shapes: lists are
// {"count", "next", "previous", "results"}, validation errors
// {"field": ["msg"]}, other errors {"detail": "…"}. Writes go through the
// same service as the WebSocket, so they notify its subscribers.
type Resources struct {
	cfg ResourcesConfig
}

// NewResources returns the handler; mount it at /api/resources/.
func NewResources(cfg ResourcesConfig) *Resources {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.MaxSearchLength <= 0 {
		cfg.MaxSearchLength = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	return &Resources{cfg: cfg}
}

// ServeHTTP serves one request. A panic below it (in a resource hook, say)
// answers 500 in DRF's shape, {"detail": "A server error occurred."}, and is
// logged with its stack; the server goes on.
func (h *Resources) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &startedWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.cfg.Logger.Error("panic serving a resource request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !sw.started {
				detail(sw, http.StatusInternalServerError, "A server error occurred.")
			}
		}
	}()
	h.serve(sw, r)
}

// startedWriter records whether a response was started.
type startedWriter struct {
	http.ResponseWriter
	started bool
}

func (w *startedWriter) WriteHeader(code int) {
	w.started = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *startedWriter) Write(b []byte) (int, error) {
	w.started = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *startedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (h *Resources) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/resources/"), "/"), "/")
	name := parts[0]
	sc, ok := h.cfg.Service.Schema(name)
	if name == "" || !ok || len(parts) > 2 {
		detail(w, http.StatusNotFound, "Not found.")
		return
	}
	who, ok := h.actor(w, r)
	if !ok {
		return
	}
	if status, msg := h.refuseWrite(r); status != 0 {
		detail(w, status, msg)
		return
	}
	ctx := r.Context()
	svc := h.cfg.Service
	if len(parts) == 1 {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			q, page, size, err := listQuery(sc, r.URL.Query(), h.cfg.MaxSearchLength)
			if err != nil {
				h.fail(w, r, err)
				return
			}
			res, err := svc.List(ctx, name, who, q)
			if err != nil {
				h.fail(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, h.pageBody(r, res, page, size))
		case http.MethodPost:
			body, err := readAll(w, r, h.cfg.MaxBody)
			if err != nil {
				h.fail(w, r, err)
				return
			}
			out, err := svc.Create(ctx, name, who, body)
			if err != nil {
				h.fail(w, r, err)
				return
			}
			writeRaw(w, http.StatusCreated, out)
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			detail(w, http.StatusMethodNotAllowed, fmt.Sprintf("Method %q not allowed.", r.Method))
		}
		return
	}
	pk, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		detail(w, http.StatusNotFound, "Not found.")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		out, err := svc.Retrieve(ctx, name, who, pk)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeRaw(w, http.StatusOK, out)
	case http.MethodPut, http.MethodPatch:
		body, err := readAll(w, r, h.cfg.MaxBody)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		mode := resource.Update
		if r.Method == http.MethodPatch {
			mode = resource.Patch
		}
		out, err := svc.Write(ctx, name, who, pk, body, mode)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeRaw(w, http.StatusOK, out)
	case http.MethodDelete:
		if err := svc.Delete(ctx, name, who, pk); err != nil {
			h.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, PATCH, DELETE")
		detail(w, http.StatusMethodNotAllowed, fmt.Sprintf("Method %q not allowed.", r.Method))
	}
}

// actor identifies the caller: the server with a valid API key (a wrong
// one is 401, never anonymous), otherwise the token's user. It answers
// and returns false when the request is refused.
func (h *Resources) actor(w http.ResponseWriter, r *http.Request) (resource.Actor, bool) {
	if key, ok := apiKey(r); ok {
		if !validKey(h.cfg.Keys, key) {
			h.cfg.Logger.Info("request refused", "status", http.StatusUnauthorized, "reason", "invalid API key", "key", "api_keys", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `apikey realm="switchyard"`)
			detail(w, http.StatusUnauthorized, "Invalid API key.")
			return resource.Actor{}, false
		}
		return resource.AsServer(), true
	}
	if h.cfg.Verifier == nil {
		return resource.As(""), true
	}
	p, err := h.cfg.Verifier.FromRequest(r)
	if err != nil {
		h.cfg.Logger.Info("request refused", "status", http.StatusUnauthorized, "reason", switchyard.ErrorMessage(err), "key", auth.ConfigKey(err), "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
		detail(w, http.StatusUnauthorized, switchyard.ErrorMessage(err))
		return resource.Actor{}, false
	}
	return resource.As(p.User), true
}

// fail writes DRF's error bodies; the cause of a 500 is logged, never
// shown.
func (h *Resources) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ve *resource.ValidationError
	if errors.As(err, &ve) {
		writeJSON(w, http.StatusBadRequest, ve.Fields)
		return
	}
	code := switchyard.ErrorCode(err)
	msg := switchyard.ErrorMessage(err)
	if code == switchyard.CodeInternal {
		h.cfg.Logger.Error("REST request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "A server error occurred."
	}
	detail(w, switchyard.HTTPStatus(code), msg)
}

// refuseWrite applies the rules of state-changing requests (POST, PUT,
// PATCH, DELETE), which a browser may send from any site without asking
// first (a form, or fetch with a "simple" content type) and with the
// token cookie attached: the body must be application/json, which no
// form can send and which makes fetch ask first (415 otherwise); and when
// the token came from the cookie, the request must come from an allowed
// origin, with the rules of WebSocket upgrades (403 otherwise). It
// returns 0 when the request may go on.
func (h *Resources) refuseWrite(r *http.Request) (int, string) {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return 0, ""
	}
	if h.cfg.CookieName != "" {
		if _, src := auth.TokenFromRequest(r, h.cfg.CookieName); src == auth.SourceCookie && !sameSiteOrAllowed(r, h.cfg.AllowedOrigins) {
			return http.StatusForbidden, "Cross-site request refused: the token came from a cookie and the origin is not allowed (websocket.allowed_origins)."
		}
	}
	if r.Method == http.MethodDelete {
		return 0, ""
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, fmt.Sprintf("Unsupported media type %q in request: send application/json.", ct)
	}
	return 0, ""
}

// sameSiteOrAllowed reports whether a request comes from the server's own
// origin or an allowed one. Browsers send Origin on every state-changing
// request; without one, a Sec-Fetch-Site: cross-site header still tells.
func sameSiteOrAllowed(r *http.Request, allowed []string) bool {
	if r.Header.Get("Origin") == "" {
		return r.Header.Get("Sec-Fetch-Site") != "cross-site"
	}
	return ws.OriginAllowed(r, allowed)
}

func detail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"detail": msg})
}

func writeRaw(w http.ResponseWriter, status int, body json.RawMessage) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func readAll(w http.ResponseWriter, r *http.Request, max int64) (json.RawMessage, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, switchyard.Errorf(switchyard.CodeTooLarge, "Request body over %d bytes (limits.max_request_body).", max)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, switchyard.Errorf(switchyard.CodeBadRequest, "Request body not received in time (limits.read_timeout).")
		}
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "Cannot read the request body.")
	}
	return b, nil
}

// listQuery reads ?page=&page_size=&search=&ordering=&<field>=<value>.
func listQuery(sc *resource.Schema, v url.Values, maxSearch int) (resource.ListQuery, int, int, error) {
	verr := &resource.ValidationError{Fields: map[string][]string{}}
	if msg := searchTooLong(v.Get("search"), maxSearch); msg != "" {
		verr.Fields["search"] = []string{msg}
	}
	page, size := 1, sc.PageSize()
	if s := v.Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			verr.Fields["page"] = []string{"Invalid page."}
		} else {
			page = n
		}
	}
	if s := v.Get("page_size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			verr.Fields["page_size"] = []string{"Ensure this value is between 1 and 1000."}
		} else {
			size = n
		}
	}
	q := resource.ListQuery{Search: v.Get("search"), Limit: size, Offset: (page - 1) * size}
	if s := v.Get("ordering"); s != "" {
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				q.Ordering = append(q.Ordering, part)
			}
		}
	}
	for key, vals := range v {
		switch key {
		case "page", "page_size", "search", "ordering", "token":
			continue
		}
		raw, msg := filterValue(sc, key, vals[len(vals)-1])
		if msg != "" {
			verr.Fields[key] = append(verr.Fields[key], msg)
			continue
		}
		if q.Filter == nil {
			q.Filter = map[string]json.RawMessage{}
		}
		q.Filter[key] = raw
	}
	if len(verr.Fields) > 0 {
		return q, 0, 0, verr
	}
	return q, page, size, nil
}

// filterValue turns a query-string value into the JSON of its field's
// type.
func filterValue(sc *resource.Schema, key, s string) (json.RawMessage, string) {
	if key == sc.PK() {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return nil, "A valid integer is required."
		}
		return json.RawMessage(s), ""
	}
	f, ok := sc.Field(key)
	if !ok {
		return nil, "Unknown field to filter on."
	}
	switch f.Type {
	case config.FieldInt:
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return nil, "A valid integer is required."
		}
		return json.RawMessage(s), ""
	case config.FieldFloat:
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return nil, "A valid number is required."
		}
		return json.RawMessage(s), ""
	case config.FieldBool:
		switch strings.ToLower(s) {
		case "true", "1":
			return json.RawMessage("true"), ""
		case "false", "0":
			return json.RawMessage("false"), ""
		}
		return nil, "Must be a valid boolean."
	case config.FieldJSON:
		return nil, "JSON fields cannot be filtered on."
	}
	b, _ := json.Marshal(s)
	return b, ""
}

// searchTooLong returns the error of a search text over max characters,
// or "".
func searchTooLong(search string, max int) string {
	if utf8.RuneCountInString(search) > max {
		return fmt.Sprintf("Ensure this value has at most %d characters (limits.max_search_length).", max)
	}
	return ""
}

// pageBody is DRF's page: count, next and previous links, results.
func (h *Resources) pageBody(r *http.Request, res resource.ListResult, page, size int) map[string]any {
	link := func(p int) any {
		if p < 1 || (p-1)*size >= res.Count {
			return nil
		}
		return h.pageLink(r, p)
	}
	results := res.Results
	if results == nil {
		results = []json.RawMessage{}
	}
	return map[string]any{"count": res.Count, "next": link(page + 1), "previous": link(page - 1), "results": results}
}

// pageLink is the URL of another page of the same list: under the
// configured public URL, or relative. The Host header, which any client
// sets as it likes, never goes into it.
func (h *Resources) pageLink(r *http.Request, page int) string {
	u := url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath}
	q := r.URL.Query()
	q.Set("page", strconv.Itoa(page))
	u.RawQuery = q.Encode()
	return h.cfg.PublicURL + u.RequestURI()
}
