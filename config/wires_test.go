package config

import (
	"strings"
	"testing"
)

func TestWireErrors(t *testing.T) {
	const user = "resources:\n  users:\n    fields: {username: {type: string}}\n"
	for _, tc := range []struct {
		name string
		yaml string
		line int
		key  string
		msg  string
	}{
		{"proxy url scheme", "auth:\n  proxy:\n    url: ftp://app/connect\n    secret: 0123456789abcdef\n", 3, "auth.proxy.url", "http:// or https://"},
		{"proxy without secret", "auth:\n  proxy:\n    url: http://app/connect\n", 3, "auth.proxy.secret", "is required with auth.proxy.url"},
		{"proxy short secret", "auth:\n  proxy:\n    url: http://app/connect\n    secret: short\n", 4, "auth.proxy.secret", "at least 16 bytes"},
		{"proxy bad header", "auth:\n  proxy:\n    headers: [\"Co okie\"]\n", 3, "auth.proxy.headers[0]", "must be a header name"},
		{"proxy own header", "auth:\n  proxy:\n    headers: [Cookie, content-type]\n", 3, "auth.proxy.headers[1]", "set by the proxy itself"},
		{"proxy signature header", "auth:\n  proxy:\n    headers: [Switchyard-Signature]\n", 3, "auth.proxy.headers[0]", "set by the proxy itself"},
		{"proxy timeout zero", "auth:\n  proxy:\n    timeout: 0s\n", 3, "auth.proxy.timeout", "between 1ns and 1m"},
		{"proxy timeout long", "auth:\n  proxy:\n    timeout: 2m\n", 3, "auth.proxy.timeout", "between 1ns and 1m"},
		{"proxy refresh negative", "auth:\n  proxy:\n    refresh_before: -1s\n", 3, "auth.proxy.refresh_before", "must not be negative"},
		{"binding path relative", "binding:\n  path: live/binding\n", 2, "binding.path", "clean URL path"},
		{"binding path unclean", "binding:\n  path: /live//binding\n", 2, "binding.path", "clean URL path"},
		{"binding path pattern", "binding:\n  path: \"/live/{x}\"\n", 2, "binding.path", "clean URL path"},
		{"binding max ids", "binding:\n  max_retrieve_ids: 0\n", 2, "binding.max_retrieve_ids", "between 1 and 10000"},
		{"stream missing", user + "    binding: {post_save: false}\n", 4, "resources.users.binding.stream", "is required"},
		{"stream bad", user + "    binding: {stream: \"app.User#1\"}\n", 4, "resources.users.binding.stream", "names joined by dots"},
		{"stream group", user + "    binding: {stream: __all__}\n", 4, "resources.users.binding.stream", "connection group"},
		{"stream user group", user + "    binding: {stream: user.admin}\n", 4, "resources.users.binding.stream", "connection group"},
		{"stream twice", user + "    binding: {stream: app.User}\n  people:\n    fields: {name: {type: string}}\n    binding: {stream: app.User}\n", 7, "resources.people.binding.stream", "already the binding of resources.users"},
		// Two wires on one path: refused, naming both keys.
		{"binding on /live", "binding:\n  path: /live\n", 2, "binding.path", "binding.path (the channels-binding socket) claims /live, which the native /live socket (fixed) already serves"},
		{"binding on the browser client", "binding:\n  path: /switchyard.js\n", 2, "binding.path", "which the browser client /switchyard.js (fixed) already serves"},
		{"binding under /api/", "binding:\n  path: /api/binding\n", 2, "binding.path", "which the HTTP API (fixed) already serves"},
		{"binding on Channelstream's /ws", "channelstream: {enabled: true, secret: s3cret}\nbinding:\n  path: /ws\n", 3, "binding.path", "binding.path (the channels-binding socket) claims /ws, which channelstream.prefix (Channelstream's /ws) already serves"},
		{"binding under Channelstream's admin", "channelstream: {enabled: true, secret: s3cret, prefix: /cs}\nbinding:\n  path: /cs/admin/x\n", 3, "binding.path", "channelstream.prefix"},
		{"Channelstream under /api/", "channelstream:\n  enabled: true\n  secret: s3cret\n  prefix: /api/\n", 4, "channelstream.prefix", "claims /api/connect, which the HTTP API (fixed) already serves"},
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

func TestWireDefaults(t *testing.T) {
	cfg, err := Parse("", []byte("resources:\n  users:\n    fields: {username: {type: string}}\n    binding: {stream: app.User}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Binding != (Binding{Path: "/live/binding", Anonymous: true, InvertedOrdering: true, MaxRetrieveIDs: 100}) {
		t.Errorf("binding defaults: %+v", cfg.Binding)
	}
	b := cfg.Resources[0].Binding
	if b == nil || b.Stream != "app.User" || !b.PushesUpdated() || !b.PushesDeleted() {
		t.Errorf("resource binding: %+v", b)
	}
	p := cfg.Auth.Proxy
	if p.URL != "" || strings.Join(p.Headers, ",") != "Cookie,Authorization" || p.Timeout.String() != "5s" || p.RefreshBefore.String() != "30s" {
		t.Errorf("proxy defaults: %+v", p)
	}
	// The wire can be turned off, and then its path claims nothing.
	if _, err := Parse("", []byte("binding: {path: \"\"}\nchannelstream: {enabled: true, secret: s3cret}\n"), nil); err != nil {
		t.Fatal(err)
	}
	// Environment overrides.
	cfg, err = Parse("", nil, []string{"SWITCHYARD_BINDING_PATH=/b", "SWITCHYARD_AUTH_PROXY_HEADERS=Cookie,X-Forwarded-For"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Binding.Path != "/b" || strings.Join(cfg.Auth.Proxy.Headers, ",") != "Cookie,X-Forwarded-For" {
		t.Errorf("env: %+v %+v", cfg.Binding, cfg.Auth.Proxy)
	}
}
