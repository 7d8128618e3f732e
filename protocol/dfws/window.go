package dfws

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/signal"
)

// The bootstrap: what df_websockets' WebsocketMiddleware and
// set_websocket_topics do for a page view, done by the application
// calling the server API (api: POST /api/server/windows {topics, user?}),
// which calls NewWindow.

// CookieMaxAge is the Max-Age of the bootstrap's cookies, in seconds
// (df_websockets' max_age=86400).
const CookieMaxAge = 86400

// Cookie sets the attributes of the bootstrap's cookies, which
// df_websockets takes from Django's CSRF cookie settings.
type Cookie struct {
	// Domain is CSRF_COOKIE_DOMAIN ("": none, the page's host).
	Domain string
	// Path is CSRF_COOKIE_PATH (default "/").
	Path string
	// SameSite is CSRF_COOKIE_SAMESITE: "Lax" (its default), "Strict",
	// "None", or "" for no SameSite attribute. Set it to "Lax" yourself:
	// the zero value leaves the attribute out.
	SameSite string
}

func (c *Cookie) check() error {
	if c.Path == "" {
		c.Path = "/"
	}
	switch c.SameSite {
	case "", "Lax", "Strict", "None":
	default:
		return fmt.Errorf("dfws: Cookie.SameSite must be Lax, Strict, None or empty (got %q)", c.SameSite)
	}
	for _, v := range []string{c.Domain, c.Path} {
		if strings.ContainsAny(v, ";, \t\r\n\"") {
			return fmt.Errorf("dfws: Cookie.Domain and Cookie.Path must not hold ';', ',', '\"' or spaces (got %q)", v)
		}
	}
	return nil
}

// setCookie returns a Set-Cookie value with df_websockets' attributes,
// in the order Django writes them (its Morsel sorts them by name; Django
// adds an expires attribute that Max-Age overrides in every browser).
func (c Cookie) setCookie(name, value string, secure bool) string {
	var b strings.Builder
	b.WriteString(name + "=" + value)
	if c.Domain != "" {
		b.WriteString("; Domain=" + c.Domain)
	}
	fmt.Fprintf(&b, "; Max-Age=%d; Path=%s", CookieMaxAge, c.Path)
	if c.SameSite != "" {
		b.WriteString("; SameSite=" + c.SameSite)
	}
	if secure {
		b.WriteString("; Secure")
	}
	return b.String()
}

// WindowRequest asks for a page's window: its key, its topics stored
// for the socket to join, and the cookies that carry them.
type WindowRequest struct {
	// Topics are the page's topics as JSON values (see Topic).
	Topics []json.RawMessage
	// User is the page's user pk ("" for an anonymous page): the window
	// joins USER (-<UserModel>.<User>) and triggers "to users" reach it.
	User string
	// Host is the page request's host (Django's request.get_host()),
	// which the dfwsurl cookie points at when Config.URL is "".
	Host string
	// Secure says whether the page came over HTTPS (Django's
	// request.is_secure()): the cookies are Secure and a URL built from
	// Host is wss://. nil: the URL's scheme decides.
	Secure *bool
}

// Window is the bootstrap's answer: the application sets Cookies on its
// page response (each a ready Set-Cookie header value).
type Window struct {
	WindowKey string   `json:"window_key"`
	URL       string   `json:"url"`
	Topics    []string `json:"topics"`
	Cookies   []string `json:"cookies"`
}

// keyChars are df_websockets' VALID_KEY_CHARS.
const keyChars = "abcdefghijklmnopqrstuvwxyz0123456789"

// newKey returns 32 random characters of keyChars (about 165 bits).
func newKey() string {
	var b [32]byte
	for i := range b {
		b[i] = keyChars[randIndex(len(keyChars))]
	}
	return string(b[:])
}

// randIndex returns a uniform random int in [0, n), n <= 256.
func randIndex(n int) int {
	limit := 256 - 256%n
	var b [1]byte
	for {
		rand.Read(b[:])
		if int(b[0]) < limit {
			return int(b[0]) % n
		}
	}
}

// NewWindow makes a window key for a page, stores its topics for the
// socket that will connect with it (for signals.window_ttl, 10 h by
// default, df_websockets' 36,000 s), and returns the cookies that carry
// it. As set_websocket_topics, the window always joins WINDOW and
// BROADCAST, and USER when the page has a user. Errors are
// CodeBadRequest naming the field.
func (h *Handler) NewWindow(ctx context.Context, req WindowRequest) (Window, error) {
	wsURL, secure, err := h.socketURL(req.Host, req.Secure)
	if err != nil {
		return Window{}, err
	}
	if len(req.Topics) > 1000 {
		return Window{}, switchyard.Errorf(switchyard.CodeBadRequest, "field %q: at most 1000 topics", "topics")
	}
	if len(req.User) > signal.MaxNameLength || strings.ContainsFunc(req.User, unicode.IsControl) {
		return Window{}, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be at most %d bytes, without control characters", "user", signal.MaxNameLength)
	}
	key := newKey()
	topics := []string{WindowTopic(key), BroadcastTopic}
	if req.User != "" {
		topics = append(topics, UserTopic(h.cfg.UserModel, req.User))
	}
	for i, raw := range req.Topics {
		t, err := Topic(raw)
		if err != nil {
			return Window{}, switchyard.Errorf(switchyard.CodeBadRequest, "field %q[%d]: %s", "topics", i, switchyard.ErrorMessage(err))
		}
		topics = append(topics, t)
	}
	u := signal.WindowUpdate{Window: key, Topics: topics}
	if req.User != "" {
		u.User = &req.User // else the connection's own user, if any
	}
	if _, err := h.cfg.Signals.SetWindow(ctx, u); err != nil {
		return Window{}, err
	}
	return Window{
		WindowKey: key,
		URL:       wsURL,
		Topics:    topics,
		Cookies: []string{
			h.cfg.Cookie.setCookie(URLCookie, url.QueryEscape(wsURL), secure), // Python's quote_plus
			h.cfg.Cookie.setCookie(KeyCookie, key, secure),
		},
	}, nil
}

// socketURL returns the URL the dfwsurl cookie carries, and whether the
// cookies are Secure.
func (h *Handler) socketURL(host string, secure *bool) (string, bool, error) {
	u := h.cfg.URL
	if u == "" {
		if host == "" {
			return "", false, switchyard.Errorf(switchyard.CodeBadRequest, "field %q is required (the page's host, where the socket is served at %s), unless df_websockets.url or public_url is set", "host", h.cfg.Path)
		}
		if strings.ContainsAny(host, "/?#@ \t\r\n") || len(host) > 255 {
			return "", false, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be a host[:port], like example.com:8000 (got %q)", "host", clip(host))
		}
		scheme := "ws"
		if secure != nil && *secure {
			scheme = "wss"
		}
		u = scheme + "://" + host + h.cfg.Path
	}
	pu, err := checkURL(u)
	if err != nil {
		return "", false, switchyard.Errorf(switchyard.CodeBadRequest, "field %q: %v", "host", err)
	}
	if secure != nil {
		return u, *secure, nil
	}
	return u, pu.Scheme == "wss", nil
}

// checkURL parses a ws:// or wss:// URL.
func checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%q must be a ws:// or wss:// URL with a host", s)
	}
	return u, nil
}
