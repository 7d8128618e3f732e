package config

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"
)

// This file holds the settings of the wires that Django applications
// switch to (issue 16): the connect proxy (auth.proxy), the
// channels-binding wire (binding, and binding under a resource), and the
// check that no two wires claim one path.

// Proxy asks the application who a connection is when it comes without a
// valid token: Switchyard POSTs the connection's details, with the
// configured request headers (the session cookie) forwarded and the body
// signed, to URL, and the application answers with the user or refuses.
type Proxy struct {
	// URL is the application's http(s) endpoint; "" turns the proxy off.
	URL string `yaml:"url"`
	// Secret signs each call (the Switchyard-Signature header); at least
	// 16 bytes, required with URL.
	Secret Secret `yaml:"secret"`
	// Headers are the request headers forwarded to the application
	// (default Cookie and Authorization).
	Headers []string `yaml:"headers"`
	// Timeout bounds one call; past it the connection is refused with
	// 503 (default 5 s, at most 60 s).
	Timeout Duration `yaml:"timeout"`
	// RefreshBefore is how long before an answer's expire_at the
	// application is asked again (default 30 s).
	RefreshBefore Duration `yaml:"refresh_before"`
}

func defaultProxy() Proxy {
	return Proxy{
		Headers:       []string{"Cookie", "Authorization"},
		Timeout:       Duration(5 * time.Second),
		RefreshBefore: Duration(30 * time.Second),
	}
}

// Binding configures the channels-binding wire ({"event", "data"} frames,
// the protocol of workon-io/channels-binding 1.9.8 and its JS client).
type Binding struct {
	// Path is where the wire's WebSocket is served; "" turns it off.
	Path string `yaml:"path"`
	// Anonymous accepts connections without a user (channels-binding's
	// ANONYMOUS_CONNECTION_ALLOWED, default true); false refuses them
	// with 403.
	Anonymous bool `yaml:"anonymous"`
	// InvertedOrdering keeps channels-binding's inverted search order:
	// "-field" ascending, "field" descending (default true, as the
	// original behaves, so UIs tuned against it keep their order); false
	// orders as Django does.
	InvertedOrdering bool `yaml:"inverted_ordering"`
	// MaxRetrieveIDs bounds the ids of one retrieve {"id": [...]}
	// (default 100).
	MaxRetrieveIDs int `yaml:"max_retrieve_ids"`
}

// DefaultBindingPath is where the channels-binding wire is served.
const DefaultBindingPath = "/live/binding"

func defaultBinding() Binding {
	return Binding{Path: DefaultBindingPath, Anonymous: true, InvertedOrdering: true, MaxRetrieveIDs: 100}
}

// ResourceBinding serves a resource on the channels-binding wire as a
// binding: events <stream>.retrieve, .search, .form, .save, .delete...
type ResourceBinding struct {
	// Stream is the binding's stream, like channels-binding's default
	// "<app_label>.<ModelName>" ("app.User").
	Stream string `yaml:"stream"`
	// PostSave pushes {"event": "<stream>.updated#<pk>", "data": true} on
	// every create and update (channels-binding's post_save_connect);
	// nil is true.
	PostSave *bool `yaml:"post_save"`
	// PostDelete pushes {"event": "<stream>.deleted#<pk>", "data": true}
	// on every delete (post_delete_connect); nil is true.
	PostDelete *bool `yaml:"post_delete"`
}

// PushesUpdated reports whether creates and updates are pushed.
func (b *ResourceBinding) PushesUpdated() bool { return b.PostSave == nil || *b.PostSave }

// PushesDeleted reports whether deletes are pushed.
func (b *ResourceBinding) PushesDeleted() bool { return b.PostDelete == nil || *b.PostDelete }

var (
	// streamRE: Python identifiers joined by dots, as channels-binding's
	// registry keys them.
	streamRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	urlPathRE = regexp.MustCompile(`^/[A-Za-z0-9._~/-]*$`)
)

// Headers the proxy sets itself or that belong to one hop.
var unforwardable = []string{"content-type", "content-length", "host", "connection", "transfer-encoding", "upgrade", "switchyard-signature"}

// validateWires checks auth.proxy, binding, the resources' bindings and
// the paths every surface claims.
func (c *Config) validateWires(v *validator) {
	c.validateProxy(v)
	c.validateBinding(v)
	c.validatePaths(v)
}

