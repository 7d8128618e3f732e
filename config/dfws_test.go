package config

import (
	"strings"
	"testing"
)

func TestDFWebsocketsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		line int
		key  string
		msg  string
	}{
		{"path relative", "df_websockets:\n  path: ws/\n", 2, "df_websockets.path", "clean URL path"},
		{"path unclean", "df_websockets:\n  path: /ws//\n", 2, "df_websockets.path", "clean URL path"},
		{"path root", "df_websockets:\n  path: /\n", 2, "df_websockets.path", "clean URL path"},
		{"path pattern", "df_websockets:\n  path: \"/ws/{x}/\"\n", 2, "df_websockets.path", "clean URL path"},
		{"url scheme", "df_websockets:\n  url: https://example.com/ws/\n", 2, "df_websockets.url", "ws:// or wss://"},
		{"url no host", "df_websockets:\n  url: \"wss:///ws/\"\n", 2, "df_websockets.url", "ws:// or wss://"},
		{"cookie domain", "df_websockets:\n  cookie_domain: \"a; b\"\n", 2, "df_websockets.cookie_domain", "must be a domain"},
		{"cookie path", "df_websockets:\n  cookie_path: app\n", 2, "df_websockets.cookie_path", "starting with \"/\""},
		{"samesite", "df_websockets:\n  cookie_samesite: lax\n", 2, "df_websockets.cookie_samesite", "must be one of Lax, Strict, None"},
		{"user model", "df_websockets:\n  user_model: User\n", 2, "df_websockets.user_model", "<app_label>.<model_name>"},
		// Two wires on one path: refused, naming both keys.
		{"on /live", "df_websockets:\n  path: /live\n", 2, "df_websockets.path", "df_websockets.path (the df_websockets socket) claims /live, which the native /live socket (fixed) already serves"},
		{"under /api/", "df_websockets:\n  path: /api/ws/\n", 2, "df_websockets.path", "which the HTTP API (fixed) already serves"},
		{"on Channelstream's /ws", "channelstream: {enabled: true, secret: s3cret}\ndf_websockets:\n  path: /ws\n", 3, "df_websockets.path", "df_websockets.path (the df_websockets socket) claims /ws, which channelstream.prefix (Channelstream's /ws) already serves"},
		{"over Channelstream's prefix", "channelstream: {enabled: true, secret: s3cret, prefix: /ws}\n", 1, "df_websockets.path", "df_websockets.path (the df_websockets socket) claims /ws/, which channelstream.prefix (Channelstream's /ws/connect) already serves"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "switchyard.yaml", tc.yaml)
			_, err := Load(path, nil)
			e := findError(t, mustErrors(t, err), tc.key)
			if e.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", e.Line, tc.line, e)
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", e.Msg, tc.msg)
			}
		})
	}
}

func TestDFWebsocketsDefaults(t *testing.T) {
	cfg, err := Parse("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DFWebsockets != (DFWebsockets{Path: "/ws/", CookiePath: "/", CookieSameSite: "Lax", UserModel: "auth.user"}) {
		t.Errorf("defaults: %+v", cfg.DFWebsockets)
	}
	if cfg.DFWebsocketsURL() != "" {
		t.Errorf("url without public_url: %q", cfg.DFWebsocketsURL())
	}
	// Channelstream's /ws (no slash) and df_websockets' /ws/ coexist.
	if _, err := Parse("", []byte("channelstream: {enabled: true, secret: s3cret}\n"), nil); err != nil {
		t.Fatal(err)
	}
	// Off: its path claims nothing.
	if _, err := Parse("", []byte("df_websockets: {path: \"\"}\nchannelstream: {enabled: true, secret: s3cret, prefix: /ws}\n"), nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ public, path, url, want string }{
		{"https://example.com", "/ws/", "", "wss://example.com/ws/"},
		{"http://127.0.0.1:8000/sy/", "/ws/", "", "ws://127.0.0.1:8000/sy/ws/"},
		{"https://example.com", "/ws/", "ws://other:9/x/", "ws://other:9/x/"},
		{"", "/ws/", "", ""},
	} {
		c := Default()
		c.PublicURL, c.DFWebsockets.Path, c.DFWebsockets.URL = tc.public, tc.path, tc.url
		if got := c.DFWebsocketsURL(); got != tc.want {
			t.Errorf("%+v: %q", tc, got)
		}
	}
	cfg, err = Parse("", nil, []string{"SWITCHYARD_DF_WEBSOCKETS_PATH=/sig/", "SWITCHYARD_DF_WEBSOCKETS_COOKIE_SAMESITE="})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DFWebsockets.Path != "/sig/" || cfg.DFWebsockets.CookieSameSite != "" {
		t.Errorf("env: %+v", cfg.DFWebsockets)
	}
}
