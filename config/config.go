package config

import (
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Config is the whole server configuration. The yaml tags are the key
// names in the file; the environment variable names are derived from them.
type Config struct {
	// Listen is the host:port the HTTP server listens on.
	Listen string `yaml:"listen"`
	// DataDir is the directory for the embedded store and other state.
	DataDir string `yaml:"data_dir"`
	// PublicURL is the URL clients reach the server at (scheme, host and
	// an optional path prefix, such as https://api.example.com); links the
	// server writes (REST next and previous pages) start with it. Empty:
	// links are relative, never built from the request's Host header.
	PublicURL string `yaml:"public_url"`
	// Log configures the server log.
	Log Log `yaml:"log"`
	// Store selects the database.
	Store Store `yaml:"store"`
	// Broker selects the pub/sub broker that connects server instances.
	Broker Broker `yaml:"broker"`
	// Auth configures how clients authenticate.
	Auth Auth `yaml:"auth"`
	// APIKeys are the keys accepted for server-to-server API calls.
	APIKeys []Secret `yaml:"api_keys"`
	// WebSocket configures WebSocket connections.
	WebSocket WebSocket `yaml:"websocket"`
	// Limits bounds sizes, rates and counts.
	Limits Limits `yaml:"limits"`
	// Channelstream configures the Channelstream-compatible API.
	Channelstream Channelstream `yaml:"channelstream"`
	// Binding configures the channels-binding wire (see wires.go).
	Binding Binding `yaml:"binding"`
	// Resources are the live data resources, in declaration order.
	Resources []Resource `yaml:"resources" config:"map"`
	// Channels configures pub/sub channels.
	Channels Channels `yaml:"channels"`
	// Signals holds the signal settings and the declared signals.
	Signals Signals `yaml:"signals"`
	// Queues are the work queues, in declaration order. After Load or
	// Parse it always holds a queue named "default".
	Queues []Queue `yaml:"queues" config:"map"`
	// DFWebsockets configures the df_websockets wire (dfws.go).
	DFWebsockets DFWebsockets `yaml:"df_websockets"`
	// Dashboard configures the admin dashboard (/dashboard/).
	Dashboard Dashboard `yaml:"dashboard"`
}

// Log configures the server log.
type Log struct {
	// Format is LogFormatText or LogFormatJSON.
	Format string `yaml:"format"`
	// Level is one of LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError.
	Level string `yaml:"level"`
}

// Log formats and levels.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
	LogLevelDebug = "debug"
	LogLevelInfo  = "info"
	LogLevelWarn  = "warn"
	LogLevelError = "error"
)

// Store selects the database.
type Store struct {
	// Driver is StoreSQLite or StorePostgres.
	Driver string `yaml:"driver"`
	// URL is the postgres:// or postgresql:// connection URL; it must be
	// empty for sqlite, which lives in DataDir.
	URL Secret `yaml:"url"`
	// ConnectTimeout bounds connecting to the database (postgres): at
	// start the server exits after it, naming the address.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// MaxConnections is the size of the connection pool (postgres).
	MaxConnections int `yaml:"max_connections"`
	// InsertBatch is the most rows that concurrent inserts into one
	// resource combine into one statement (postgres); 1 turns combining
	// off.
	InsertBatch int `yaml:"insert_batch"`
	// ChangeLog bounds the resource change log.
	ChangeLog ChangeLog `yaml:"change_log"`
}

// ChangeLog bounds the resource change log: the record of every write that
// lets a subscriber coming back (subscribe_instance with since) replay what
// it missed. Changes older than MaxAge, and the oldest beyond MaxRows, are
// trimmed in the background; a since before the trimmed part answers
// recovered: false with the record as it is.
type ChangeLog struct {
	// MaxAge drops changes older than this; 0 keeps changes of any age.
	MaxAge Duration `yaml:"max_age"`
	// MaxRows keeps at most this many changes; 0 keeps any number.
	MaxRows int `yaml:"max_rows"`
	// MaxReplay is how many missed changes of one record a catch-up
	// replays; past it the subscriber gets the record as it is.
	MaxReplay int `yaml:"max_replay"`
}

// Defaults of the change log.
const (
	DefaultChangeLogMaxAge    = 7 * 24 * time.Hour
	DefaultChangeLogMaxRows   = 1_000_000
	DefaultChangeLogMaxReplay = 100
)

// Store drivers.
const (
	StoreSQLite   = "sqlite"
	StorePostgres = "postgres"
)

// LogValue implements slog.LogValuer, showing the URL without password or
// query parameters.
func (s Store) LogValue() slog.Value {
	return slog.GroupValue(slog.String("driver", s.Driver), slog.String("url", redactURL(string(s.URL))),
		slog.Group("change_log", "max_age", s.ChangeLog.MaxAge.String(), "max_rows", s.ChangeLog.MaxRows, "max_replay", s.ChangeLog.MaxReplay))
}