func (c *Config) validateProxy(v *validator) {
	p := c.Auth.Proxy
	if p.URL != "" {
		if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add("auth.proxy.url", "must be an http:// or https:// URL (got %q)", p.URL)
		}
		if p.Secret == "" {
			v.addAt("auth.proxy.secret", "auth.proxy.url", "is required with auth.proxy.url: it signs every call (Switchyard-Signature)")
		}
	}
	if p.Secret != "" && len(p.Secret) < 16 {
		v.add("auth.proxy.secret", "must be at least 16 bytes long (got %d)", len(p.Secret))
	}
	for i, h := range p.Headers {
		key := fmt.Sprintf("auth.proxy.headers[%d]", i)
		switch {
		case !isToken(h):
			v.add(key, "must be a header name (got %q)", h)
		case containsFold(unforwardable, h):
			v.add(key, "%s is set by the proxy itself and cannot be forwarded", h)
		}
	}
	if p.Timeout <= 0 || p.Timeout > Duration(time.Minute) {
		v.add("auth.proxy.timeout", "must be between 1ns and 1m: a connection waits for the call (got %s)", p.Timeout)
	}
	v.nonNegative("auth.proxy.refresh_before", p.RefreshBefore)
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func (c *Config) validateBinding(v *validator) {
	b := c.Binding
	if b.Path != "" && (!urlPathRE.MatchString(b.Path) || path.Clean(b.Path) != b.Path) {
		v.add("binding.path", "must be a clean URL path like /live/binding (letters, digits, . _ ~ - /), or \"\" to turn the wire off (got %q)", b.Path)
	}
	if b.MaxRetrieveIDs < 1 || b.MaxRetrieveIDs > 10000 {
		v.add("binding.max_retrieve_ids", "must be between 1 and 10000 (got %d)", b.MaxRetrieveIDs)
	}
	streams := map[string]string{}
	for _, r := range c.Resources {
		if r.Binding == nil {
			continue
		}
		key := joinKey("resources", r.Name) + ".binding.stream"
		s := r.Binding.Stream
		switch {
		case s == "":
			v.add(key, "is required: the stream clients address, like app.User")
		case !streamRE.MatchString(s):
			v.add(key, "must be names joined by dots, like app.User (letters, digits, _) (got %q)", s)
		case s == "__all__" || strings.HasPrefix(s, "user."):
			v.add(key, "%q would be a connection group (__all__, user.<pk>); choose another stream", s)
		case streams[s] != "":
			v.add(key, "stream %q is already the binding of resources.%s", s, streams[s])
		default:
			streams[s] = r.Name
		}
	}
}

// claim is a path an HTTP surface is served at: the exact path, or the
// whole subtree under it (a path ending in "/").
type claim struct {
	path string
	key  string // the configuration key that sets it; "" for a fixed path
	what string // the surface, for the message
}

func (cl claim) overlaps(o claim) bool {
	switch {
	case cl.path == o.path:
		return true
	case strings.HasSuffix(cl.path, "/") && strings.HasPrefix(o.path, cl.path):
		return true
	case strings.HasSuffix(o.path, "/") && strings.HasPrefix(cl.path, o.path):
		return true
	}
	return false
}

func (cl claim) name() string {
	if cl.key == "" {
		return cl.what + " (fixed)"
	}
	return cl.key + " (" + cl.what + ")"
}

// claims lists the paths the server's surfaces are served at, fixed ones
// first. A new wire adds its paths here, so that a config where two wires
// claim the same path is refused by config check and serve.
func (c *Config) claims() []claim {
	out := []claim{
		{path: "/live", what: "the native /live socket"},
		{path: "/api/", what: "the HTTP API"},
		{path: "/healthz", what: "/healthz"},
		{path: "/readyz", what: "/readyz"},
		{path: "/metrics", what: "/metrics"},
		{path: "/switchyard.js", what: "the browser client /switchyard.js"},
	}
	if cs := c.Channelstream; cs.Enabled {
		prefix := cs.Prefix
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		for _, r := range []string{"connect", "subscribe", "unsubscribe", "user_state", "channel_config", "info", "message", "disconnect", "listen", "ws", "admin", "admin/"} {
			out = append(out, claim{path: prefix + r, key: "channelstream.prefix", what: "Channelstream's " + prefix + r})
		}
	}
	if c.Binding.Path != "" {
		out = append(out, claim{path: c.Binding.Path, key: "binding.path", what: "the channels-binding socket"})
	}
	if c.DFWebsockets.Path != "" {
		out = append(out, claim{path: c.DFWebsockets.Path, key: "df_websockets.path", what: "the df_websockets socket"})
	}
	if c.Dashboard.Enabled {
		out = append(out, claim{path: "/dashboard/", what: "the dashboard"})
	}
	return out
}

// validatePaths refuses two surfaces on one path, naming both keys.
func (c *Config) validatePaths(v *validator) {
	cl := c.claims()
	for i := range cl {
		if cl[i].key == "" {
			continue
		}
		for j := range i {
			if cl[j].key == cl[i].key || !cl[i].overlaps(cl[j]) {
				continue
			}
			// Reported at the other key's line when this one is a default.
			v.addAt(cl[i].key, cl[j].key, "%s claims %s, which %s already serves: give each wire its own path", cl[i].name(), cl[i].path, cl[j].name())
			break
		}
	}
}
