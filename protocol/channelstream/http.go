package channelstream

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard/internal/signin"
	"github.com/switchyardhq/switchyard/ws"
)

// Register mounts every Channelstream route on mux under prefix (which
// starts and ends with "/"): the signed API, /listen, /disconnect, /ws
// and the admin pages.
func (s *Server) Register(mux *http.ServeMux, prefix string) {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	s.adminPath = prefix + "admin"
	signed := []struct {
		path    string
		methods []string
		fn      func(*http.Request, json.RawMessage) (any, fieldErrors)
	}{
		{"connect", post, func(r *http.Request, b json.RawMessage) (any, fieldErrors) { return s.connect(r.Context(), b) }},
		{"subscribe", post, func(r *http.Request, b json.RawMessage) (any, fieldErrors) {
			return s.subscribe(r.Context(), b, queryParam(r, "conn_id"))
		}},
		{"unsubscribe", post, func(r *http.Request, b json.RawMessage) (any, fieldErrors) {
			return s.unsubscribe(b, queryParam(r, "conn_id"))
		}},
		{"user_state", post, func(r *http.Request, b json.RawMessage) (any, fieldErrors) { return s.userState(b) }},
		{"channel_config", post, func(r *http.Request, b json.RawMessage) (any, fieldErrors) { return s.channelConfig(b) }},
		{"info", nil, func(r *http.Request, b json.RawMessage) (any, fieldErrors) { return s.info(b) }},
		{"message", []string{http.MethodPost, http.MethodPatch, http.MethodDelete}, func(r *http.Request, b json.RawMessage) (any, fieldErrors) {
			switch r.Method {
			case http.MethodPatch:
				return s.editMessage(b)
			case http.MethodDelete:
				return s.deleteMessage(b)
			}
			return s.message(b)
		}},
	}
	for _, e := range signed {
		mux.Handle(prefix+e.path, s.route(true, e.methods, func(w http.ResponseWriter, r *http.Request) {
			body, ok := s.body(w, r)
			if !ok {
				return
			}
			res, errs := e.fn(r, body)
			if errs != nil {
				writeJSON(w, http.StatusUnprocessableEntity, errs)
				return
			}
			writeJSON(w, http.StatusOK, res)
		}))
	}
	mux.Handle(prefix+"disconnect", s.route(false, nil, s.serveDisconnect))
	mux.Handle(prefix+"listen", s.route(false, []string{http.MethodGet, http.MethodPost}, s.serveListen))
	mux.Handle(prefix+"ws", http.HandlerFunc(s.serveWS))
	mux.Handle(prefix+"admin", s.route(false, []string{http.MethodGet}, s.serveAdminPage))
	mux.Handle(prefix+"admin/admin.json", s.route(false, []string{http.MethodGet, http.MethodPost}, s.serveAdminJSON))
	mux.Handle(prefix+"admin/sign_in", s.route(false, []string{http.MethodGet, http.MethodPost}, s.serveSignIn))
	mux.Handle(prefix+"admin/sign_out", s.route(false, []string{http.MethodGet, http.MethodPost}, s.serveSignOut))
}

var post = []string{http.MethodPost}

func queryParam(r *http.Request, name string) *string {
	q := r.URL.Query()
	if !q.Has(name) {
		return nil
	}
	v := q.Get(name)
	return &v
}

// route applies what every Channelstream route shares: CORS headers,
// the OPTIONS preflight, enforce_https, the signature checks (signed
// routes; elsewhere a token that is sent must still verify, as in
// Channelstream) and the allowed methods (nil: any).
func (s *Server) route(signed bool, methods []string, fn http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.cors(w, r)
		if r.Method == http.MethodOptions {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusOK)
			return
		}
		if s.cfg.EnforceHTTPS && !isHTTPS(r) {
			writeJSON(w, http.StatusNotAcceptable, map[string]string{"request": "SSL is required"})
			return
		}
		if signed {
			if status, body := s.guard.Check(r); status != 0 {
				writeJSON(w, status, body)
				return
			}
		} else if t := requestToken(r); t != "" && !s.guard.valid(t) {
			writeJSON(w, http.StatusUnauthorized, badSignature)
			return
		}
		if methods != nil && !contains(methods, r.Method) {
			w.Header().Set("Allow", strings.Join(methods, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"request": "Method " + r.Method + " is not allowed here"})
			return
		}
		fn(w, r)
	})
}

// isHTTPS reports whether the request came over TLS, directly or
// through a proxy that says so.
func isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	for _, h := range []string{"X-Forwarded-Proto", "X-Url-Scheme", "X-Scheme"} {
		if strings.EqualFold(r.Header.Get(h), "https") {
			return true
		}
	}
	return false
}

