package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchyardhq/switchyard/internal/signin"
)

// Cookie names: the session, and the login form's CSRF token (set with
// the form, checked when it is posted).
const (
	sessionCookie = "switchyard_dashboard"
	loginCookie   = "switchyard_dashboard_login"
)

// maxSessions bounds the sessions kept; past it a sign-in ends the oldest.
const maxSessions = 1000

// session is one signed-in browser. Its fields other than flash are
// immutable.
type session struct {
	key     [32]byte // SHA-256 of the cookie's value: the map key
	csrf    string
	created time.Time
	expires time.Time

	mu    sync.Mutex
	flash string
}

// setFlash keeps a message for the next page the session sees.
func (s *session) setFlash(msg string) {
	s.mu.Lock()
	s.flash = msg
	s.mu.Unlock()
}

// takeFlash returns and clears the message.
func (s *session) takeFlash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := s.flash
	s.flash = ""
	return msg
}

// sessions are the signed-in browsers of this process, by the SHA-256 of
// their cookie (the cookie's value itself is kept nowhere). They live in
// memory: a restart signs everyone out.
type sessions struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]*session
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, m: map[[32]byte]*session{}}
}

// start creates a session and returns it with its cookie value.
func (ss *sessions) start() (*session, string) {
	token := rand.Text() + rand.Text()
	now := ss.now()
	s := &session{key: sha256.Sum256([]byte(token)), csrf: rand.Text(), created: now, expires: now.Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, o := range ss.m {
		if !now.Before(o.expires) {
			delete(ss.m, k)
		}
	}
	for len(ss.m) >= maxSessions {
		var oldest *session
		for _, o := range ss.m {
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
		delete(ss.m, oldest.key)
	}
	ss.m[s.key] = s
	return s, token
}

// get returns the request's live session, or nil.
func (ss *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	key := sha256.Sum256([]byte(c.Value))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[key]
	if s == nil {
		return nil
	}
	if !ss.now().Before(s.expires) {
		delete(ss.m, key)
		return nil
	}
	return s
}

// end forgets a session.
func (ss *sessions) end(s *session) {
	ss.mu.Lock()
	delete(ss.m, s.key)
	ss.mu.Unlock()
}

// len returns how many sessions are kept.
func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

func (d *Dashboard) cookie(r *http.Request, name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: d.secure(r)}
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
	} else {
		c.MaxAge = -1
	}
	return c
}

// loginData is what the login page shows.
type loginData struct {
	Next, Error, Notice, CSRF string
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	if d.sessions.get(r) != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	notice := ""
	if r.URL.Query().Has("signed_out") {
		notice = "You are signed out."
	}
	d.showLogin(w, r, http.StatusOK, loginData{Next: r.URL.Query().Get("next"), Notice: notice})
}

// showLogin renders the login form with a fresh CSRF token in its cookie.
func (d *Dashboard) showLogin(w http.ResponseWriter, r *http.Request, status int, data loginData) {
	data.CSRF = rand.Text()
	data.Next = safeNext(data.Next)
	http.SetCookie(w, d.cookie(r, loginCookie, data.CSRF, time.Hour))
	w.Header().Set("Cache-Control", "no-store")
	d.renderPage(w, status, "login.html", page{Title: "Sign in", Data: data})
}

// login checks a posted password within the attempt limits.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		d.showLogin(w, r, http.StatusBadRequest, loginData{Error: "The form could not be read."})
		return
	}
	next := r.PostFormValue("next")
	c, err := r.Cookie(loginCookie)
	token := r.PostFormValue("csrf_token")
	if err != nil || token == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(token)) != 1 {
		d.showLogin(w, r, http.StatusForbidden, loginData{Next: next, Error: "The form expired: sign in again."})
		return
	}
	addr := signin.AddressOf(r.RemoteAddr)
	ok, retry, global := d.limiter.Begin(addr)
	if !ok {
		key := "dashboard.login_attempts"
		if global {
			key = "dashboard.login_attempts_global"
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(retry.Round(time.Second)/time.Second)))
		d.log.Warn("dashboard: sign-in refused: too many attempts", "remote", r.RemoteAddr, "key", key)
		d.showLogin(w, r, http.StatusTooManyRequests, loginData{Next: next,
			Error: "Too many sign-in attempts (" + key + "): try again in " + retry.Round(time.Second).String() + "."})
		return
	}
	if !d.checkPassword(r.PostFormValue("password")) {
		if d.limiter.End(addr, false) {
			d.log.Warn("dashboard: sign-ins locked for everyone: too many failures", "key", "dashboard.login_attempts_global", "lockout", d.opts.LoginLockout.String())
		}
		d.log.Info("dashboard: wrong password", "remote", r.RemoteAddr)
		select { // slow guessing down
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
		}
		d.showLogin(w, r, http.StatusUnauthorized, loginData{Next: next, Error: "Wrong password."})
		return
	}
	d.limiter.End(addr, true)
	_, value := d.sessions.start()
	http.SetCookie(w, d.cookie(r, sessionCookie, value, time.Duration(d.opts.SessionTTL)))
	http.SetCookie(w, d.cookie(r, loginCookie, "", 0))
	d.log.Info("dashboard: signed in", "remote", r.RemoteAddr)
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, s *session) {
	d.sessions.end(s)
	http.SetCookie(w, d.cookie(r, sessionCookie, "", 0))
	http.Redirect(w, r, Prefix+"login?signed_out", http.StatusSeeOther)
}

// safeNext keeps a redirect target inside the dashboard: a path under
// Prefix, never another host ("//evil", "/\evil").
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "//") {
		return Prefix
	}
	return next
}