// Broker selects the pub/sub broker.
type Broker struct {
	// Driver is BrokerMemory, BrokerRedis or BrokerNATS.
	Driver string `yaml:"driver"`
	// URL is the redis://, rediss:// or nats:// URL; empty for memory.
	URL Secret `yaml:"url"`
	// Prefix starts every Redis key and channel, so that several
	// deployments can share one Redis.
	Prefix string `yaml:"prefix"`
	// ConnectTimeout bounds connecting to the broker (redis): at start the
	// server exits after it, naming the address.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// PubSubConnections is how many connections subscriptions are spread
	// over (redis).
	PubSubConnections int `yaml:"pubsub_connections"`
	// PresenceTTL is how long a client stays in presence, and a process in
	// the node registry, without being refreshed: a process that dies
	// takes its clients out of presence within it.
	PresenceTTL Duration `yaml:"presence_ttl"`
}

// Broker drivers.
const (
	BrokerMemory = "memory"
	BrokerRedis  = "redis"
	BrokerNATS   = "nats"
)

// LogValue implements slog.LogValuer, showing the URL without password or
// query parameters.
func (b Broker) LogValue() slog.Value {
	return slog.GroupValue(slog.String("driver", b.Driver), slog.String("url", redactURL(string(b.URL))))
}

// redactURL shows scheme, user name, host and path of a URL, hiding the
// password and the query.
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		return redacted
	}
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteString("://")
	if u.User != nil {
		b.WriteString(u.User.Username())
		if _, ok := u.User.Password(); ok {
			b.WriteString(":" + redacted)
		}
		b.WriteString("@")
	}
	b.WriteString(u.Host)
	b.WriteString(u.EscapedPath())
	if u.RawQuery != "" {
		b.WriteString("?" + redacted)
	}
	return b.String()
}

// Auth configures how clients authenticate.
type Auth struct {
	// Anonymous allows clients without credentials.
	Anonymous bool `yaml:"anonymous"`
	// JWT configures verification of JSON Web Tokens.
	JWT JWT `yaml:"jwt"`
	// CookieName is the cookie that may carry the token; "" disables
	// cookie authentication.
	CookieName string `yaml:"cookie_name"`
	// Proxy asks the application who a connection without a valid token
	// is (see wires.go).
	Proxy Proxy `yaml:"proxy"`
}

// JWT configures verification of JSON Web Tokens. At most one of
// HMACSecret and PublicKeyFile is set; with neither, JWTs are not accepted.
type JWT struct {
	// HMACSecret verifies HS256/384/512 tokens; at least 16 bytes.
	HMACSecret Secret `yaml:"hmac_secret"`
	// PublicKeyFile is a PEM file with the RSA, ECDSA or Ed25519 public key.
	PublicKeyFile string `yaml:"public_key_file"`
	// Issuer, when set, must equal the token's iss claim.
	Issuer string `yaml:"issuer"`
	// Audience, when set, must be in the token's aud claim.
	Audience string `yaml:"audience"`
	// UserClaim is the claim that holds the user id (default "sub"). Its
	// value may be a string or an integer (Django REST framework's
	// simplejwt issues {"user_id": 42}); an integer becomes its decimal
	// string.
	UserClaim string `yaml:"user_claim"`
}

// WebSocket configures WebSocket connections.
type WebSocket struct {
	// AllowedOrigins lists the accepted Origin headers: empty means same
	// origin only, "*" any origin; otherwise exact origins such as
	// https://app.example.com or host patterns such as *.example.com.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// PingInterval is how often the server pings an idle client.
	PingInterval Duration `yaml:"ping_interval"`
	// ReadTimeout closes a connection silent for this long; it must be
	// longer than PingInterval.
	ReadTimeout Duration `yaml:"read_timeout"`
	// Compression enables permessage-deflate.
	Compression bool `yaml:"compression"`
	// WriteTimeout bounds one write to the client.
	WriteTimeout Duration `yaml:"write_timeout"`
}

