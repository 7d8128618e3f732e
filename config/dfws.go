package config

import (
	"net/url"
	"path"
	"regexp"
	"strings"
)

// DFWebsockets configures the df_websockets wire (signals over the
// socket that d9pouces/df_websockets' JS client opens, docs/django.md).
type DFWebsockets struct {
	// Path is where the socket is served (df_websockets' WEBSOCKET_URL,
	// default "/ws/"); "" turns the wire off.
	Path string `yaml:"path"`
	// URL is the WebSocket URL the dfwsurl cookie carries, such as
	// wss://example.com/ws/. "" builds it from public_url (ws:// or wss://,
	// its host and path prefix, then Path), or, without public_url, from
	// the host the application gives when it asks for a window.
	URL string `yaml:"url"`
	// CookieDomain is the Domain of the dfwskey and dfwsurl cookies
	// (Django's CSRF_COOKIE_DOMAIN); "" leaves it out.
	CookieDomain string `yaml:"cookie_domain"`
	// CookiePath is their Path (CSRF_COOKIE_PATH, default "/").
	CookiePath string `yaml:"cookie_path"`
	// CookieSameSite is their SameSite (CSRF_COOKIE_SAMESITE): Lax (the
	// default), Strict, None, or "" to leave it out.
	CookieSameSite string `yaml:"cookie_samesite"`
	// UserModel is the <app_label>.<model_name> of the USER topic
	// (settings.AUTH_USER_MODEL, lower-cased; default auth.user).
	UserModel string `yaml:"user_model"`
}

// DefaultDFWebsocketsPath is df_websockets' WEBSOCKET_URL.
const DefaultDFWebsocketsPath = "/ws/"

func defaultDFWebsockets() DFWebsockets {
	return DFWebsockets{Path: DefaultDFWebsocketsPath, CookiePath: "/", CookieSameSite: "Lax", UserModel: "auth.user"}
}

var (
	wirePathRE  = regexp.MustCompile(`^/[A-Za-z0-9._~/-]*$`)
	userModelRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$`)
	cookieRE    = regexp.MustCompile(`^[A-Za-z0-9._~!$&'()*+=:@/-]*$`)
)

// cleanWirePath reports whether p is a path a wire may be served at:
// clean, absolute, of safe characters, and one trailing slash at most.
func cleanWirePath(p string) bool {
	trimmed := strings.TrimSuffix(p, "/")
	return wirePathRE.MatchString(p) && trimmed != "" && path.Clean(trimmed) == trimmed
}

func (c *Config) validateDFWebsockets(v *validator) {
	d := c.DFWebsockets
	if d.Path != "" && !cleanWirePath(d.Path) {
		v.add("df_websockets.path", "must be a clean URL path like /ws/ (letters, digits, . _ ~ - /, one trailing slash at most), or \"\" to turn the wire off (got %q)", d.Path)
	}
	if d.URL != "" {
		u, err := url.Parse(d.URL)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" || u.User != nil || u.Fragment != "" {
			v.add("df_websockets.url", "must be a ws:// or wss:// URL with a host, like wss://example.com/ws/ (got %q)", d.URL)
		}
	}
	if !cookieRE.MatchString(d.CookieDomain) {
		v.add("df_websockets.cookie_domain", "must be a domain like .example.com, or \"\" (got %q)", d.CookieDomain)
	}
	if !strings.HasPrefix(d.CookiePath, "/") || !cookieRE.MatchString(d.CookiePath) {
		v.add("df_websockets.cookie_path", "must be a URL path starting with \"/\" (got %q)", d.CookiePath)
	}
	v.oneOf("df_websockets.cookie_samesite", d.CookieSameSite, "Lax", "Strict", "None", "")
	if !userModelRE.MatchString(d.UserModel) {
		v.add("df_websockets.user_model", "must be <app_label>.<model_name>, like auth.user (got %q)", d.UserModel)
	}
}

// DFWebsocketsURL returns the URL the dfwsurl cookie carries: the url
// key, or one built from public_url; "" when neither is set (each
// bootstrap then gives its page's host).
func (c *Config) DFWebsocketsURL() string {
	d := c.DFWebsockets
	if d.URL != "" || c.PublicURL == "" || d.Path == "" {
		return d.URL
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil {
		return ""
	}
	scheme := "ws"
	if u.Scheme == "https" {
		scheme = "wss"
	}
	return scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/") + d.Path
}
