package auth

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/switchyardhq/switchyard"
)

// The connect proxy. Applications that authenticate their users with a
// session cookie (Django's sessionid) have no token to hand Switchyard.
// With a Proxy, a connection without a valid token is described to the
// application — a signed POST with the browser's cookie forwarded — and
// the application answers who it is:
//
//	POST <url>   Switchyard-Signature: t=…,v1=…   Cookie: sessionid=…
//	{"client_id": "…", "transport": "websocket", "protocol": "live", "path": "/live",
//	 "remote_addr": "…", "user_agent": "…", "refresh": false}
//
//	200 {"user": "42", "info": {…}, "channels": […], "topics": […], "expire_at": 1767225600, …claims}
//	401 / 403 {"detail": "…"}   the connection is refused with that status and message
//
// A call that fails or takes longer than the timeout refuses the
// connection with 503; it never hangs. An answer with expire_at is asked
// again before it (Keep), and a refusal then closes the connection with
// 4001.

// CloseSessionEnded is the close code of a connection whose application
// session ended (a refresh was refused); the hub closes a connection
// whose session expired unrefreshed with the same code.
const CloseSessionEnded = 4001

// Conditions callers branch on, behind the *switchyard.Error Ask returns.
var (
	// ErrProxyRefused: the application answered 401 or 403 (or
	// redirected, as a login_required view does).
	ErrProxyRefused = errors.New("auth: the application refused the connection")
	// ErrProxyUnavailable: the call failed, timed out, or its answer
	// could not be read.
	ErrProxyUnavailable = errors.New("auth: the application did not answer")
)

// maxProxyReply bounds the answer read from the application. Answers are
// a user, a few channels and topics: far below it.
const maxProxyReply = 1 << 20

// maxRefusal bounds the application's refusal message shown to clients.
const maxRefusal = 200

// ProxyConfig configures a Proxy.
type ProxyConfig struct {
	// URL is the application's endpoint.
	URL string
	// Secret signs each call (SignatureHeader).
	Secret []byte
	// Headers are the request headers forwarded (default Cookie and
	// Authorization).
	Headers []string
	// Timeout bounds one call (default 5 s).
	Timeout time.Duration
	// RefreshBefore is how long before an answer's expire_at it is asked
	// again (default 30 s; at most half the time left).
	RefreshBefore time.Duration
	// Client makes the calls (default: one that follows no redirect).
	Client *http.Client
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock for signatures and expiries (default time.Now).
	Now func() time.Time
}

// Proxy asks the application who connections are, and keeps answers with
// an expiry fresh. It is safe for concurrent use; Close stops its
// refreshes.
type Proxy struct {
	cfg    ProxyConfig
	client *http.Client
	log    *slog.Logger

	ctx    context.Context // ends with Close: refresh calls in flight stop
	cancel context.CancelFunc
	sem    chan struct{} // bounds concurrent refresh calls

	mu      sync.Mutex
	queue   keepHeap
	running bool
	closed  bool
	wake    chan struct{}
	wg      sync.WaitGroup // the loop and the refresh calls
}

// maxRefreshes bounds the refresh calls in flight: many sessions granted
// at once expire at once, and the application should not get them all
// together.
const maxRefreshes = 16