// Limits bounds sizes, rates and counts. Every limit has a safe default
// (Default), and every error a client gets for crossing one names its key.
type Limits struct {
	// MaxMessageSize is the largest WebSocket message accepted (1B..64MiB).
	MaxMessageSize Size `yaml:"max_message_size"`
	// MaxQueuedBytes bounds how far a session's outbox may grow behind
	// what its client reads; at least MaxMessageSize.
	MaxQueuedBytes Size `yaml:"max_queued_bytes"`
	// MaxOutgoingMessageSize is the largest single frame the server sends:
	// one frame up to it is always accepted into an empty outbox, a reply
	// over it is refused with 413 (paginate instead). 1KiB..1GiB.
	MaxOutgoingMessageSize Size `yaml:"max_outgoing_message_size"`
	// MaxRequestBody bounds HTTP request bodies.
	MaxRequestBody Size `yaml:"max_request_body"`
	// ReadTimeout bounds reading an HTTP request's headers, and then its
	// body; a client that trickles is cut off.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing one HTTP answer (from its first byte),
	// long-poll answers included.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout closes a keep-alive HTTP connection idle this long.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxConnections bounds the open client connections of every kind:
	// HTTP requests, long-polls and WebSockets. 0 derives it from the
	// process's open-file limit, keeping a reserve of descriptors so that
	// /healthz and clean refusals keep working at the limit.
	MaxConnections int `yaml:"max_connections"`
	// MaxSubscriptions bounds the subscriptions of one connection:
	// channels, record subscriptions and live queries; 0 is unlimited.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxSubscriptionsPerUser bounds the subscriptions of one
	// authenticated user across its connections on this process; 0 is
	// unlimited.
	MaxSubscriptionsPerUser int `yaml:"max_subscriptions_per_user"`
	// Writers is how many worker goroutines write broadcasts to the
	// clients' sockets (0: one per CPU, GOMAXPROCS; -1: none, a goroutine
	// per flush). A client whose socket is full gets a goroutine of its
	// own, so a slow client never holds a worker.
	Writers int `yaml:"writers"`
	// IOURing is how the writers write: "auto" (or empty) submits the
	// writes of many clients with one io_uring system call where the
	// kernel allows it (Linux 5.19+ for the best of it), else one write
	// per client; "off" always writes one client at a time.
	IOURing string `yaml:"io_uring"`
	// BroadcastChunk is how many subscribers each part of a split
	// broadcast covers: a publication to a channel with at least twice as
	// many subscribers on this process is queued to them by the writers
	// and the publishing goroutine together, a chunk each at a time
	// (0: 1,024; -1: never split).
	BroadcastChunk int `yaml:"broadcast_chunk"`
	// MaxHistoryBytes bounds the history kept across all channels; past
	// it, the history of the channels published to least recently is
	// dropped first (their epoch changes). 0 is unlimited.
	MaxHistoryBytes Size `yaml:"max_history_bytes"`
	// MaxChannelsPerNamespace bounds how many channels of one namespace
	// keep history at once; past it, the one published to least recently
	// loses its history. 0 is unlimited.
	MaxChannelsPerNamespace int `yaml:"max_channels_per_namespace"`
	// MaxSearchLength bounds the search text of a resource list, in
	// characters.
	MaxSearchLength int `yaml:"max_search_length"`
	// MessagesPerSecond bounds each connection's inbound rate; 0 is
	// unlimited.
	MessagesPerSecond int `yaml:"messages_per_second"`
	// ShutdownTimeout is how long a graceful shutdown may take; what is
	// still open then is closed, and the shutdown still succeeds.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// IdleRelease: after a burst of at least 1,000 new WebSocket
	// connections, once none has come for this long, the server collects
	// garbage once and returns the free memory to the OS
	// (debug.FreeOSMemory), so idle connections are not charged the GC's
	// headroom (docs/BENCHMARKS.md); 0 never does.
	IdleRelease Duration `yaml:"idle_release"`
}