// cors adds Channelstream's CORS headers. Access-Control-Allow-Origin is
// "*" unless allow_cors is set; then only when an entry is part of the
// Origin (Channelstream's substring match).
func (s *Server) cors(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	allow := len(s.cfg.AllowCORS) == 0
	if origin := r.Header.Get("Origin"); !allow && origin != "" {
		for _, a := range s.cfg.AllowCORS {
			if strings.Contains(origin, a) {
				allow = true
				break
			}
		}
	}
	if allow {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	h.Set("XDomainRequestAllowed", "1")
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS, PUT, DELETE, PATCH")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Depth, User-Agent, X-File-Size, X-Requested-With, If-Modified-Since, X-File-Name, Cache-Control, Pragma, Origin, Connection, Referer, Cookie")
	h.Set("Access-Control-Max-Age", "86400")
}

// body reads a request body within the limit: 413 over it, 422 when it
// is not JSON (Channelstream answered 500).
func (s *Server) body(w http.ResponseWriter, r *http.Request) (json.RawMessage, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, fieldErrors{"_schema": []string{"Request body is larger than " + strconv.FormatInt(s.cfg.MaxBody, 10) + " bytes."}})
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			writeJSON(w, http.StatusBadRequest, fieldErrors{"_schema": []string{"The request body did not arrive in time (limits.read_timeout)."}})
		} else {
			writeJSON(w, http.StatusBadRequest, fieldErrors{"_schema": []string{"The request body could not be read."}})
		}
		return nil, false
	}
	b = bytes.TrimSpace(b)
	if len(b) > 0 && !json.Valid(b) {
		writeJSON(w, http.StatusUnprocessableEntity, fieldErrors{"_schema": []string{"Invalid JSON body."}})
		return nil, false
	}
	return b, true
}

// serveDisconnect is /disconnect: GET takes ?conn_id=, other methods a
// JSON body {"conn_id"} (or the query when the body is empty).
func (s *Server) serveDisconnect(w http.ResponseWriter, r *http.Request) {
	v, ok := s.disconnectID(w, r)
	if !ok {
		return
	}
	if kind(v) == 'n' {
		writeJSON(w, http.StatusUnprocessableEntity, fieldErrors{"conn_id": []string{msgNull}})
		return
	}
	id, ok := decodeUUID(v)
	if !ok {
		writeJSON(w, http.StatusUnprocessableEntity, fieldErrors{"conn_id": []string{msgUUID}})
		return
	}
	writeJSON(w, http.StatusOK, s.disconnect(id))
}

// disconnectID finds the conn_id of a /disconnect: the JSON body's (when
// there is a body and the method is not GET), else the query's; null
// when neither has one.
func (s *Server) disconnectID(w http.ResponseWriter, r *http.Request) (json.RawMessage, bool) {
	if r.Method != http.MethodGet {
		body, ok := s.body(w, r)
		if !ok {
			return nil, false
		}
		if len(body) > 0 {
			rd, ok := newReader(body)
			if !ok {
				writeJSON(w, http.StatusUnprocessableEntity, fieldErrors{"_schema": []string{msgInputType}})
				return nil, false
			}
			if v, ok := rd.fields["conn_id"]; ok {
				return v, true
			}
			return json.RawMessage("null"), true
		}
	}
	if q := queryParam(r, "conn_id"); q != nil {
		return raw(*q), true
	}
	return json.RawMessage("null"), true
}

