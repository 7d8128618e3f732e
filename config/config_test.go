package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// writeFile writes content to name in a fresh temporary directory and
// returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mustErrors asserts err is a non-empty Errors and returns it.
func mustErrors(t *testing.T, err error) Errors {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("error is %T, want non-empty config.Errors: %v", err, err)
	}
	return es
}

// findError returns the error for key, failing the test when missing.
func findError(t *testing.T, es Errors, key string) *Error {
	t.Helper()
	for _, e := range es {
		if e.Key == key {
			return e
		}
	}
	t.Fatalf("no error for key %q in:\n%v", key, es)
	return nil
}

func ptr[T any](v T) *T { return &v }

func TestDefaults(t *testing.T) {
	want := Default()
	if err := want.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	for _, tc := range []struct {
		name    string
		content *string // nil: no file
	}{
		{"no file", nil},
		{"empty file", ptr("")},
		{"only comments", ptr("# nothing here\n\n# really\n")},
		{"explicit null document", ptr("---\n~\n")},
		{"empty mapping", ptr("{}\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.content != nil {
				path = writeFile(t, "switchyard.yaml", *tc.content)
			}
			got, err := Load(path, []string{"HOME=/root", "PATH=/bin"})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
	t.Run("fresh copies", func(t *testing.T) {
		a := Default()
		a.Channelstream.AllowPostingFrom[0] = "10.0.0.1"
		a.Queues[0].Concurrency = 99
		b := Default()
		if b.Channelstream.AllowPostingFrom[0] != "127.0.0.1" || b.Queues[0].Concurrency != 4 {
			t.Error("Default shares slices between calls")
		}
	})
}

const fullFile = `# every key, none at its default
listen: 0.0.0.0:9000
data_dir: /var/lib/switchyard
log: {format: json, level: debug}
store:
  driver: postgres
  url: postgres://sy:pw@db.internal:5432/switchyard?sslmode=require
broker:
  driver: nats
  url: nats://nats.internal:4222
auth:
  anonymous: false
  jwt:
    hmac_secret: ""
    public_key_file: PUBKEY
    issuer: https://auth.example.com
    audience: switchyard
  cookie_name: sy_session
  proxy:
    url: http://127.0.0.1:9000/switchyard/connect
    secret: proxy-secret-0123456789
    headers: [Cookie]
    timeout: 2s
    refresh_before: 1m
api_keys: [aaaaaaaaaaaaaaaa1, bbbbbbbbbbbbbbbb2]
websocket:
  allowed_origins: ["https://app.example.com", "*.example.com", "localhost:3000"]
  ping_interval: 10s
  read_timeout: 30s
  compression: true
  write_timeout: 5s
limits:
  max_message_size: 1MiB
  max_queued_bytes: 4MB
  max_outgoing_message_size: 8MiB
  max_request_body: 2097152
  read_timeout: 5s
  write_timeout: 7s
  idle_timeout: 2m
  max_connections: 10000
  max_subscriptions: 100
  max_subscriptions_per_user: 500
  max_history_bytes: 16MiB
  max_channels_per_namespace: 50
  max_search_length: 80
  messages_per_second: 50
  shutdown_timeout: 1m
  idle_release: 5s
channelstream:
  enabled: true
  secret: cs-secret
  prefix: /cs
  allow_posting_from: [10.0.0.0/8, "::1"]
  admin_user: root
  admin_secret: cs-admin
  connection_gc: 30s
  heartbeat_interval: 2s
binding:
  path: /ws/binding
  anonymous: false
  inverted_ordering: false
  max_retrieve_ids: 20
resources:
  todos:
    fields:
      title: {type: string, required: true, max_length: 200, unique: true}
      body: {type: text, default: "none"}
      count: {type: int, default: 3, min: 0, max: 10}
      ratio: {type: float, default: 0.5, min: -1.5, max: 1.5}
      done: {type: bool, default: false, read_only: true}
      due: {type: datetime, default: "2024-01-02T15:04:05Z"}
      meta: {type: json, default: {a: [1, 2]}}
      author: {type: string}
    pk_field: uid
    search: [title, body]
    ordering: [-count, uid]
    page_size: 50
    permissions: {read: authenticated, create: authenticated, update: owner:author, delete: none}
    binding: {stream: app.Todo, post_delete: false}
channels:
  default:
    presence: true
    history_size: 10
    history_ttl: 5m
    recover: true
    permissions: {subscribe: authenticated, publish: authenticated, presence: none, history: none}
  namespaces:
    chat: {presence: true, history_size: 100, history_ttl: 1h, recover: true, permissions: {subscribe: anyone, publish: authenticated, presence: anyone, history: anyone}}
    news: {history_size: 5, history_ttl: 10m}
signals:
  webhook_secret: "0123456789abcdef-secret"
  max_kwargs_bytes: 8KiB
  calls_per_second: 5
  window_ttl: 1h
  webhook_idle_conns: 32
  myproject.first_signal: {queue: default, allowed: anyone, webhook: "http://127.0.0.1:9000/signals"}
  myproject.second:
    queue: mail
    webhook: "https://app.internal/hooks/second"
    sync: true
    extra_args: accept
    args:
      n: {type: int, required: true, min: 1, max: 10}
      color: {type: string, choices: [red, blue], pattern: "^[a-z]+$", max_length: 8}
queues:
  mail: {concurrency: 2, max_attempts: 3, backoff: 2s, max_backoff: 1m, timeout: 5s}
  default: {concurrency: 8}
df_websockets:
  path: /dfws/
  url: wss://www.example.com/dfws/
  cookie_domain: .example.com
  cookie_path: /app
  cookie_samesite: Strict
  user_model: accounts.member
dashboard:
  enabled: true
  password_hash: "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
  session_ttl: 1h
  login_attempts: 3
  login_attempts_global: 30
  login_lockout: 5m
`

func TestFullFile(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "jwt.pem")
	if err := os.WriteFile(pub, []byte("-----BEGIN PUBLIC KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "switchyard.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(fullFile, "PUBKEY", pub, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Listen:  "0.0.0.0:9000",
		DataDir: "/var/lib/switchyard",
		Log:     Log{Format: "json", Level: "debug"},
		Store: Store{Driver: "postgres", URL: "postgres://sy:pw@db.internal:5432/switchyard?sslmode=require",
			ConnectTimeout: Duration(5 * time.Second), MaxConnections: 16, InsertBatch: 64,
			ChangeLog: ChangeLog{MaxAge: Duration(DefaultChangeLogMaxAge), MaxRows: DefaultChangeLogMaxRows, MaxReplay: DefaultChangeLogMaxReplay}},
		Broker: Broker{Driver: "nats", URL: "nats://nats.internal:4222", Prefix: "switchyard",
			ConnectTimeout: Duration(5 * time.Second), PubSubConnections: 4, PresenceTTL: Duration(time.Minute)},
		Auth: Auth{
			Anonymous:  false,
			JWT:        JWT{PublicKeyFile: pub, Issuer: "https://auth.example.com", Audience: "switchyard", UserClaim: "sub"},
			CookieName: "sy_session",
			Proxy: Proxy{URL: "http://127.0.0.1:9000/switchyard/connect", Secret: "proxy-secret-0123456789", Headers: []string{"Cookie"},
				Timeout: Duration(2 * time.Second), RefreshBefore: Duration(time.Minute)},
		},
		APIKeys: []Secret{"aaaaaaaaaaaaaaaa1", "bbbbbbbbbbbbbbbb2"},
		WebSocket: WebSocket{
			AllowedOrigins: []string{"https://app.example.com", "*.example.com", "localhost:3000"},
			PingInterval:   Duration(10 * time.Second),
			ReadTimeout:    Duration(30 * time.Second),
			Compression:    true,
			WriteTimeout:   Duration(5 * time.Second),
		},
		Limits: Limits{
			MaxMessageSize:          MiB,
			MaxQueuedBytes:          4 * MB,
			MaxOutgoingMessageSize:  8 * MiB,
			MaxRequestBody:          2 * MiB,
			ReadTimeout:             Duration(5 * time.Second),
			WriteTimeout:            Duration(7 * time.Second),
			IdleTimeout:             Duration(2 * time.Minute),
			MaxConnections:          10000,
			MaxSubscriptions:        100,
			MaxSubscriptionsPerUser: 500,
			MaxHistoryBytes:         16 * MiB,
			MaxChannelsPerNamespace: 50,
			MaxSearchLength:         80,
			MessagesPerSecond:       50,
			ShutdownTimeout:         Duration(time.Minute),
			IdleRelease:             Duration(5 * time.Second),
		},
		Channelstream: Channelstream{
			Enabled:              true,
			Secret:               "cs-secret",
			Prefix:               "/cs",
			AllowPostingFrom:     []string{"10.0.0.0/8", "::1"},
			AdminUser:            "root",
			AdminSecret:          "cs-admin",
			ConnectionGC:         Duration(30 * time.Second),
			HeartbeatInterval:    Duration(2 * time.Second),
			UserGC:               Duration(24 * time.Hour),
			Namespace:            "channelstream",
			ValidateRequests:     true,
			UnknownFields:        ChannelstreamUnknownReject,
			HistoryLimit:         1000,
			MaxClockSkew:         Duration(30 * time.Second),
			SignInAttempts:       5,
			SignInAttemptsGlobal: 50,
			SignInLockout:        Duration(15 * time.Minute),
		},
		Binding: Binding{Path: "/ws/binding", MaxRetrieveIDs: 20},
		Resources: []Resource{{
			Name: "todos",
			Fields: []Field{
				{Name: "title", Type: "string", Required: true, MaxLength: ptr(200), Unique: true},
				{Name: "body", Type: "text", Default: "none"},
				{Name: "count", Type: "int", Default: 3, Min: ptr(0.0), Max: ptr(10.0)},
				{Name: "ratio", Type: "float", Default: 0.5, Min: ptr(-1.5), Max: ptr(1.5)},
				{Name: "done", Type: "bool", Default: false, ReadOnly: true},
				{Name: "due", Type: "datetime", Default: "2024-01-02T15:04:05Z"},
				{Name: "meta", Type: "json", Default: map[string]any{"a": []any{1, 2}}},
				{Name: "author", Type: "string"},
			},
			PKField:     "uid",
			Search:      []string{"title", "body"},
			Ordering:    []string{"-count", "uid"},
			PageSize:    50,
			Permissions: ResourcePermissions{Read: "authenticated", Create: "authenticated", Update: "owner:author", Delete: "none"},
			Binding:     &ResourceBinding{Stream: "app.Todo", PostDelete: ptr(false)},
			Capture:     CaptureNone,
		}},
		Channels: Channels{
			Default: ChannelOptions{
				Presence: true, HistorySize: 10, HistoryTTL: Duration(5 * time.Minute), Recover: true,
				Permissions: ChannelPermissions{Subscribe: "authenticated", Publish: "authenticated", Presence: "none", History: "none"},
			},
			Namespaces: []Namespace{
				{Name: "chat", ChannelOptions: ChannelOptions{
					Presence: true, HistorySize: 100, HistoryTTL: Duration(time.Hour), Recover: true,
					Permissions: ChannelPermissions{Subscribe: "anyone", Publish: "authenticated", Presence: "anyone", History: "anyone"},
				}},
				// Keys left out take the built-in defaults, not channels.default.
				{Name: "news", ChannelOptions: ChannelOptions{
					HistorySize: 5, HistoryTTL: Duration(10 * time.Minute),
					Permissions: ChannelPermissions{Subscribe: "anyone", Publish: "none", Presence: "anyone", History: "anyone"},
				}},
			},
		},
		Signals: Signals{
			WebhookSecret:    "0123456789abcdef-secret",
			MaxKwargsBytes:   8 * KiB,
			CallsPerSecond:   5,
			WindowTTL:        Duration(time.Hour),
			WebhookIdleConns: 32,
			Declared: []Signal{
				{Name: "myproject.first_signal", Queue: "default", Allowed: "anyone", Webhook: "http://127.0.0.1:9000/signals", ExtraArgs: "reject"},
				{Name: "myproject.second", Queue: "mail", Allowed: "server_side", Webhook: "https://app.internal/hooks/second", Sync: true, ExtraArgs: "accept",
					Args: []SignalArg{
						{Name: "n", Type: "int", Required: true, Min: ptr(float64(1)), Max: ptr(float64(10))},
						{Name: "color", Type: "string", Choices: []any{"red", "blue"}, Pattern: "^[a-z]+$", MaxLength: ptr(8)},
					}},
			},
		},
		Queues: []Queue{
			{Name: "mail", Concurrency: 2, MaxAttempts: 3, Backoff: Duration(2 * time.Second), MaxBackoff: Duration(time.Minute), Timeout: Duration(5 * time.Second)},
			{Name: "default", Concurrency: 8, MaxAttempts: 10, Backoff: Duration(time.Second), MaxBackoff: Duration(time.Hour), Timeout: Duration(time.Minute)},
		},
		DFWebsockets: DFWebsockets{Path: "/dfws/", URL: "wss://www.example.com/dfws/", CookieDomain: ".example.com", CookiePath: "/app", CookieSameSite: "Strict", UserModel: "accounts.member"},
		Dashboard: Dashboard{Enabled: true, PasswordHash: "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
			SessionTTL: Duration(time.Hour), LoginAttempts: 3, LoginAttemptsGlobal: 30, LoginLockout: Duration(5 * time.Minute)},
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := yaml.Marshal(got)
		w, _ := yaml.Marshal(want)
		t.Errorf("mismatch\ngot:\n%s\nwant:\n%s\n%#v", g, w, got.Resources[0].Fields)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate after Load: %v", err)
	}
}

func TestExampleFileParses(t *testing.T) {
	data, err := os.ReadFile("../docs/examples/switchyard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("switchyard.yaml", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Resources) == 0 || len(cfg.Channels.Namespaces) == 0 || len(cfg.Signals.Declared) == 0 {
		t.Errorf("example declares too little: %+v", cfg)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		line int
		key  string
		msg  string // substring of Msg
	}{
		{"unknown top-level key", "listen: 127.0.0.1:1\nlistn: x\n", 2, "listn", `unknown key (did you mean "listen"?)`},
		{"unknown nested key", "log:\n  format: text\n  formt: json\n", 3, "log.formt", "unknown key"},
		{"unknown deep key", "auth:\n  jwt:\n    hmac_secrett: x\n", 3, "auth.jwt.hmac_secrett", "unknown key"},
		{"unknown key in a resource field", "resources:\n  todos:\n    fields:\n      title: {type: string, maxlength: 3}\n", 4, "resources.todos.fields.title.maxlength", "unknown key"},
		{"unknown key in a namespace", "channels:\n  namespaces:\n    chat:\n      permissions:\n        publsh: anyone\n", 5, "channels.namespaces.chat.permissions.publsh", "unknown key"},
		{"wrong type bool", "auth:\n  anonymous: yes\n", 2, "auth.anonymous", `must be true or false (got "yes")`},
		{"wrong type int", "limits:\n  max_connections: many\n", 2, "limits.max_connections", `must be an integer (got "many")`},
		{"quoted int", "resources:\n  t:\n    fields: {a: {type: string}}\n    page_size: \"25\"\n", 4, "resources.t.page_size", "must be an integer"},
		{"wrong type string", "listen: {host: x}\n", 1, "listen", "must be a string (got a mapping)"},
		{"wrong type list", "api_keys: abcdefghijklmnopq\n", 1, "api_keys", "must be a list"},
		{"wrong type section", "log: text\n", 1, "log", "must be a mapping"},
		{"null scalar", "listen:\n", 1, "listen", "must be a string (got null)"},
		{"bad enum", "channels:\n  namespaces:\n    chat:\n      permissions:\n        publish: anyon\n", 5, "channels.namespaces.chat.permissions.publish", `must be one of anyone, authenticated, none (got "anyon")`},
		{"bad log level", "log: {level: verbose}\n", 1, "log.level", `must be one of debug, info, warn, error (got "verbose")`},
		{"bad size unit", "limits:\n  max_message_size: 64XB\n", 2, "limits.max_message_size", `(got "64XB")`},
		{"negative size", "limits:\n  max_request_body: -1\n", 2, "limits.max_request_body", "must not be negative"},
		{"size too big", "limits:\n  max_message_size: 65MiB\n  max_queued_bytes: 1GiB\n", 2, "limits.max_message_size", "between 1B and 64MiB"},
		{"queued below message size", "limits:\n  max_message_size: 2MiB\n", 2, "limits.max_queued_bytes", "at least limits.max_message_size"},
		{"bad duration", "websocket:\n  ping_interval: 25\n", 2, "websocket.ping_interval", "a unit such as s, m or h is required"},
		{"bad duration text", "websocket:\n  write_timeout: soon\n", 2, "websocket.write_timeout", `must be a duration like 15s, 1m30s or 1h (got "soon")`},
		{"read timeout not above ping", "websocket:\n  ping_interval: 30s\n  read_timeout: 30s\n", 3, "websocket.read_timeout", "must be longer than websocket.ping_interval"},
		{"bad listen", "log: {level: info}\nlisten: localhost\n", 2, "listen", "must be host:port"},
		{"public_url with a query", "public_url: https://api.example.com/?x=1\n", 1, "public_url", "no query"},
		{"public_url not http", "public_url: ftp://api.example.com\n", 1, "public_url", "http:// or https://"},
		{"zero read timeout", "limits:\n  read_timeout: 0s\n", 2, "limits.read_timeout", "greater than 0"},
		{"zero write timeout", "limits:\n  write_timeout: 0s\n", 2, "limits.write_timeout", "greater than 0"},
		{"zero idle timeout", "limits:\n  idle_timeout: 0s\n", 2, "limits.idle_timeout", "greater than 0"},
		{"outgoing message too small", "limits:\n  max_outgoing_message_size: 100B\n", 2, "limits.max_outgoing_message_size", "between 1KiB and 1GiB"},
		{"negative subscriptions", "limits:\n  max_subscriptions: -1\n", 2, "limits.max_subscriptions", "0 is unlimited"},
		{"negative user subscriptions", "limits:\n  max_subscriptions_per_user: -5\n", 2, "limits.max_subscriptions_per_user", "0 is unlimited"},
		{"negative channels per namespace", "limits:\n  max_channels_per_namespace: -5\n", 2, "limits.max_channels_per_namespace", "0 is unlimited"},
		{"negative history bytes", "limits:\n  max_history_bytes: -1\n", 2, "limits.max_history_bytes", "must not be negative"},
		{"search length", "limits:\n  max_search_length: 0\n", 2, "limits.max_search_length", "between 1 and 10000"},
		{"negative connections", "limits:\n  max_connections: -1\n", 2, "limits.max_connections", "open-file limit"},
		{"negative clock skew", "channelstream:\n  max_clock_skew: -1s\n", 2, "channelstream.max_clock_skew", "must not be negative"},
		{"dashboard without a password", "dashboard:\n  enabled: true\n", 2, "dashboard.password", "dashboard.password or dashboard.password_hash is required"},
		{"dashboard password too short", "dashboard:\n  enabled: true\n  password: short\n", 3, "dashboard.password", "at least 12 characters"},
		{"dashboard password and hash", "dashboard:\n  password: long-enough-password\n  password_hash: \"$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy\"\n", 3, "dashboard.password_hash", "not both"},
		{"dashboard hash not bcrypt", "dashboard:\n  password_hash: plain-text-password\n", 2, "dashboard.password_hash", "must be a bcrypt hash"},
		{"dashboard session ttl", "dashboard:\n  session_ttl: 1s\n", 2, "dashboard.session_ttl", "at least 1m"},
		{"dashboard login attempts", "dashboard:\n  login_attempts: 0\n", 2, "dashboard.login_attempts", "at least 1"},
		{"no sign-in attempts", "channelstream:\n  sign_in_attempts: 0\n", 2, "channelstream.sign_in_attempts", "at least 1"},
		{"no global sign-in attempts", "channelstream:\n  sign_in_attempts_global: 0\n", 2, "channelstream.sign_in_attempts_global", "at least 1"},
		{"zero lockout", "channelstream:\n  sign_in_lockout: 0s\n", 2, "channelstream.sign_in_lockout", "greater than 0"},
		{"bad listen port", "listen: 127.0.0.1:70000\n", 1, "listen", "port must be a number from 0 to 65535"},
		{"jwt keys mutually exclusive", "auth:\n  jwt:\n    hmac_secret: 0123456789abcdef\n    public_key_file: PUBKEY\n", 3, "auth.jwt.hmac_secret", "mutually exclusive"},
		{"short hmac secret", "auth:\n  jwt:\n    hmac_secret: short\n", 3, "auth.jwt.hmac_secret", "at least 16 bytes"},
		{"missing public key file", "auth:\n  jwt:\n    public_key_file: /nonexistent/key.pem\n", 3, "auth.jwt.public_key_file", "no such file"},
		{"postgres without url", "data_dir: x\nstore:\n  driver: postgres\n", 3, "store.url", "is required for driver postgres"},
		{"postgres bad url", "store:\n  driver: postgres\n  url: mysql://u:hunter2@h/db\n", 3, "store.url", "must be a URL starting with postgres:// or postgresql://"},
		{"sqlite with url", "store:\n  url: postgres://x\n", 2, "store.url", "must be empty for driver sqlite"},
		{"redis without url", "broker: {driver: redis}\n", 1, "broker.url", "redis:// or rediss://"},
		{"recover without history", "channels:\n  namespaces:\n    chat:\n      recover: true\n", 4, "channels.namespaces.chat.recover", "requires history_size > 0 and history_ttl > 0"},
		{"recover without ttl on default", "channels:\n  default: {history_size: 5,\n    recover: true}\n", 3, "channels.default.recover", "history_ttl"},
		{"search on a non-string field", "resources:\n  todos:\n    fields:\n      n: {type: int}\n    search: [n]\n", 5, "resources.todos.search[0]", "only string and text fields can be searched"},
		{"search on an unknown field", "resources:\n  todos:\n    fields: {a: {type: string}}\n    search:\n      - a\n      - b\n", 6, "resources.todos.search[1]", `"b" is not a declared field`},
		{"owner unknown field", "resources:\n  todos:\n    fields: {title: {type: string}}\n    permissions:\n      update: owner:author\n", 5, "resources.todos.permissions.update", "owner:author names no declared field"},
		{"owner non-string field", "resources:\n  todos:\n    fields: {n: {type: bool}}\n    permissions: {delete: \"owner:n\"}\n", 4, "resources.todos.permissions.delete", "must name a string or int field holding the user id (it is bool)"},
		{"existing table on sqlite", "resources:\n  todos:\n    table: app_todo\n", 3, "resources.todos.table", "an existing table needs store.driver: postgres (it is sqlite)"},
		{"capture mode", "store: {driver: postgres, url: \"postgres://h/db\"}\nresources:\n  todos:\n    table: app_todo\n    capture: triggers\n", 5, "resources.todos.capture", `must be one of none, trigger (got "triggers")`},
		{"capture on sqlite", "resources:\n  todos:\n    fields: {a: {type: string}}\n    capture: trigger\n", 4, "resources.todos.capture", "capture: trigger needs store.driver: postgres"},
		{"writer pool", "limits:\n  writers: 2000\n", 2, "limits.writers", "must be between -1 (no workers) and 1024"},
		{"broadcast chunk", "limits:\n  broadcast_chunk: -5\n", 2, "limits.broadcast_chunk", "must be between -1 (never split) and 1048576"},
		{"table name", "store: {driver: postgres, url: \"postgres://h/db\"}\nresources:\n  todos:\n    table: \"app todo\"\n", 4, "resources.todos.table", "must be a table name"},
		{"owned records created anonymously", "resources:\n  todos:\n    fields: {title: {type: string}, owner: {type: string}}\n    permissions:\n      create: anyone\n      update: owner:owner\n", 5, "resources.todos.permissions.create", "create: anyone lets anonymous users create records, which would have no owner, so nobody could read or edit them under update: owner:owner; set create: authenticated"},
		{"owned records created anonymously by default", "resources:\n  todos:\n    fields: {title: {type: string}, owner: {type: string}}\n    permissions: {read: owner:owner}\n", 4, "resources.todos.permissions.create", "under read: owner:owner"},
		{"default of the wrong type", "resources:\n  todos:\n    fields:\n      n: {type: int, default: five}\n", 4, "resources.todos.fields.n.default", `must match the field's type int (got string "five")`},
		{"string default on bool", "resources:\n  t:\n    fields:\n      b:\n        type: bool\n        default: \"true\"\n", 6, "resources.t.fields.b.default", "must match the field's type bool"},
		{"float default on int", "resources:\n  t:\n    fields:\n      n: {type: int, default: 1.5}\n", 4, "resources.t.fields.n.default", "must match the field's type int"},
		{"bad datetime default", "resources:\n  t:\n    fields:\n      d: {type: datetime, default: tomorrow}\n", 4, "resources.t.fields.d.default", "RFC 3339"},
		{"duplicate resource field names", "resources:\n  todos:\n    fields:\n      title: {type: string}\n      done: {type: bool}\n      title: {type: text}\n", 6, "resources.todos.fields.title", "duplicate key (first defined on line 4)"},
		{"duplicate resource", "resources:\n  a: {fields: {x: {type: int}}}\n  a: {fields: {x: {type: int}}}\n", 3, "resources.a", "duplicate key"},
		{"duplicate plain key", "log:\n  level: info\n  level: debug\n", 3, "log.level", "duplicate key"},
		{"bad field type", "resources:\n  t:\n    fields:\n      a: {type: varchar}\n", 4, "resources.t.fields.a.type", "must be one of string, text, int"},
		{"missing field type", "resources:\n  t:\n    fields:\n      a: {required: true}\n", 4, "resources.t.fields.a.type", `(got "")`},
		{"no fields", "resources:\n  t: {page_size: 5}\n", 2, "resources.t.fields", "at least one field"},
		{"bad resource name", "resources:\n  Todos: {fields: {a: {type: int}}}\n", 2, "resources.Todos", "must match"},
		{"max_length on int", "resources:\n  t:\n    fields:\n      a: {type: int, max_length: 3}\n", 4, "resources.t.fields.a.max_length", "only applies to string and text"},
		{"zero max_length", "resources:\n  t:\n    fields:\n      a: {type: string, max_length: 0}\n", 4, "resources.t.fields.a.max_length", "greater than 0"},
		{"min above max", "resources:\n  t:\n    fields:\n      a: {type: float, min: 5, max: 1}\n", 4, "resources.t.fields.a.min", "must not be greater than max"},
		{"pk collides", "resources:\n  t:\n    fields: {id: {type: int}}\n", 3, "resources.t.pk_field", "collides"},
		{"bad ordering", "resources:\n  t:\n    fields: {a: {type: int}}\n    ordering: [-b]\n", 4, "resources.t.ordering[0]", `"b" is not a declared field`},
		{"page size", "resources:\n  t:\n    fields: {a: {type: int}}\n    page_size: 5000\n", 4, "resources.t.page_size", "between 1 and 1000"},
		{"bad namespace name", "channels:\n  namespaces:\n    Chat!: {}\n", 3, "channels.namespaces.Chat!", "must match"},
		{"history kept forever", "channels:\n  namespaces:\n    news: {history_size: 5}\n", 3, "channels.namespaces.news.history_ttl", "would be kept forever"},
		{"history kept forever by default", "channels:\n  default:\n    history_size: 5\n", 3, "channels.default.history_ttl", "history_ttl: 1h"},
		{"user claim reserved", "auth:\n  jwt: {user_claim: exp}\n", 2, "auth.jwt.user_claim", "another purpose"},
		{"user claim empty", "auth:\n  jwt:\n    user_claim: \"\"\n", 3, "auth.jwt.user_claim", "must be a claim name"},
		{"change log rows", "store:\n  change_log: {max_rows: -1}\n", 2, "store.change_log.max_rows", "must not be negative"},
		{"change log age", "store:\n  change_log:\n    max_age: 10s\n", 3, "store.change_log.max_age", "at least 1m"},
		{"change log replay", "store:\n  change_log:\n    max_replay: 0\n", 3, "store.change_log.max_replay", "between 1 and 100000"},
		{"negative history", "channels:\n  namespaces:\n    chat: {history_size: -1}\n", 3, "channels.namespaces.chat.history_size", "must not be negative"},
		{"signal unknown queue", "signals:\n  s.one: {queue: mail, webhook: 'http://x/'}\n", 2, "signals.s.one.queue", `must name a queue declared under queues`},
		{"signal bad webhook", "signals:\n  s:\n    webhook: ftp://x/y\n", 3, "signals.s.webhook", "http:// or https://"},
		{"signal no webhook", "signals:\n  s: {}\n", 2, "signals.s.webhook", "is required"},
		{"signal bad name", "signals:\n  1s: {webhook: 'http://x/'}\n", 2, "signals.1s", "signal name must match"},
		{"signal bad allowed", "signals:\n  s: {webhook: 'http://x/', allowed: staff}\n", 2, "signals.s.allowed", "must be one of"},
		{"signal empty claim", "signals:\n  s: {webhook: 'http://x/', allowed: 'claim:'}\n", 2, "signals.s.allowed", "must name a claim"},
		{"signal webhook needs secret", "signals:\n  s: {webhook: 'http://x/'}\n", 1, "signals.webhook_secret", "is required"},
		{"signal extra args", "signals:\n  s: {webhook: 'http://x/', extra_args: maybe}\n", 2, "signals.s.extra_args", "must be one of"},
		{"signal arg type", "signals:\n  s:\n    webhook: 'http://x/'\n    args: {a: {type: date}}\n", 4, "signals.s.args.a.type", "must be one of"},
		{"signal arg pattern", "signals:\n  s:\n    webhook: 'http://x/'\n    args: {a: {type: string, pattern: '('}}\n", 4, "signals.s.args.a.pattern", "not a valid regular expression"},
		{"signal arg min on string", "signals:\n  s:\n    webhook: 'http://x/'\n    args: {a: {type: string, min: 1}}\n", 4, "signals.s.args.a", "min and max apply"},
		{"signal kwargs size", "signals: {max_kwargs_bytes: 0}\n", 1, "signals.max_kwargs_bytes", "at least 1B"},
		{"queue attempts", "queues:\n  mail: {max_attempts: 0}\n", 2, "queues.mail.max_attempts", "from 1 to 1000"},
		{"queue backoff", "queues:\n  mail: {backoff: 2h}\n", 2, "queues.mail.max_backoff", "at least"},
		{"queue timeout", "queues:\n  mail: {timeout: 0s}\n", 2, "queues.mail.timeout", "greater than 0"},
		{"queue concurrency", "queues:\n  mail: {concurrency: 0}\n", 2, "queues.mail.concurrency", "at least 1"},
		{"channelstream without secret", "channelstream:\n  enabled: true\n", 2, "channelstream.secret", "required when channelstream.enabled"},
		{"channelstream prefix", "channelstream:\n  prefix: cs\n", 2, "channelstream.prefix", `must start with "/"`},
		{"channelstream bad ip", "channelstream:\n  allow_posting_from:\n    - 127.0.0.1\n    - 10.0.0.0/33\n", 4, "channelstream.allow_posting_from[1]", "IP address or a CIDR"},
		{"short api key", "api_keys:\n  - short\n", 2, "api_keys[0]", "at least 16 characters"},
		{"empty api key", "api_keys: [\"\"]\n", 1, "api_keys[0]", "must not be empty"},
		{"bad origin", "websocket:\n  allowed_origins: [\"https://app.example.com/\"]\n", 2, "websocket.allowed_origins[0]", "an origin has no path"},
		{"bad origin pattern", "websocket:\n  allowed_origins: [\"ftp://x\"]\n", 2, "websocket.allowed_origins[0]", "host pattern"},
		{"bad cookie name", "auth: {cookie_name: \"a b\"}\n", 1, "auth.cookie_name", "valid cookie name"},
		{"empty data dir", "data_dir: \"\"\n", 1, "data_dir", "must not be empty"},
		{"non-string key", "resources:\n  [a]: {}\n", 2, "resources", "mapping keys must be strings"},
		{"yaml syntax error", "log:\n\tlevel: info\n", 2, "", "invalid YAML: found character that cannot start any token"},
		{"two documents", "listen: :1\n---\nlisten: :2\n", 2, "", "only one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pub := filepath.Join(dir, "key.pem")
			os.WriteFile(pub, []byte("x"), 0o600)
			path := filepath.Join(dir, "switchyard.yaml")
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(tc.yaml, "PUBKEY", pub)), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path, nil)
			es := mustErrors(t, err)
			if !reflect.DeepEqual(cfg, Config{}) {
				t.Error("Config not zero on error")
			}
			e := findError(t, es, tc.key)
			if e.Source != path || e.Line != tc.line {
				t.Errorf("position = %s:%d, want %s:%d (%v)", e.Source, e.Line, path, tc.line, e)
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", e.Msg, tc.msg)
			}
			prefix := fmt.Sprintf("%s:%d: ", path, tc.line)
			if tc.key != "" {
				prefix += tc.key + ": "
			}
			if !strings.HasPrefix(e.Error(), prefix) {
				t.Errorf("Error() = %q, want prefix %q", e.Error(), prefix)
			}
			if !strings.Contains(err.Error(), prefix) {
				t.Errorf("Errors.Error() = %q lacks %q", err.Error(), prefix)
			}
		})
	}
}