// Channelstream configures the Channelstream-compatible API.
type Channelstream struct {
	// Enabled turns the API on; it then requires Secret.
	Enabled bool `yaml:"enabled"`
	// Secret signs the requests of the application server.
	Secret Secret `yaml:"secret"`
	// Prefix is the URL path the API is mounted under; starts with "/".
	Prefix string `yaml:"prefix"`
	// AllowPostingFrom lists the IP addresses and CIDR prefixes allowed to
	// call the server-side API.
	AllowPostingFrom []string `yaml:"allow_posting_from"`
	// AdminUser is the user name of the admin panel.
	AdminUser string `yaml:"admin_user"`
	// AdminSecret is the password of the admin panel; "" disables it.
	AdminSecret Secret `yaml:"admin_secret"`
	// ConnectionGC is how long a connection may go without a socket or a
	// long-poll before it is collected (Channelstream: 15 s).
	ConnectionGC Duration `yaml:"connection_gc"`
	// HeartbeatInterval is how often idle sockets get a heartbeat, and
	// how long a long-poll waits for its first message.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// UserGC is how long a user without connections (and its state) is
	// remembered.
	UserGC Duration `yaml:"user_gc"`
	// ChannelGC forgets a channel (its configuration and history) after
	// this long without connections or messages; 0 keeps channels
	// forever, as Channelstream does.
	ChannelGC Duration `yaml:"channel_gc"`
	// Namespace is the channels namespace Channelstream channels map to:
	// channel "room" is "<namespace>:room" for /live and the server API.
	Namespace string `yaml:"namespace"`
	// AllowCORS lists parts of browser origins that get CORS access
	// (Channelstream's allow_cors); empty allows every origin.
	AllowCORS []string `yaml:"allow_cors"`
	// ValidateRequests checks the age of signatures (60 s); false
	// accepts any age, as Channelstream's validate_requests = false.
	ValidateRequests bool `yaml:"validate_requests"`
	// EnforceHTTPS refuses (406) requests that did not come over HTTPS.
	EnforceHTTPS bool `yaml:"enforce_https"`
	// PollGoroutines keeps every /listen long-poll on its net/http
	// goroutine for the whole wait instead of parking it in the epoll
	// engine (no goroutine: ~4 KB per parked poll against ~19 KB, see
	// docs/BENCHMARKS.md "Parked polls"); TLS connections always keep it.
	PollGoroutines bool `yaml:"poll_goroutines"`
	// UnknownFields is ChannelstreamUnknownReject or
	// ChannelstreamUnknownIgnore.
	UnknownFields string `yaml:"unknown_fields"`
	// HistoryLimit caps every channel's history, whatever its
	// history_size.
	HistoryLimit int `yaml:"history_limit"`
	// MaxClockSkew is how far in the future a signature's timestamp may
	// be (the application server's clock may run ahead); later ones are
	// refused while ValidateRequests is on.
	MaxClockSkew Duration `yaml:"max_clock_skew"`
	// SignInAttempts is how many admin sign-ins one address may try per
	// SignInLockout; past it the address is locked out until the period
	// ends. A success clears the address's count.
	SignInAttempts int `yaml:"sign_in_attempts"`
	// SignInAttemptsGlobal is how many failed admin sign-ins all
	// addresses together may make per SignInLockout; past it every
	// sign-in is refused until the period ends.
	SignInAttemptsGlobal int `yaml:"sign_in_attempts_global"`
	// SignInLockout is the period over which sign-in attempts are counted
	// and how long a lockout lasts.
	SignInLockout Duration `yaml:"sign_in_lockout"`
}

// How the Channelstream API treats keys it does not know.
const (
	// ChannelstreamUnknownReject answers 422 "Unknown field." and passes
	// unknown /message keys through to clients (Channelstream's current
	// code).
	ChannelstreamUnknownReject = "reject"
	// ChannelstreamUnknownIgnore ignores unknown keys everywhere
	// (Channelstream 0.7.1, its last release).
	ChannelstreamUnknownIgnore = "ignore"
)