// jsCallback is what a JSONP callback may be: a dotted JavaScript name.
var jsCallback = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*$`)

// serveListen is the long-poll: it answers with the connection's messages
// as one JSON array (JSONP with ?callback=).
func (s *Server) serveListen(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, ok := parseUUID(q.Get("conn_id"))
	if !ok {
		writeJSON(w, http.StatusUnprocessableEntity, []string{"Wrong UUID format"})
		return
	}
	cb := q.Get("callback")
	if cb != "" && (len(cb) > 128 || !jsCallback.MatchString(cb)) {
		writeJSON(w, http.StatusUnprocessableEntity, fieldErrors{"callback": []string{"Not a valid JavaScript function name."}})
		return
	}
	s.mu.Lock()
	c := s.conns[id]
	s.mu.Unlock()
	if c == nil {
		writeJSON(w, http.StatusUnauthorized, fieldErrors{"conn_id": []string{s.unknownConn(r.Context())}})
		return
	}
	if s.canPark(r) && s.park(w, c, cb) {
		return
	}
	frames := s.listen(r.Context(), c)
	pollHeaders(w.Header(), cb)
	w.Write(pollBody(frames, cb))
}

// gap is how long a poll that has a message waits for more before it
// answers (0.25 s, Channelstream's window).
const gap = 250 * time.Millisecond

// listen parks a poll on the connection until it has messages (it then
// answers a gap later with all that arrived), the heartbeat interval
// passes, or the poll is replaced. The connection's catch-up frames come
// first.
func (s *Server) listen(ctx context.Context, c *conn) [][]byte {
	t := &c.tport
	p := &poll{wake: make(chan struct{}, 1)}
	t.mu.Lock()
	if old := t.poll; old != nil {
		old.done = true // the older request answers at once with what it has
		old.signal()
	}
	if !t.gone {
		t.poll = p
		p.add(t.takePending())
	}
	start := time.Now()
	wait := s.cfg.Heartbeat
	batching := len(p.frames) > 0
	if batching {
		wait = gap
	}
	done := t.gone
	t.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	s.polls.Add(1)
	defer s.polls.Add(-1)
	for !done {
		select {
		case <-p.wake:
		case <-timer.C:
			done = true
			continue
		case <-ctx.Done():
			done = true
			continue
		case <-s.stop:
			done = true
			continue
		}
		t.mu.Lock()
		n, size, replaced := len(p.frames), p.bytes, p.done
		t.mu.Unlock()
		if replaced || size >= s.maxQueued || time.Since(start) >= s.cfg.Heartbeat {
			break
		}
		if n > 0 && !batching {
			// The first message: gather what follows for the gap, then
			// answer (Channelstream waited for a quiet gap, which never
			// comes under steady traffic).
			batching = true
			timer.Reset(gap)
		}
	}
	t.mu.Lock()
	frames := p.frames
	p.frames = nil
	if t.poll == p {
		t.poll = nil
		if ctx.Err() != nil && !t.gone {
			// The client left before the answer: keep its messages.
			p.frames = frames
			t.requeueLocked(p)
			frames = nil
		}
	}
	t.mu.Unlock()
	s.mu.Lock()
	c.lastActive = s.now()
	c.user.lastActive = c.lastActive
	s.mu.Unlock()
	return frames
}

// serveWS is /ws?conn_id=: the connection's WebSocket. Frames are JSON
// arrays; what the client sends only keeps it alive.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !ws.IsUpgradeRequest(r) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"request": "/ws only accepts WebSocket connections"})
		return
	}
	id, valid := parseUUID(r.URL.Query().Get("conn_id"))
	var c *conn
	if valid {
		s.mu.Lock()
		c = s.conns[id]
		s.mu.Unlock()
	}
	opts := append(append([]ws.Option(nil), s.cfg.WSOptions...), ws.CheckOrigin(func(*http.Request) bool { return true }))
	reason := "unknown connection"
	if valid && c == nil && s.clustered(r.Context()) {
		reason = closeElsewhere
	}
	ws.Upgrade(w, r, s.cfg.Engine, socket{s: s, c: c, valid: valid, unknown: reason}, opts...)
}

// msgElsewhere and closeElsewhere say that a connection may be held by
// another process of the deployment (see Config.Clustered).
const (
	msgElsewhere   = "Unknown connection on this Switchyard process: with several processes, the requests of a connection (/ws, /listen, /subscribe, /message with conn_id) must reach the process that handled its /connect (sticky routing on conn_id, see docs/deployment.md)"
	closeElsewhere = "unknown connection here: route conn_id to the process that handled /connect (sticky)"
)

func (s *Server) clustered(ctx context.Context) bool {
	return s.cfg.Clustered != nil && s.cfg.Clustered(ctx)
}

// unknownConn is the message for a conn_id this process does not hold.
func (s *Server) unknownConn(ctx context.Context) string {
	if s.clustered(ctx) {
		return msgElsewhere
	}
	return msgUnknownConn
}

// socket is the ws.Handler of one /ws connection.
type socket struct {
	s       *Server
	c       *conn
	valid   bool
	unknown string // the close reason for an unknown connection
}

func (k socket) OnOpen(wc *ws.Conn) {
	switch {
	case !k.valid:
		wc.Close(1008, "conn_id must be a UUID")
		return
	case k.c == nil:
		wc.Close(1000, k.unknown)
		return
	}
	t := &k.c.tport
	t.mu.Lock()
	if t.gone {
		t.mu.Unlock()
		wc.Close(1000, "unknown connection")
		return
	}
	old := t.ws
	t.ws = wc
	t.lastBeat = k.s.now()
	if p := t.poll; p != nil {
		p.done = true // the socket takes over
		p.signal()
		t.poll = nil
	}
	if pending := t.takePending(); len(pending) > 0 {
		// Sent under the lock: no live frame can pass the catch-up.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		wc.SendBatch(ctx, pending...)
		cancel()
	}
	t.mu.Unlock()
	if old != nil {
		old.Close(1000, "replaced by a new socket")
	}
}

func (k socket) OnMessage(*ws.Conn, ws.MessageType, []byte) {}

func (k socket) OnClose(wc *ws.Conn, err error) {
	if k.c == nil {
		return
	}
	t := &k.c.tport
	t.mu.Lock()
	mine := t.ws == wc
	if mine {
		t.ws = nil
	}
	t.mu.Unlock()
	if mine {
		// As in Channelstream, a closed socket ends its connection.
		k.s.drop(k.c, 1000, "")
	}
}

// The admin pages: admin.json answers a signed request (as in
// Channelstream), or a browser signed in with admin_user / admin_secret.

const adminCookie = "channelstream_admin"

func (s *Server) adminAllowed(r *http.Request) bool {
	if status, _ := s.guard.Check(r); status == 0 {
		return true
	}
	if s.cfg.AdminSecret == "" {
		return false
	}
	if u, p, ok := r.BasicAuth(); ok && s.credentials(u, p) {
		return true
	}
	ck, err := r.Cookie(adminCookie)
	if err != nil {
		return false
	}
	exp, sig, ok := strings.Cut(ck.Value, ".")
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	return err == nil && time.Now().Unix() < n && hmac.Equal([]byte(sig), []byte(s.cookieSig(exp)))
}

func (s *Server) credentials(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(s.cfg.AdminUser))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.AdminSecret))
	return u&p == 1 && s.cfg.AdminSecret != ""
}

func (s *Server) cookieSig(exp string) string {
	m := hmac.New(sha256.New, s.cookieKey)
	m.Write([]byte(exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) serveAdminJSON(w http.ResponseWriter, r *http.Request) {
	if !s.adminAllowed(r) {
		writeJSON(w, http.StatusForbidden, forbidden)
		return
	}
	writeJSON(w, http.StatusOK, s.admin())
}

func (s *Server) serveAdminPage(w http.ResponseWriter, r *http.Request) {
	if !s.adminAllowed(r) {
		http.Redirect(w, r, s.adminPath+"/sign_in", http.StatusFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, `<!doctype html><title>Channelstream admin</title><h1>Channelstream (Switchyard)</h1><p><a href="admin/sign_out">Sign out</a></p><pre id="s"></pre>
