package ws

import (
	"log/slog"
	"net/http"
	"time"
)

// Defaults of the options; each is documented on its Option.
const (
	DefaultMaxMessageSize = 64 << 10
	DefaultPingInterval   = 25 * time.Second
	DefaultReadTimeout    = 60 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	// closeTimeout bounds the wait for the peer's close frame after this
	// side sent one.
	closeTimeout = 3 * time.Second
)

// An Option changes how connections are accepted and served. Options are
// resolved once, when Accept, Require or Upgrade is called.
type Option func(*options)

type options struct {
	origins      []string
	originKey    string
	checkOrigin  func(*http.Request) bool
	maxMessage   int64
	maxQueued    int64
	pingInterval time.Duration
	readTimeout  time.Duration
	writeTimeout time.Duration
	subprotocols []string
	compression  bool
	engine       *Engine
	logger       *slog.Logger
}

func resolve(opts []Option) *options {
	o := &options{
		maxMessage:   DefaultMaxMessageSize,
		pingInterval: DefaultPingInterval,
		readTimeout:  DefaultReadTimeout,
		writeTimeout: DefaultWriteTimeout,
	}
	for _, fn := range opts {
		fn(o)
	}
	if o.maxMessage <= 0 {
		o.maxMessage = DefaultMaxMessageSize
	}
	if o.maxQueued <= 0 {
		o.maxQueued = max(4*o.maxMessage, 1<<20)
	}
	if o.writeTimeout <= 0 {
		o.writeTimeout = DefaultWriteTimeout
	}
	if o.logger == nil {
		if o.engine != nil {
			o.logger = o.engine.log
		} else {
			o.logger = slog.New(slog.DiscardHandler)
		}
	}
	return o
}

// AllowedOrigins lists the browser origins allowed besides the request's
// own host: "*" allows any origin, "https://app.example.com" one origin,
// "app.example.com" one host on any scheme, "*.example.com" every
// subdomain. By default only same-origin requests (and requests without an
// Origin header, which browsers always send) are accepted; others get 403.
func AllowedOrigins(patterns ...string) Option {
	return func(o *options) { o.origins = append(o.origins, patterns...) }
}

// OriginConfigKey names the application setting that lists the allowed
// origins (Switchyard passes "websocket.allowed_origins"). A refused origin
// is then answered 403 with a message that tells what to change, like
// `origin "https://app.example.com" is not allowed: add it to
// websocket.allowed_origins`, and logged at info level with the same
// reason and key.
func OriginConfigKey(key string) Option {
	return func(o *options) { o.originKey = key }
}

// CheckOrigin replaces the origin policy with fn.
func CheckOrigin(fn func(r *http.Request) bool) Option {
	return func(o *options) { o.checkOrigin = fn }
}

// MaxMessageSize limits a message, after reassembly of fragments and
// decompression, to n bytes (default 64 KiB). A larger message closes the
// connection with code 1009; the rest of it is read and discarded so the
// peer sees the close frame rather than a reset.
func MaxMessageSize(n int64) Option {
	return func(o *options) { o.maxMessage = n }
}

// MaxQueuedBytes bounds the received messages a handler has not taken yet
// (Accept and Require only; default 4 × MaxMessageSize, at least 1 MiB).
// When it is reached the connection stops reading until the handler
// catches up, so a slow handler slows its own client and nobody else.
func MaxQueuedBytes(n int64) Option {
	return func(o *options) { o.maxQueued = n }
}

// PingInterval sets how often the server pings the client (default 25 s;
// 0 or less disables pings).
func PingInterval(d time.Duration) Option {
	return func(o *options) { o.pingInterval = d }
}

// ReadTimeout closes a connection that has sent nothing, not even a pong,
// for d (default 60 s; 0 or less disables it). Keep it above the ping
// interval.
func ReadTimeout(d time.Duration) Option {
	return func(o *options) { o.readTimeout = d }
}

// WriteTimeout bounds the writes to the socket (default 10 s): each write
// gets between half and all of it, since the deadline is moved only when
// half is spent (moving it costs a timer update per write). A write that
// times out closes the connection.
func WriteTimeout(d time.Duration) Option {
	return func(o *options) { o.writeTimeout = d }
}

// Subprotocols lists the subprotocols the server speaks, in order of
// preference; the first one the client also offers is selected and
// returned by Conn.Subprotocol.
func Subprotocols(protocols ...string) Option {
	return func(o *options) { o.subprotocols = append(o.subprotocols, protocols...) }
}

// Compression enables permessage-deflate (RFC 7692) when the client offers
// it, without context takeover in either direction, so a connection keeps
// no compression state between messages. Off by default: it trades CPU
// for bandwidth.
func Compression(enabled bool) Option {
	return func(o *options) { o.compression = enabled }
}

// WithEngine serves the connections on e, which owns their reading,
// pings and shutdown (Engine.Shutdown closes them with 1001). Without it
// each Accept or Require handler uses a private engine that runs only
// while the handler has connections and that nothing shuts down: close
// such connections from the handler (watch your server's shutdown).
func WithEngine(e *Engine) Option {
	return func(o *options) { o.engine = e }
}

// WithLogger sets the logger for connection events (panics, protocol
// errors); the default is the engine's logger, or none.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}