// NewProxy returns a proxy for cfg.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.URL == "" {
		return nil, errors.New("auth: proxy URL is required")
	}
	if len(cfg.Secret) < 16 {
		return nil, errors.New("auth: proxy secret must be at least 16 bytes")
	}
	if cfg.Headers == nil {
		cfg.Headers = []string{"Cookie", "Authorization"}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.RefreshBefore <= 0 {
		cfg.RefreshBefore = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Proxy{cfg: cfg, client: client, log: cfg.Logger, ctx: ctx, cancel: cancel,
		sem: make(chan struct{}, maxRefreshes), wake: make(chan struct{}, 1)}, nil
}

// Connection describes a connection to the application: the body of a
// proxy call.
type Connection struct {
	ClientID string `json:"client_id"`
	// Transport is "websocket" or "long-poll".
	Transport string `json:"transport"`
	// Protocol is the wire: "live", "binding"…
	Protocol   string `json:"protocol"`
	Path       string `json:"path"`
	RemoteAddr string `json:"remote_addr"`
	UserAgent  string `json:"user_agent"`
}

// ConnectionOf describes r: its path, remote address and user agent.
func ConnectionOf(r *http.Request, clientID, transport, protocol string) Connection {
	return Connection{ClientID: clientID, Transport: transport, Protocol: protocol, Path: r.URL.Path, RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent()}
}

// Grant is the application's answer for one connection.
type Grant struct {
	// Principal is who the application says the connection is: its
	// Expires is the answer's expire_at, its Topics the signal topics of
	// the connection's window, and its Claims the whole answer (a JSON
	// object), so signal access rules on claims (claim:<name>,
	// perm:<p> on "perms") read what the application added to it.
	Principal Principal

	conn   Connection
	header http.Header // the forwarded headers, sent again on refresh
}

// Identify returns who a connection is. A valid token decides (v's
// rules). Without one — no token, or one that does not verify — the
// application is asked when p is set, and its answer decides (a Grant to
// Keep when it expires), except that an anonymous answer ({"user": null})
// is refused like a connection without credentials when v does not allow
// anonymous clients (auth.anonymous false); without p, v's rules apply
// (anonymous when allowed, the token's error when it is invalid). v and p
// may be nil; with neither, every connection is anonymous.
func Identify(ctx context.Context, r *http.Request, v *Verifier, p *Proxy, c Connection) (Principal, *Grant, error) {
	if v != nil {
		if tok, _ := TokenFromRequest(r, v.cfg.CookieName); tok != "" || p == nil {
			pr, err := v.FromRequest(r)
			if err == nil || p == nil {
				return pr, nil, err
			}
		}
	}
	if p == nil {
		return Principal{Anonymous: true}, nil, nil
	}
	g, err := p.Ask(ctx, r, c)
	if err != nil {
		return Principal{}, nil, err
	}
	if g.Principal.User == "" && v != nil && !v.cfg.Anonymous {
		return Principal{}, nil, v.reject(msgAuthRequired, "auth.anonymous")
	}
	return g.Principal, g, nil
}

// Ask describes the connection of r to the application and returns its
// answer. Errors are *switchyard.Error: CodeUnauthorized or
// CodeForbidden with the application's message (ErrProxyRefused), or
// CodeUnavailable (ErrProxyUnavailable) when the call failed, timed out
// or its answer could not be read.
func (p *Proxy) Ask(ctx context.Context, r *http.Request, c Connection) (*Grant, error) {
	h := http.Header{}
	for _, name := range p.cfg.Headers {
		for _, v := range r.Header.Values(name) {
			h.Add(name, v)
		}
	}
	g, err := p.call(ctx, h, c, false)
	if err != nil {
		return nil, err
	}
	if !g.Principal.Expires.IsZero() && !g.Principal.Expires.After(p.cfg.Now()) {
		return nil, switchyard.Wrap(ErrProxyRefused, switchyard.CodeUnauthorized, "the application's session has expired (expire_at)")
	}
	return g, nil
}

// proxyCall is the body of a call.
type proxyCall struct {
	Connection
	// Refresh is true when an answer with an expiry is asked again.
	Refresh bool `json:"refresh"`
}

// proxyReply is the application's answer.
type proxyReply struct {
	User     json.RawMessage `json:"user"`
	Info     json.RawMessage `json:"info"`
	Channels []string        `json:"channels"`
	Topics   []string        `json:"topics"`
	ExpireAt json.RawMessage `json:"expire_at"`
}

func (p *Proxy) call(ctx context.Context, h http.Header, c Connection, refresh bool) (*Grant, error) {
	body, err := json.Marshal(proxyCall{Connection: c, Refresh: refresh})
	if err != nil {
		return nil, fmt.Errorf("auth: proxy: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, p.unavailable("cannot build the call", err)
	}
	req.Header = h.Clone()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Switchyard-Connect-Proxy")
	req.Header.Set(SignatureHeader, Sign(p.cfg.Secret, p.cfg.Now(), body))
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, p.unavailable(fmt.Sprintf("no answer within %s (auth.proxy.timeout)", p.cfg.Timeout), err)
		}
		return nil, p.unavailable("the call failed", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxProxyReply+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, p.unavailable(fmt.Sprintf("no answer within %s (auth.proxy.timeout)", p.cfg.Timeout), err)
		}
		return nil, p.unavailable("reading the answer failed", err)
	}
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized, s == http.StatusForbidden:
		code := switchyard.CodeUnauthorized
		if s == http.StatusForbidden {
			code = switchyard.CodeForbidden
		}
		return nil, switchyard.Wrap(ErrProxyRefused, code, "%s", refusal(resp.Header.Get("Content-Type"), data))
	case s >= 300 && s < 400:
		// A view behind login_required redirects to the login page.
		return nil, switchyard.Wrap(ErrProxyRefused, switchyard.CodeUnauthorized, "authentication required")
	case s != http.StatusOK:
		return nil, p.unavailable(fmt.Sprintf("it answered %d", s), nil)
	case len(data) > maxProxyReply:
		return nil, p.unavailable(fmt.Sprintf("its answer is over %d bytes", maxProxyReply), nil)
	}
	var rep proxyReply
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, p.unavailable("its answer is not a JSON object of the form {user, info, channels, topics, expire_at}", err)
	}
	g := &Grant{conn: c, header: h}
	g.Principal.Channels, g.Principal.Topics, g.Principal.Claims = rep.Channels, rep.Topics, json.RawMessage(data)
	if g.Principal.User, err = proxyUser(rep.User); err != nil {
		return nil, p.unavailable("its answer's user", err)
	}
	g.Principal.Anonymous = g.Principal.User == ""
	if len(rep.Info) > 0 && string(rep.Info) != "null" {
		g.Principal.Info = rep.Info
	}
	if g.Principal.Expires, err = proxyExpiry(rep.ExpireAt); err != nil {
		return nil, p.unavailable("its answer's expire_at", err)
	}
	return g, nil
}