// AllowedPrefixes returns AllowPostingFrom as prefixes (an address is a
// prefix of its full length). Entries that do not parse are skipped; they
// are reported by Validate.
func (c Channelstream) AllowedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.AllowPostingFrom {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// Resource is one live data resource: a collection of records with typed
// fields, served over HTTP and WebSocket.
type Resource struct {
	// Name is the resource's key in the resources map.
	Name string `yaml:"-"`
	// Fields are the declared fields, in declaration order.
	Fields []Field `yaml:"fields" config:"map"`
	// PKField is the name of the primary-key field, which is implicit.
	PKField string `yaml:"pk_field"`
	// Search lists the string or text fields searched by full-text queries.
	Search []string `yaml:"search"`
	// Ordering is the default ordering: field names, "-" for descending.
	Ordering []string `yaml:"ordering"`
	// PageSize is the default page size, 1..1000.
	PageSize int `yaml:"page_size"`
	// Permissions says who may do what.
	Permissions ResourcePermissions `yaml:"permissions"`
	// Binding, when set, serves the resource on the channels-binding wire
	// (see wires.go).
	Binding *ResourceBinding `yaml:"binding"`
	// Table, when set, serves an existing PostgreSQL table (optionally
	// schema-qualified: "app_todo", "public.app_todo") that Switchyard
	// never creates, alters or drops: its columns, types and primary key
	// are read from the catalog at start, and Fields only refine them
	// (docs/existing-tables.md). Needs store.driver: postgres.
	Table string `yaml:"table"`
	// Capture says which writes become events: CaptureNone (the
	// default: writes through Switchyard only) or CaptureTrigger (a
	// trigger on the table records the changes any program makes).
	Capture string `yaml:"capture"`
}

// Capture modes of a resource.
const (
	CaptureNone    = "none"
	CaptureTrigger = "trigger"
)

// External reports whether the resource serves an existing table.
func (r *Resource) External() bool { return r.Table != "" }

// Field returns the declared field with the given name.
func (r *Resource) Field(name string) (*Field, bool) {
	for i := range r.Fields {
		if r.Fields[i].Name == name {
			return &r.Fields[i], true
		}
	}
	return nil, false
}

// Field is one declared field of a resource.
type Field struct {
	// Name is the field's key in the fields map.
	Name string `yaml:"-"`
	// Type is one of the Field* type constants.
	Type string `yaml:"type"`
	// Required makes the field mandatory on create.
	Required bool `yaml:"required"`
	// Default is the value used when a create omits the field; nil means
	// none. Its Go type follows the YAML value: string, int, float64,
	// bool, or (for json fields) maps and slices.
	Default any `yaml:"default"`
	// MaxLength bounds string and text fields, in characters.
	MaxLength *int `yaml:"max_length"`
	// Min bounds int and float fields from below.
	Min *float64 `yaml:"min"`
	// Max bounds int and float fields from above.
	Max *float64 `yaml:"max"`
	// Unique makes the store reject duplicate values.
	Unique bool `yaml:"unique"`
	// ReadOnly makes the field settable only by the server.
	ReadOnly bool `yaml:"read_only"`
	// Hidden keeps the field from clients: never shown, never settable
	// by them (a column of an existing table the app keeps to itself).
	Hidden bool `yaml:"hidden"`
}

// Field types.
const (
	FieldString   = "string"
	FieldText     = "text"
	FieldInt      = "int"
	FieldFloat    = "float"
	FieldBool     = "bool"
	FieldDatetime = "datetime"
	FieldJSON     = "json"
)

// ResourcePermissions says who may read, create, update and delete the
// records of a resource. Each is AccessAnyone, AccessAuthenticated,
// AccessNone or AccessOwnerPrefix followed by a declared string field
// holding the owner's user id (e.g. "owner:author").
type ResourcePermissions struct {
	// Read is who may list and get records.
	Read string `yaml:"read"`
	// Create is who may create records.
	Create string `yaml:"create"`
	// Update is who may update records.
	Update string `yaml:"update"`
	// Delete is who may delete records.
	Delete string `yaml:"delete"`
}

// Access levels used by permissions.
const (
	AccessAnyone        = "anyone"
	AccessAuthenticated = "authenticated"
	AccessNone          = "none"
	AccessOwnerPrefix   = "owner:"
)

// OwnerField reports whether perm is an owner permission ("owner:FIELD")
// and returns FIELD.
func OwnerField(perm string) (field string, ok bool) {
	return strings.CutPrefix(perm, AccessOwnerPrefix)
}

// Channels configures pub/sub channels.
type Channels struct {
	// Default applies to channels outside every namespace.
	Default ChannelOptions `yaml:"default"`
	// Namespaces are the declared namespaces, in declaration order. Keys a
	// namespace leaves out take the built-in defaults (DefaultChannelOptions),
	// not the values of Default.
	Namespaces []Namespace `yaml:"namespaces" config:"map"`
}

// ChannelOptions are the settings of a channel namespace.
type ChannelOptions struct {
	// Presence keeps the list of subscribers.
	Presence bool `yaml:"presence"`
	// HistorySize is how many recent messages are kept per channel.
	HistorySize int `yaml:"history_size"`
	// HistoryTTL is how long kept messages live.
	HistoryTTL Duration `yaml:"history_ttl"`
	// Recover lets reconnecting clients fetch the messages they missed; it
	// requires HistorySize > 0 and HistoryTTL > 0.
	Recover bool `yaml:"recover"`
	// Permissions says who may do what.
	Permissions ChannelPermissions `yaml:"permissions"`
}

// DefaultChannelOptions returns the built-in channel settings: no
// presence, no history, anyone may subscribe, read presence and history,
// and nobody may publish from a client.
func DefaultChannelOptions() ChannelOptions {
	return ChannelOptions{Permissions: ChannelPermissions{
		Subscribe: AccessAnyone,
		Publish:   AccessNone,
		Presence:  AccessAnyone,
		History:   AccessAnyone,
	}}
}

// ChannelPermissions says who may subscribe, publish and read presence and
// history; each is AccessAnyone, AccessAuthenticated or AccessNone.
type ChannelPermissions struct {
	// Subscribe is who may subscribe.
	Subscribe string `yaml:"subscribe"`
	// Publish is who may publish from a client connection.
	Publish string `yaml:"publish"`
	// Presence is who may read the presence list.
	Presence string `yaml:"presence"`
	// History is who may read the history.
	History string `yaml:"history"`
}

// Namespace is a named channel namespace.
type Namespace struct {
	// Name is the namespace's key in the namespaces map.
	Name string `yaml:"-"`
	// ChannelOptions are the namespace's settings.
	ChannelOptions `yaml:",inline"`
}

// Signals is the signals section: a few settings, and every other key is
// a declared signal.
type Signals struct {
	// WebhookSecret signs the requests made to webhook handlers
	// (Switchyard-Signature: t=...,v1=HMAC-SHA256); at least 16 bytes when
	// a signal has a webhook.
	WebhookSecret Secret `yaml:"webhook_secret"`
	// MaxKwargsBytes bounds the JSON kwargs of one call or trigger
	// (default 64 KiB).
	MaxKwargsBytes Size `yaml:"max_kwargs_bytes"`
	// CallsPerSecond bounds the signal calls of one connection (bursts of
	// twice the rate); 0 is unlimited. Default 20.
	CallsPerSecond int `yaml:"calls_per_second"`
	// WindowTTL is how long topics set for a window key that is not
	// connected are kept for when it connects (default 10 h, as
	// df_websockets' WEBSOCKET_CACHE_EXPIRE).
	WindowTTL Duration `yaml:"window_ttl"`
	// WebhookIdleConns is how many keep-alive connections to each webhook
	// host are kept open between calls (default 64). Concurrent webhook
	// calls beyond it open connections of their own, closed afterwards
	// (each then waits a minute in TIME_WAIT): with Go's default of 2, 16
	// concurrent calls to one host opened ~40 connections per 1,000 calls.
	WebhookIdleConns int `yaml:"webhook_idle_conns"`
	// Declared are the declared signals, in declaration order: every key
	// of the section other than the settings above.
	Declared []Signal `yaml:"declared,omitempty" config:"rest"`
}

// Signal is a named signal: who may call it from a browser, its
// arguments, the queue it runs on and its handler.
type Signal struct {
	// Name is the signal's key in the signals map.
	Name string `yaml:"-"`
	// Queue is the queue that runs the signal's jobs: a declared queue or
	// "default" (the default).
	Queue string `yaml:"queue"`
	// Allowed is who may call it from a browser: AccessAnyone,
	// AccessAuthenticated, AccessAnonymous, AccessServerSide (the
	// default: never from a browser), AccessClaimPrefix+name (a truthy
	// claim of the session's token) or AccessPermPrefix+perm (listed in
	// its perms claim).
	Allowed string `yaml:"allowed"`
	// Webhook, when set, is an http(s) URL the call is POSTed to.
	Webhook string `yaml:"webhook"`
	// Sync runs the handler during the call and answers its result
	// instead of queueing a job.
	Sync bool `yaml:"sync"`
	// Args are the declared arguments, in declaration order.
	Args []SignalArg `yaml:"args" config:"map"`
	// ExtraArgs is SignalExtraReject (the default: an undeclared argument
	// refuses the call) or SignalExtraAccept.
	ExtraArgs string `yaml:"extra_args"`
}

// SignalArg is one declared argument of a signal.
type SignalArg struct {
	// Name is the argument's key in the args map.
	Name string `yaml:"-"`
	// Type is one of the Arg* constants; "" accepts any JSON value.
	Type string `yaml:"type"`
	// Required makes the argument mandatory.
	Required bool `yaml:"required"`
	// Choices, when set, are the only values accepted.
	Choices []any `yaml:"choices"`
	// Pattern is a regular expression (RE2) a string must match.
	Pattern string `yaml:"pattern"`
	// Min and Max bound numbers.
	Min *float64 `yaml:"min"`
	Max *float64 `yaml:"max"`
	// MaxLength bounds strings (in characters) and arrays (in items).
	MaxLength *int `yaml:"max_length"`
}

// Argument types.
const (
	ArgString = "string"
	ArgInt    = "int"
	ArgFloat  = "float"
	ArgBool   = "bool"
	ArgObject = "object"
	ArgArray  = "array"
	// ArgForm is a serialized HTML form, as jQuery's serializeArray and
	// df_websockets' SerializedForm send it: [{"name", "value"}, ...].
	// Handlers receive it as an object, a repeated name as a list.
	ArgForm = "form"
)

// What a signal does with undeclared arguments.
const (
	SignalExtraReject = "reject"
	SignalExtraAccept = "accept"
)

// Signal access levels beyond AccessAnyone and AccessAuthenticated.
const (
	AccessAnonymous   = "anonymous"
	AccessServerSide  = "server_side"
	AccessClaimPrefix = "claim:"
	AccessPermPrefix  = "perm:"
)

// Queue is a named work queue.
type Queue struct {
	// Name is the queue's key in the queues map.
	Name string `yaml:"-"`
	// Concurrency is how many jobs run at once; at least 1, default 4.
	Concurrency int `yaml:"concurrency"`
	// MaxAttempts is how many times a job runs before it is dead
	// (discarded, kept and visible); 1..1000, default 10.
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the delay before the first retry; each next retry waits
	// twice as long (with jitter: between half and all of it), up to
	// MaxBackoff. Default 1 s.
	Backoff Duration `yaml:"backoff"`
	// MaxBackoff caps the delay between retries (default 1 h).
	MaxBackoff Duration `yaml:"max_backoff"`
	// Timeout bounds one run of a job, a webhook call included (default
	// 1 min).
	Timeout Duration `yaml:"timeout"`
}

// DefaultQueue is the name of the queue that always exists.
const DefaultQueue = "default"

// defaultConcurrency is the concurrency of a queue that does not set one.
const defaultConcurrency = 4

// DefaultQueueConfig returns the settings of a queue that sets none.
func DefaultQueueConfig(name string) Queue {
	return Queue{
		Name:        name,
		Concurrency: defaultConcurrency,
		MaxAttempts: 10,
		Backoff:     Duration(time.Second),
		MaxBackoff:  Duration(time.Hour),
		Timeout:     Duration(time.Minute),
	}
}

// DefaultSignal returns the settings of a declared signal that sets none.
func DefaultSignal(name string) Signal {
	return Signal{Name: name, Queue: DefaultQueue, Allowed: AccessServerSide, ExtraArgs: SignalExtraReject}
}

// Default returns the embedded default configuration, the one used when
// there is no file and no SWITCHYARD_* variable. Each call returns a fresh
// value that the caller may modify.
func Default() Config {
	return Config{
		Listen:  "127.0.0.1:8000",
		DataDir: "./switchyard-data",
		Log:     Log{Format: LogFormatText, Level: LogLevelInfo},
		Store: Store{Driver: StoreSQLite, ConnectTimeout: Duration(5 * time.Second), MaxConnections: 16, InsertBatch: 64, ChangeLog: ChangeLog{
			MaxAge:    Duration(DefaultChangeLogMaxAge),
			MaxRows:   DefaultChangeLogMaxRows,
			MaxReplay: DefaultChangeLogMaxReplay,
		}},
		Broker: Broker{Driver: BrokerMemory, Prefix: "switchyard", ConnectTimeout: Duration(5 * time.Second),
			PubSubConnections: 4, PresenceTTL: Duration(time.Minute)},
		Auth: Auth{Anonymous: true, CookieName: "switchyard_token", JWT: JWT{UserClaim: "sub"}, Proxy: defaultProxy()},
		WebSocket: WebSocket{
			PingInterval: Duration(25 * time.Second),
			ReadTimeout:  Duration(60 * time.Second),
			WriteTimeout: Duration(10 * time.Second),
		},
		Limits: Limits{
			MaxMessageSize:          64 * KiB,
			MaxQueuedBytes:          1 * MiB,
			MaxOutgoingMessageSize:  4 * MiB,
			MaxRequestBody:          1 * MiB,
			ReadTimeout:             Duration(10 * time.Second),
			WriteTimeout:            Duration(10 * time.Second),
			IdleTimeout:             Duration(60 * time.Second),
			MaxSubscriptions:        1000,
			MaxSubscriptionsPerUser: 10000,
			MaxHistoryBytes:         64 * MiB,
			MaxChannelsPerNamespace: 10000,
			MaxSearchLength:         256,
			ShutdownTimeout:         Duration(10 * time.Second),
			IdleRelease:             Duration(2 * time.Second),
		},
		Channelstream: Channelstream{
			Prefix:               "/",
			AllowPostingFrom:     []string{"127.0.0.1"},
			AdminUser:            "admin",
			ConnectionGC:         Duration(15 * time.Second),
			HeartbeatInterval:    Duration(5 * time.Second),
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
		Binding:  defaultBinding(),
		Channels: Channels{Default: DefaultChannelOptions()},
		Signals: Signals{
			MaxKwargsBytes:   64 * KiB,
			CallsPerSecond:   20,
			WindowTTL:        Duration(10 * time.Hour),
			WebhookIdleConns: 64,
		},
		Queues:       []Queue{DefaultQueueConfig(DefaultQueue)},
		DFWebsockets: defaultDFWebsockets(),
		Dashboard:    DefaultDashboard(),
	}
}

// defaultResource is what a resource entry starts from before its keys are
// decoded.
func defaultResource() Resource {
	return Resource{
		PKField:  "id",
		PageSize: 25,
		Capture:  CaptureNone,
		Permissions: ResourcePermissions{
			Read: AccessAnyone, Create: AccessAnyone, Update: AccessAnyone, Delete: AccessAnyone,
		},
	}
}

// LogValue implements slog.LogValuer: the configuration with every secret
// redacted and the user-named sections shortened to their names.
func (c Config) LogValue() slog.Value {
	names := func(n int, name func(int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = name(i)
		}
		return out
	}
	return slog.GroupValue(
		slog.String("listen", c.Listen),
		slog.String("data_dir", c.DataDir),
		slog.String("public_url", c.PublicURL),
		slog.Group("log", "format", c.Log.Format, "level", c.Log.Level),
		slog.Any("store", c.Store),
		slog.Any("broker", c.Broker),
		slog.Group("auth",
			"anonymous", c.Auth.Anonymous,
			slog.Group("jwt",
				"hmac_secret", c.Auth.JWT.HMACSecret,
				"public_key_file", c.Auth.JWT.PublicKeyFile,
				"issuer", c.Auth.JWT.Issuer,
				"audience", c.Auth.JWT.Audience,
				"user_claim", c.Auth.JWT.UserClaim),
			"cookie_name", c.Auth.CookieName,
			"proxy_url", redactURL(c.Auth.Proxy.URL)),
		slog.Int("api_keys", len(c.APIKeys)),
		slog.Group("websocket",
			"allowed_origins", c.WebSocket.AllowedOrigins,
			"ping_interval", c.WebSocket.PingInterval.String(),
			"read_timeout", c.WebSocket.ReadTimeout.String(),
			"compression", c.WebSocket.Compression,
			"write_timeout", c.WebSocket.WriteTimeout.String()),
		slog.Group("limits",
			"max_message_size", c.Limits.MaxMessageSize.String(),
			"max_queued_bytes", c.Limits.MaxQueuedBytes.String(),
			"max_outgoing_message_size", c.Limits.MaxOutgoingMessageSize.String(),
			"max_request_body", c.Limits.MaxRequestBody.String(),
			"read_timeout", c.Limits.ReadTimeout.String(),
			"write_timeout", c.Limits.WriteTimeout.String(),
			"idle_timeout", c.Limits.IdleTimeout.String(),
			"max_connections", c.Limits.MaxConnections,
			"max_subscriptions", c.Limits.MaxSubscriptions,
			"max_subscriptions_per_user", c.Limits.MaxSubscriptionsPerUser,
			"writers", c.Limits.Writers,
			"io_uring", c.Limits.IOURing,
			"broadcast_chunk", c.Limits.BroadcastChunk,
			"max_history_bytes", c.Limits.MaxHistoryBytes.String(),
			"max_channels_per_namespace", c.Limits.MaxChannelsPerNamespace,
			"max_search_length", c.Limits.MaxSearchLength,
			"messages_per_second", c.Limits.MessagesPerSecond,
			"shutdown_timeout", c.Limits.ShutdownTimeout.String(),
			"idle_release", c.Limits.IdleRelease.String()),
		slog.Group("channelstream",
			"enabled", c.Channelstream.Enabled,
			"secret", c.Channelstream.Secret,
			"prefix", c.Channelstream.Prefix,
			"allow_posting_from", c.Channelstream.AllowPostingFrom,
			"admin_user", c.Channelstream.AdminUser,
			"admin_secret", c.Channelstream.AdminSecret,
			"connection_gc", c.Channelstream.ConnectionGC.String(),
			"heartbeat_interval", c.Channelstream.HeartbeatInterval.String()),
		slog.Group("binding", "path", c.Binding.Path, "anonymous", c.Binding.Anonymous),
		slog.Any("resources", names(len(c.Resources), func(i int) string { return c.Resources[i].Name })),
		slog.Any("channel_namespaces", names(len(c.Channels.Namespaces), func(i int) string { return c.Channels.Namespaces[i].Name })),
		slog.Group("signals",
			"webhook_secret", c.Signals.WebhookSecret,
			"max_kwargs_bytes", c.Signals.MaxKwargsBytes.String(),
			"calls_per_second", c.Signals.CallsPerSecond,
			"window_ttl", c.Signals.WindowTTL.String(),
			"webhook_idle_conns", c.Signals.WebhookIdleConns,
			"declared", names(len(c.Signals.Declared), func(i int) string { return c.Signals.Declared[i].Name })),
		slog.Any("queues", names(len(c.Queues), func(i int) string { return c.Queues[i].Name })),
		slog.Group("df_websockets", "path", c.DFWebsockets.Path, "url", c.DFWebsockets.URL),
		slog.Group("dashboard",
			"enabled", c.Dashboard.Enabled,
			"password", c.Dashboard.Password,
			"password_hash", c.Dashboard.PasswordHash,
			"session_ttl", c.Dashboard.SessionTTL.String()),
	)
}