<script>async function f(){const r=await fetch("admin/admin.json",{credentials:"same-origin"});document.getElementById("s").textContent=JSON.stringify(await r.json(),null,2)}f();setInterval(f,5000)</script>`)
}

func (s *Server) serveSignIn(w http.ResponseWriter, r *http.Request) {
	msg := ""
	status := http.StatusOK
	if s.cfg.AdminSecret == "" {
		msg = "The admin panel is off: set channelstream.admin_secret to turn it on."
	} else if r.Method == http.MethodPost {
		status, msg = s.signIn(w, r)
		if status == http.StatusFound {
			return
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, `<!doctype html><title>Sign in</title><h1>Channelstream admin</h1><p>`+html.EscapeString(msg)+`</p>
<form method="post"><label>User <input name="username"></label> <label>Password <input name="password" type="password"></label> <button>Sign in</button></form>`)
}

// signIn checks a posted sign-in form within the attempt limits. On
// success it sets the cookie, redirects and returns 302; otherwise it
// returns the status and message of the page to show.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) (int, string) {
	addr := signin.AddressOf(r.RemoteAddr)
	ok, retry, global := s.signIns.Begin(addr)
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(retry.Round(time.Second)/time.Second)))
		key := "channelstream.sign_in_attempts"
		if global {
			key = "channelstream.sign_in_attempts_global"
		}
		return http.StatusTooManyRequests, "Too many sign-in attempts (" + key + "): try again in " + retry.Round(time.Second).String() + "."
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.signIns.End(addr, false)
		return http.StatusBadRequest, "The form could not be read."
	}
	if s.credentials(r.PostFormValue("username"), r.PostFormValue("password")) {
		s.signIns.End(addr, true)
		exp := strconv.FormatInt(time.Now().Add(30*24*time.Hour).Unix(), 10)
		http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: exp + "." + s.cookieSig(exp), Path: s.adminPath, HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: 30 * 24 * 3600})
		http.Redirect(w, r, s.adminPath, http.StatusFound)
		return http.StatusFound, ""
	}
	if s.signIns.End(addr, false) {
		s.log.Warn("channelstream: admin sign-ins locked for everyone: too many failures", "key", "channelstream.sign_in_attempts_global", "lockout", s.cfg.SignInLockout.String())
	}
	select { // slow down guessing, as Channelstream does
	case <-time.After(500 * time.Millisecond):
	case <-r.Context().Done():
	}
	return http.StatusOK, "Wrong user name or password."
}

func (s *Server) serveSignOut(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: "", Path: s.adminPath, MaxAge: -1})
	http.Redirect(w, r, s.adminPath+"/sign_in", http.StatusFound)
}