// unavailable logs a failed call for operators and returns the client's
// error, which does not show the application's internals.
func (p *Proxy) unavailable(what string, err error) error {
	p.log.Warn("connect proxy: "+what, "url", p.cfg.URL, "err", err)
	return switchyard.Wrap(ErrProxyUnavailable, switchyard.CodeUnavailable, "the application could not be asked who this connection is; try again")
}

// proxyUser reads the answer's user: a string, an integer (Django's pk),
// or null / absent / "" for anonymous.
func proxyUser(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if i, err := n.Int64(); err == nil {
			return strconv.FormatInt(i, 10), nil
		}
	}
	return "", fmt.Errorf("must be a string, an integer or null (got %.40s)", raw)
}

// proxyExpiry reads expire_at: Unix seconds (a number), an RFC 3339
// date-time, or null / absent for none.
func proxyExpiry(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil && f > 0 && f < 1<<40 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("must be Unix seconds, an RFC 3339 date-time or null (got %.40s)", raw)
}

// refusal is the application's message: the detail (DRF), message or
// error of a JSON body, or a short plain text body.
func refusal(contentType string, body []byte) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) == nil {
		for _, k := range []string{"detail", "message", "error"} {
			var s string
			if json.Unmarshal(obj[k], &s) == nil && s != "" {
				return clip(s)
			}
		}
	}
	if strings.HasPrefix(contentType, "text/plain") {
		if s := strings.TrimSpace(string(body)); s != "" {
			return clip(s)
		}
	}
	return "refused by the application"
}

// clip keeps a message short and printable.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > maxRefusal {
		s = string(r[:maxRefusal]) + "…"
	}
	return s
}

// Keepable is a connection a proxy keeps authenticated (a hub.Session).
type Keepable interface {
	// SetExpires replaces the connection's expiry: past it, unrefreshed,
	// the connection is closed with CloseSessionEnded.
	SetExpires(time.Time)
	// Close closes the connection with a close code.
	Close(code int, reason string)
}