// The same owner rules are fine when every client is authenticated, or
// when creating needs a user.
func TestOwnershipRulesThatWork(t *testing.T) {
	for _, y := range []string{
		"auth: {anonymous: false}\nresources:\n  todos:\n    fields: {owner: {type: string}}\n    permissions: {create: anyone, update: owner:owner}\n",
		"resources:\n  todos:\n    fields: {owner: {type: string}}\n    permissions: {create: authenticated, update: owner:owner, read: owner:owner}\n",
		"resources:\n  todos:\n    fields: {owner: {type: string}}\n    permissions: {create: none, update: owner:owner}\n",
	} {
		path := filepath.Join(t.TempDir(), "switchyard.yaml")
		os.WriteFile(path, []byte(y), 0o600)
		if _, err := Load(path, nil); err != nil {
			t.Errorf("%s: %v", y, err)
		}
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	_, err := Parse("s.yaml", []byte("store:\n  driver: postgres\n  url: mysql://u:hunter2@h/db\nbroker: {driver: memory, url: \"redis://:hunter2@r\"}\n"), nil)
	es := mustErrors(t, err)
	if len(es) != 2 || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("errors leak the URL or are wrong: %v", err)
	}
}

func TestMultipleErrors(t *testing.T) {
	src := `listen: nowhere
log:
  format: xml
  colour: red
limits:
  max_message_size: huge
  shutdown_timeout: 5
store: {driver: postgres}
resources:
  todos:
    fields:
      n: {type: int, default: "x"}
    search: [n]
`
	_, err := Parse("switchyard.yaml", []byte(src), []string{"SWITCHYARD_LOG_LEVEL=loud"})
	es := mustErrors(t, err)
	want := []struct {
		line int
		key  string
	}{
		{1, "listen"},
		{3, "log.format"},
		{4, "log.colour"},
		{6, "limits.max_message_size"},
		{7, "limits.shutdown_timeout"},
		{8, "store.url"},
		{12, "resources.todos.fields.n.default"},
		{13, "resources.todos.search[0]"},
	}
	for _, w := range want {
		e := findError(t, es, w.key)
		if e.Line != w.line || e.Source != "switchyard.yaml" {
			t.Errorf("%s at %s:%d, want line %d", w.key, e.Source, e.Line, w.line)
		}
	}
	if e := findError(t, es, "log.level"); e.Source != "SWITCHYARD_LOG_LEVEL" || e.Line != 0 {
		t.Errorf("log.level error from %s:%d", e.Source, e.Line)
	}
	if len(es) != len(want)+1 {
		t.Errorf("got %d errors, want %d:\n%v", len(es), len(want)+1, err)
	}
	// One per line, file errors sorted by line, environment after.
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(es) {
		t.Fatalf("Error() has %d lines for %d errors", len(lines), len(es))
	}
	if !strings.HasPrefix(lines[0], "switchyard.yaml:1: listen: ") || !strings.HasPrefix(lines[len(lines)-1], "SWITCHYARD_LOG_LEVEL: log.level: ") {
		t.Errorf("unexpected order:\n%v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   []string
		check func(t *testing.T, c Config)
	}{
		{"scalar string", []string{"SWITCHYARD_LISTEN=:9999", "SWITCHYARD_DATA_DIR=/data"}, func(t *testing.T, c Config) {
			if c.Listen != ":9999" || c.DataDir != "/data" {
				t.Errorf("listen %q data_dir %q", c.Listen, c.DataDir)
			}
		}},
		{"nested scalars", []string{"SWITCHYARD_STORE_DRIVER=postgres", "SWITCHYARD_STORE_URL=postgresql://u@h/db", "SWITCHYARD_AUTH_JWT_HMAC_SECRET=0123456789abcdef!"}, func(t *testing.T, c Config) {
			if c.Store.Driver != "postgres" || c.Store.URL != "postgresql://u@h/db" || c.Auth.JWT.HMACSecret != "0123456789abcdef!" {
				t.Errorf("%+v %+v", c.Store, c.Auth)
			}
		}},
		{"bool", []string{"SWITCHYARD_AUTH_ANONYMOUS=false", "SWITCHYARD_WEBSOCKET_COMPRESSION=1"}, func(t *testing.T, c Config) {
			if c.Auth.Anonymous || !c.WebSocket.Compression {
				t.Errorf("anonymous %v compression %v", c.Auth.Anonymous, c.WebSocket.Compression)
			}
		}},
		{"int", []string{"SWITCHYARD_LIMITS_MAX_CONNECTIONS=42"}, func(t *testing.T, c Config) {
			if c.Limits.MaxConnections != 42 {
				t.Error(c.Limits.MaxConnections)
			}
		}},
		{"size and duration", []string{"SWITCHYARD_LIMITS_MAX_MESSAGE_SIZE=128KiB", "SWITCHYARD_LIMITS_MAX_REQUEST_BODY=1000", "SWITCHYARD_WEBSOCKET_PING_INTERVAL=1m", "SWITCHYARD_WEBSOCKET_READ_TIMEOUT=2m"}, func(t *testing.T, c Config) {
			if c.Limits.MaxMessageSize != 128*KiB || c.Limits.MaxRequestBody != 1000 {
				t.Errorf("sizes %v %v", c.Limits.MaxMessageSize, c.Limits.MaxRequestBody)
			}
			if c.WebSocket.PingInterval.Duration() != time.Minute || c.WebSocket.ReadTimeout.Duration() != 2*time.Minute {
				t.Errorf("durations %v %v", c.WebSocket.PingInterval, c.WebSocket.ReadTimeout)
			}
		}},
		{"lists", []string{"SWITCHYARD_CHANNELSTREAM_ALLOW_POSTING_FROM=10.0.0.0/8, ::1 ,192.168.1.1", "SWITCHYARD_API_KEYS=aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb", "SWITCHYARD_WEBSOCKET_ALLOWED_ORIGINS=*"}, func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c.Channelstream.AllowPostingFrom, []string{"10.0.0.0/8", "::1", "192.168.1.1"}) {
				t.Errorf("allow_posting_from %q", c.Channelstream.AllowPostingFrom)
			}
			if !reflect.DeepEqual(c.APIKeys, []Secret{"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"}) {
				t.Errorf("api_keys %d", len(c.APIKeys))
			}
			if !reflect.DeepEqual(c.WebSocket.AllowedOrigins, []string{"*"}) {
				t.Errorf("origins %q", c.WebSocket.AllowedOrigins)
			}
		}},
		{"empty list", []string{"SWITCHYARD_CHANNELSTREAM_ALLOW_POSTING_FROM="}, func(t *testing.T, c Config) {
			if len(c.Channelstream.AllowPostingFrom) != 0 {
				t.Errorf("allow_posting_from %q", c.Channelstream.AllowPostingFrom)
			}
		}},
		{"map-valued flow YAML", []string{"SWITCHYARD_RESOURCES={todos: {fields: {title: {type: string}}}, notes: {fields: {body: {type: text}}}}"}, func(t *testing.T, c Config) {
			if len(c.Resources) != 2 || c.Resources[0].Name != "todos" || c.Resources[1].Name != "notes" {
				t.Fatalf("resources %+v", c.Resources)
			}
			if r := c.Resources[0]; r.PKField != "id" || r.PageSize != 25 || r.Permissions.Read != "anyone" || r.Fields[0].Type != "string" {
				t.Errorf("resource defaults not applied: %+v", r)
			}
		}},
		{"map-valued JSON and block YAML", []string{
			`SWITCHYARD_CHANNELS_NAMESPACES={"chat": {"history_size": 10, "history_ttl": "1m", "recover": true}}`,
			"SWITCHYARD_QUEUES=mail:\n  concurrency: 2\n",
			`SWITCHYARD_SIGNALS={"a.b": {"queue": "mail", "allowed": "none", "webhook": "http://127.0.0.1:1/"}}`,
			"SWITCHYARD_SIGNALS_WEBHOOK_SECRET=0123456789abcdefghij",
		}, func(t *testing.T, c Config) {
			if len(c.Channels.Namespaces) != 1 || !c.Channels.Namespaces[0].Recover || c.Channels.Namespaces[0].Permissions.Publish != "none" {
				t.Errorf("namespaces %+v", c.Channels.Namespaces)
			}
			mail := DefaultQueueConfig("mail")
			mail.Concurrency = 2
			if !reflect.DeepEqual(c.Queues, []Queue{DefaultQueueConfig("default"), mail}) {
				t.Errorf("queues %+v", c.Queues)
			}
			if !reflect.DeepEqual(c.Signals.Declared, []Signal{{Name: "a.b", Queue: "mail", Allowed: "none", Webhook: "http://127.0.0.1:1/", ExtraArgs: "reject"}}) || c.Signals.WebhookSecret != "0123456789abcdefghij" {
				t.Errorf("signals %+v", c.Signals)
			}
		}},
		{"reserved names ignored", []string{"SWITCHYARD_CONFIG=/etc/switchyard.yaml", "SWITCHYARD_TEST_POSTGRES_URL=postgres://x", "SWITCHYARD_TEST_=1", "OTHER_LISTEN=x", "SWITCHYARD_LISTEN_no_equals"}, func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("got %+v", c)
			}
		}},
		{"first occurrence wins", []string{"SWITCHYARD_LISTEN=:1", "SWITCHYARD_LISTEN=:2"}, func(t *testing.T, c Config) {
			if c.Listen != ":1" {
				t.Error(c.Listen)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("", nil, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		env  []string
		src  string // Source of the error
		key  string
		msg  string
	}{
		{"bad size", "", []string{"SWITCHYARD_LIMITS_MAX_MESSAGE_SIZE=64XB"}, "SWITCHYARD_LIMITS_MAX_MESSAGE_SIZE", "limits.max_message_size", `(got "64XB")`},
		{"bad bool", "", []string{"SWITCHYARD_AUTH_ANONYMOUS=maybe"}, "SWITCHYARD_AUTH_ANONYMOUS", "auth.anonymous", "must be true or false"},
		{"bad duration", "", []string{"SWITCHYARD_CHANNELSTREAM_CONNECTION_GC=15"}, "SWITCHYARD_CHANNELSTREAM_CONNECTION_GC", "channelstream.connection_gc", "must be a duration"},
		{"bad enum", "", []string{"SWITCHYARD_LOG_FORMAT=xml"}, "SWITCHYARD_LOG_FORMAT", "log.format", "must be one of text, json"},
		{"bad listen", "", []string{"SWITCHYARD_LISTEN=nowhere"}, "SWITCHYARD_LISTEN", "listen", "must be host:port"},
		{"bad list item", "", []string{"SWITCHYARD_CHANNELSTREAM_ALLOW_POSTING_FROM=10.0.0.1,bogus"}, "SWITCHYARD_CHANNELSTREAM_ALLOW_POSTING_FROM", "channelstream.allow_posting_from[1]", "IP address"},
		{"missing url via env driver", "store: {url: \"\"}\n", []string{"SWITCHYARD_STORE_DRIVER=postgres"}, "switchyard.yaml", "store.url", "is required"},
		{"missing url, driver from env", "", []string{"SWITCHYARD_STORE_DRIVER=postgres"}, "SWITCHYARD_STORE_DRIVER", "store.url", "is required"},
		{"bad YAML document", "", []string{"SWITCHYARD_RESOURCES={todos: [}"}, "SWITCHYARD_RESOURCES", "resources", "invalid YAML"},
		{"bad value inside document", "", []string{"SWITCHYARD_RESOURCES={todos: {fields: {title: {type: strin}}}}"}, "SWITCHYARD_RESOURCES", "resources.todos.fields.title.type", `must be one of string, text`},
		{"unknown key inside document", "", []string{"SWITCHYARD_QUEUES={mail: {concurency: 2}}"}, "SWITCHYARD_QUEUES", "queues.mail.concurency", "unknown key"},
		{"document not a mapping", "", []string{"SWITCHYARD_SIGNALS=[a, b]"}, "SWITCHYARD_SIGNALS", "signals", "must be a mapping"},
		{"unknown variable", "", []string{"SWITCHYARD_LISTN=:1"}, "SWITCHYARD_LISTN", "", "unknown configuration variable (did you mean SWITCHYARD_LISTEN?)"},
		{"unknown section variable", "", []string{"SWITCHYARD_RESOURCES_TODOS_PAGE_SIZE=3"}, "SWITCHYARD_RESOURCES_TODOS_PAGE_SIZE", "", "SWITCHYARD_RESOURCES takes the whole section"},
		{"struct section is not a variable", "", []string{"SWITCHYARD_LOG=json"}, "SWITCHYARD_LOG", "", "unknown configuration variable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("switchyard.yaml", []byte(tc.file), tc.env)
			es := mustErrors(t, err)
			e := findError(t, es, tc.key)
			if e.Source != tc.src {
				t.Errorf("Source = %q, want %q (%v)", e.Source, tc.src, e)
			}
			if strings.HasPrefix(tc.src, "SWITCHYARD_") && e.Line != 0 {
				t.Errorf("Line = %d for an environment variable", e.Line)
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", e.Msg, tc.msg)
			}
			if !strings.HasPrefix(e.Error(), tc.src+":") {
				t.Errorf("Error() = %q does not start with the source", e.Error())
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	file := `listen: 127.0.0.1:7000
data_dir: /from/file
log: {format: json, level: warn}
resources:
  from_file: {fields: {a: {type: int}}}
`
	path := writeFile(t, "switchyard.yaml", file)
	env := []string{
		"SWITCHYARD_LISTEN=127.0.0.1:7001",
		"SWITCHYARD_LOG_LEVEL=debug",
		"SWITCHYARD_RESOURCES={from_env: {fields: {b: {type: text}}}}",
	}
	c, err := Load(path, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7001" || c.Log.Level != "debug" {
		t.Errorf("environment did not win: listen %q level %q", c.Listen, c.Log.Level)
	}
	if c.DataDir != "/from/file" || c.Log.Format != "json" {
		t.Errorf("file lost: data_dir %q format %q", c.DataDir, c.Log.Format)
	}
	if c.WebSocket.PingInterval.Duration() != 25*time.Second {
		t.Errorf("default lost: %v", c.WebSocket.PingInterval)
	}
	if len(c.Resources) != 1 || c.Resources[0].Name != "from_env" {
		t.Errorf("map section from env must replace the file's: %+v", c.Resources)
	}

	// Errors in a section replaced by the environment are reported
	// against the variable, not the file's stale lines.
	_, err = Load(path, []string{"SWITCHYARD_RESOURCES={x: {fields: {a: {type: int}}, page_size: 0}}"})
	e := findError(t, mustErrors(t, err), "resources.x.page_size")
	if e.Source != "SWITCHYARD_RESOURCES" || e.Line != 0 {
		t.Errorf("got %v", e)
	}

	// Flags are applied by the caller, then Validate re-checks.
	c.Listen = "no-port"
	c.Log.Format = "yaml"
	es := mustErrors(t, c.Validate())
	for _, key := range []string{"listen", "log.format"} {
		if e := findError(t, es, key); e.Source != "" || e.Line != 0 || !strings.HasPrefix(e.Error(), key+": ") {
			t.Errorf("Validate error %q", e.Error())
		}
	}
}

func TestDeclarationOrder(t *testing.T) {
	src := `resources:
  zebra:
    fields: {z: {type: int}, a: {type: int}, m: {type: int}}
  apple:
    fields:
      y: {type: string}
      b: {type: string}
      x: {type: string}
  mango: {fields: {only: {type: bool}}}
channels:
  namespaces: {z: {}, a: {}, m: {}}
signals: {webhook_secret: 0123456789abcdefghij, s.z: {webhook: "http://x/"}, s.a: {webhook: "http://x/"}}
queues: {zq: {concurrency: 1}, aq: {concurrency: 1}}
`
	c, err := Parse("order.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range c.Resources {
		var fs []string
		for _, f := range r.Fields {
			fs = append(fs, f.Name)
		}
		got = append(got, r.Name+"("+strings.Join(fs, ",")+")")
	}
	for _, n := range c.Channels.Namespaces {
		got = append(got, "ns:"+n.Name)
	}
	for _, s := range c.Signals.Declared {
		got = append(got, "sig:"+s.Name)
	}
	for _, q := range c.Queues {
		got = append(got, "q:"+q.Name)
	}
	want := "zebra(z,a,m) apple(y,b,x) mango(only) ns:z ns:a ns:m sig:s.z sig:s.a q:default q:zq q:aq"
	if strings.Join(got, " ") != want {
		t.Errorf("order:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if f, ok := c.Resources[1].Field("b"); !ok || f.Type != "string" {
		t.Errorf("Field lookup: %v %v", f, ok)
	}
}

func TestAnchorsAndMerge(t *testing.T) {
	src := `channels:
  namespaces:
    base: &base {history_size: 10, history_ttl: 1m, recover: true}
    chat:
      <<: *base
      history_size: 50
    news: *base
`
	c, err := Parse("a.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	ns := c.Channels.Namespaces
	if len(ns) != 3 || ns[1].HistorySize != 50 || !ns[1].Recover || ns[1].HistoryTTL.Duration() != time.Minute || ns[2].HistorySize != 10 {
		t.Errorf("%+v", ns)
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	es := mustErrors(t, err)
	if !strings.Contains(es[0].Msg, "no such file") || !strings.HasSuffix(es[0].Source, "missing.yaml") {
		t.Errorf("got %v", err)
	}
}

func TestSizeSyntax(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"0", 0, true}, {"65536", 65536, true}, {"1B", 1, true}, {"64KiB", 64 << 10, true},
		{"64 KiB", 64 << 10, true}, {"2KB", 2000, true}, {"3MB", 3e6, true}, {"1MiB", 1 << 20, true},
		{"1GB", 1e9, true}, {"2GiB", 2 << 30, true},
		{"", 0, false}, {"KiB", 0, false}, {"1.5MiB", 0, false}, {"-1", 0, false}, {"1kb", 0, false},
		{"1TiB", 0, false}, {"99999999999999999999", 0, false}, {"9000000000GiB", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var s Size
			err := s.UnmarshalText([]byte(tc.in))
			if (err == nil) != tc.ok || (tc.ok && s != tc.want) {
				t.Errorf("UnmarshalText(%q) = %d, %v", tc.in, s, err)
			}
			if tc.ok {
				var back Size
				if err := back.UnmarshalText([]byte(s.String())); err != nil || back != s {
					t.Errorf("String %q does not round-trip: %v", s.String(), err)
				}
			}
		})
	}
	// Through yaml.v3 directly.
	var v struct {
		A Size     `yaml:"a"`
		B Size     `yaml:"b"`
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("a: 64KiB\nb: 100\nd: 1h30m\n"), &v); err != nil || v.A != 64*KiB || v.B != 100 || v.D.Duration() != 90*time.Minute {
		t.Errorf("yaml.Unmarshal: %+v %v", v, err)
	}
	if err := yaml.Unmarshal([]byte("a: [1]\n"), &v); err == nil {
		t.Error("a list decoded as a Size")
	}
	if err := yaml.Unmarshal([]byte("d: 15\n"), &v); err == nil {
		t.Error("15 decoded as a Duration")
	}
	var d Duration
	if err := d.UnmarshalText([]byte("2m")); err != nil || d.Duration() != 2*time.Minute || d.String() != "2m0s" {
		t.Errorf("Duration %v %v", d, err)
	}
	if out, err := yaml.Marshal(struct{ S Size }{64 * KiB}); err != nil || !strings.Contains(string(out), "64KiB") {
		t.Errorf("Marshal %s %v", out, err)
	}
}

func TestSecretsRedacted(t *testing.T) {
	c := Default()
	c.Store = Store{Driver: "postgres", URL: "postgres://sy:hunter2-store@db/x?password=qs-secret"}
	c.Broker = Broker{Driver: "redis", URL: "redis://:hunter2-broker@cache:6379/0"}
	c.Auth.JWT.HMACSecret = "hunter2-hmac-0123456789"
	c.APIKeys = []Secret{"hunter2-apikey-0123456789"}
	c.Channelstream.Secret = "hunter2-cs"
	c.Channelstream.AdminSecret = "hunter2-admin"
	c.Dashboard.Password = "hunter2-dashboard"
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "cfg", c)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", c, "store", c.Store, "auth", c.Auth)
	fmt.Fprintf(&buf, "%v %+v %#v %s\n", c, c, c, c.APIKeys)
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(j)
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(y)
	out := buf.String()
	if strings.Contains(out, "hunter2") || strings.Contains(out, "qs-secret") {
		t.Errorf("secret leaked:\n%s", out)
	}
	for _, want := range []string{"[redacted]", "db/x", "cache:6379", "api_keys=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if Secret("").String() != "" || Secret("x").String() != "[redacted]" {
		t.Error("Secret.String")
	}
}

func TestEnvNames(t *testing.T) {
	names := EnvNames()
	for _, want := range []string{
		"SWITCHYARD_LISTEN", "SWITCHYARD_DATA_DIR", "SWITCHYARD_STORE_DRIVER", "SWITCHYARD_AUTH_JWT_HMAC_SECRET",
		"SWITCHYARD_LIMITS_MAX_MESSAGE_SIZE", "SWITCHYARD_CHANNELSTREAM_ALLOW_POSTING_FROM",
		"SWITCHYARD_RESOURCES", "SWITCHYARD_CHANNELS_NAMESPACES", "SWITCHYARD_SIGNALS", "SWITCHYARD_QUEUES",
		"SWITCHYARD_CHANNELS_DEFAULT_PERMISSIONS_PUBLISH", "SWITCHYARD_API_KEYS",
	} {
		if !containsString(names, want) {
			t.Errorf("missing %s", want)
		}
	}
	if containsString(names, "SWITCHYARD_LOG") || containsString(names, "SWITCHYARD_RESOURCES_FIELDS") {
		t.Error("sections must not be variables")
	}
	if EnvName("auth.jwt.hmac_secret") != "SWITCHYARD_AUTH_JWT_HMAC_SECRET" {
		t.Error(EnvName("auth.jwt.hmac_secret"))
	}
}

// TestDocsListEveryVariable keeps docs/configuration.md in step with the
// struct tags.
func TestDocsListEveryVariable(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range EnvNames() {
		if !bytes.Contains(doc, []byte("`"+name+"`")) {
			t.Errorf("docs/configuration.md does not mention `%s`", name)
		}
	}
}

func TestAllowedPrefixes(t *testing.T) {
	cs := Channelstream{AllowPostingFrom: []string{"127.0.0.1", "10.0.0.0/8", "::1", "bad"}}
	got := fmt.Sprint(cs.AllowedPrefixes())
	if got != "[127.0.0.1/32 10.0.0.0/8 ::1/128]" {
		t.Error(got)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{"f.yaml", 3, "a.b", "bad"}, "f.yaml:3: a.b: bad"},
		{Error{"SWITCHYARD_X", 0, "x", "bad"}, "SWITCHYARD_X: x: bad"},
		{Error{"SWITCHYARD_X", 0, "", "unknown"}, "SWITCHYARD_X: unknown"},
		{Error{"", 0, "listen", "bad"}, "listen: bad"},
		{Error{"", 4, "", "bad"}, "line 4: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q want %q", got, tc.want)
		}
	}
	es := Errors{{Key: "a", Msg: "x"}, {Key: "b", Msg: "y"}}
	if es.Error() != "a: x\nb: y" {
		t.Error(es.Error())
	}
	var one *Error
	if !errors.As(error(es), &one) || one.Key != "a" {
		t.Error("errors.As does not reach *Error")
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func FuzzParse(f *testing.F) {
	example, _ := os.ReadFile("../docs/examples/switchyard.yaml")
	f.Add(example, "")
	f.Add([]byte(fullFile), "{a: {fields: {b: {type: int}}}}")
	f.Add([]byte("log: &a\n  <<: *a\n"), "")
	f.Add([]byte("a: &a [*a, *a]\nresources: {x: {fields: {f: {type: json, default: *a}}}}\n"), "")
	f.Add([]byte("channels:\n  namespaces:\n    b: &b {<<: [*b, *b]}\n"), "[")
	f.Add([]byte("resources:\n  t:\n    fields:\n      n: {type: int, default: 1e400, min: .nan}\n"), "~")
	f.Add([]byte("\t- \x00"), "{")
	f.Fuzz(func(t *testing.T, data []byte, envDoc string) {
		env := []string{"SWITCHYARD_RESOURCES=" + envDoc, "SWITCHYARD_LISTEN=" + envDoc}
		if envDoc == "" {
			env = nil
		}
		c, err := Parse("fuzz.yaml", data, env)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
			}
			_ = err.Error()
			return
		}
		if verr := c.Validate(); verr != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v", verr)
		}
	})
}

func TestHostileInputs(t *testing.T) {
	var bomb strings.Builder
	bomb.WriteString("x0: &a0 {presence: true}\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&bomb, "x%d: &a%d {<<: [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				bomb.WriteString(", ")
			}
			fmt.Fprintf(&bomb, "*a%d", i-1)
		}
		bomb.WriteString("]}\n")
	}
	bomb.WriteString("channels: {default: *a9}\n")
	var lol strings.Builder
	lol.WriteString("l0: &l0 [aaaaaaaaaaaaaaaaaaaa]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&lol, "l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	lol.WriteString("resources: {t: {fields: {j: {type: json, default: *l9}}}}\napi_keys: *l9\n")
	for _, tc := range []struct{ name, src string }{
		{"self merge", "log: &a\n  <<: *a\n"},
		{"merge bomb", bomb.String()},
		{"billion laughs", lol.String()},
		{"self-referencing list", "api_keys: &k [*k]\n"},
		{"merge of a scalar", "log: {<<: 5}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse("h.yaml", []byte(tc.src), nil)
			mustErrors(t, err)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
