package config

import "strings"

// Paths the wires claim: a config where two wires claim the same path is
// refused by config check and serve, naming both keys.

// claim is a path an HTTP surface is served at: the exact path, or the
// whole subtree under it (a path ending in "/").
type claim struct {
	path string
	key  string // the configuration key that sets it; "" for a fixed path
	what string
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
// first. A new wire adds its paths here.
func (c *Config) claims() []claim {
	out := []claim{
		{path: "/live", what: "the native /live socket"},
		{path: "/api/", what: "the HTTP API"},
		{path: "/healthz", what: "/healthz"},
		{path: "/readyz", what: "/readyz"},
		{path: "/metrics", what: "/metrics"},
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
	if c.DFWebsockets.Path != "" {
		out = append(out, claim{path: c.DFWebsockets.Path, key: "df_websockets.path", what: "the df_websockets socket"})
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