// keep is one connection whose answer expires.
type keep struct {
	s       Keepable
	g       *Grant
	expires time.Time
	at      time.Time // next call
	index   int       // in the heap; -1 when not queued
	stopped bool
}

type keepHeap []*keep

func (h keepHeap) Len() int           { return len(h) }
func (h keepHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h keepHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *keepHeap) Push(x any) {
	k := x.(*keep)
	k.index = len(*h)
	*h = append(*h, k)
}
func (h *keepHeap) Pop() any {
	old := *h
	k := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	k.index = -1
	return k
}

// Keep asks the application again before g expires, for as long as the
// connection lives: an answer for the same user extends the connection's
// expiry, a refusal (or an answer for another user) closes it with
// CloseSessionEnded, and a failed call is retried while time is left
// (past the expiry the connection's owner closes it). stop ends it; call
// it when the connection closes. Answers without expire_at need nothing.
func (p *Proxy) Keep(s Keepable, g *Grant) (stop func()) {
	if g == nil || g.Principal.Expires.IsZero() {
		return func() {}
	}
	k := &keep{s: s, g: g, expires: g.Principal.Expires, index: -1}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return func() {}
	}
	p.scheduleLocked(k, p.refreshAt(k.expires))
	if !p.running {
		p.running = true
		p.wg.Add(1)
		go p.loop()
	}
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		k.stopped = true
		if k.index >= 0 {
			heap.Remove(&p.queue, k.index)
		}
	}
}

// refreshAt is when an answer expiring at exp is asked again.
func (p *Proxy) refreshAt(exp time.Time) time.Time {
	left := exp.Sub(p.cfg.Now())
	return exp.Add(-min(p.cfg.RefreshBefore, left/2))
}

func (p *Proxy) scheduleLocked(k *keep, at time.Time) {
	if k.stopped || p.closed {
		return
	}
	k.at = at
	heap.Push(&p.queue, k)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// loop runs the calls that are due, until Close.
func (p *Proxy) loop() {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		now := p.cfg.Now()
		var due []*keep
		for len(p.queue) > 0 && !p.queue[0].at.After(now) {
			due = append(due, heap.Pop(&p.queue).(*keep))
		}
		wait := time.Hour
		if len(p.queue) > 0 {
			wait = p.queue[0].at.Sub(now)
		}
		for _, k := range due {
			p.wg.Add(1)
			go p.refresh(k)
		}
		p.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

// refresh asks the application again for one connection.
func (p *Proxy) refresh(k *keep) {
	defer p.wg.Done()
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-p.ctx.Done():
		return
	}
	g, err := p.call(p.ctx, k.g.header, k.g.conn, true)
	p.mu.Lock()
	defer p.mu.Unlock()
	if k.stopped || p.closed {
		return
	}
	switch {
	case err == nil && g.Principal.User != k.g.Principal.User:
		k.stopped = true
		k.s.Close(CloseSessionEnded, "the application's session is now another user's")
	case err == nil:
		k.s.SetExpires(g.Principal.Expires)
		k.expires = g.Principal.Expires
		if !k.expires.IsZero() {
			if !k.expires.After(p.cfg.Now()) {
				k.stopped = true
				k.s.Close(CloseSessionEnded, "session expired")
				return
			}
			p.scheduleLocked(k, p.refreshAt(k.expires))
		}
	case errors.Is(err, ErrProxyRefused):
		k.stopped = true
		k.s.Close(CloseSessionEnded, closeReason(switchyard.ErrorMessage(err)))
	default:
		// Unavailable: try again at half the time left, while there is
		// some; at the expiry the connection's owner closes it.
		if left := k.expires.Sub(p.cfg.Now()); left > 2*time.Second {
			p.scheduleLocked(k, p.cfg.Now().Add(left/2))
		}
	}
}

// closeReason fits a message into a close frame's 123 bytes.
func closeReason(s string) string {
	for len(s) > 123 {
		r := []rune(s)
		s = string(r[:len(r)-1])
	}
	return s
}

// Close stops the refreshes (calls in flight are cancelled) and waits for
// them.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}
