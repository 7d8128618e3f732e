package channelstream

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/internal/signin"
	"github.com/switchyardhq/switchyard/ws"
)

// Config configures a Server. Hub and Engine are required; every zero
// duration or size takes Channelstream's default.
type Config struct {
	Hub    *hub.Hub
	Engine *ws.Engine
	// Clustered reports whether other processes serve the same
	// deployment. Channelstream's users, connections and channels live in
	// the memory of the process that handled /connect, so then a
	// connection's /ws and /listen must reach that process (sticky routing
	// on conn_id); a request for a connection this process does not hold
	// says so instead of just "Unknown connection". It is called with
	// locks held: it must answer from memory. Nil: one process.
	Clustered func(ctx context.Context) bool
	// WSOptions are the WebSocket options of /ws (limits, timeouts); the
	// origin check is always off there, as in Channelstream: the conn_id
	// is the capability.
	WSOptions []ws.Option
	// Namespace is the hub namespace Channelstream channels live in:
	// channel "room" is hub channel "<Namespace>:room" (default
	// "channelstream").
	Namespace string
	// Secret verifies the application's signed requests.
	Secret string
	// Allowed are the addresses that may call the signed API (0.0.0.0:
	// any).
	Allowed []netip.Prefix
	// SignatureMaxAge is the lifetime of a signature (default 60 s;
	// negative: no age check, Channelstream's validate_requests = false).
	SignatureMaxAge time.Duration
	// MaxClockSkew is how far in the future a signature may be dated
	// while its age is checked (default DefaultMaxClockSkew; negative:
	// not at all, as itsdangerous 2.x).
	MaxClockSkew time.Duration
	// AllowCORS lists substrings of the Origins that get
	// Access-Control-Allow-Origin: * (empty: every origin).
	AllowCORS []string
	// EnforceHTTPS answers 406 to requests that did not arrive over HTTPS
	// (directly, or as an X-Forwarded-Proto / X-Url-Scheme / X-Scheme
	// header says).
	EnforceHTTPS bool
	// StrictFields answers 422 "Unknown field." to unknown keys (the
	// current Channelstream); false ignores them (Channelstream 0.7.1,
	// where /message also drops them instead of passing them through).
	StrictFields bool
	// Heartbeat is how often an idle socket gets "[]" and how long a
	// long-poll waits for its first message (default 5 s).
	Heartbeat time.Duration
	// ConnectionTimeout ends a connection that had no socket and no poll
	// for this long (default 15 s).
	ConnectionTimeout time.Duration
	// UserTimeout forgets a user without connections after this long
	// (default 24 h).
	UserTimeout time.Duration
	// ChannelTimeout forgets a channel without connections after this
	// long without activity (0: never, as in Channelstream).
	ChannelTimeout time.Duration
	// PollGoroutines serves every /listen with its net/http goroutine for
	// the whole wait, as before parking existed (a goroutine each: ~19 KB
	// of heap and stack per poll against ~4 KB parked, measured by
	// TestParkedCost; docs/BENCHMARKS.md "Parked polls"). By
	// default a poll is parked (see Handback) when it can be: HTTP/1.1
	// keep-alive without TLS, while Handback is served.
	PollGoroutines bool
	// WriteTimeout bounds writing a parked poll's answer (default 10 s,
	// as limits.write_timeout); a client that does not read it is
	// disconnected.
	WriteTimeout time.Duration
	// HistoryLimit caps every channel's history (default 1000): a
	// history_size of 0 ("unlimited" in Channelstream) or above it keeps
	// this many.
	HistoryLimit int
	// MaxBody bounds request bodies (default 1 MiB; larger: 413).
	MaxBody int64
	// MaxQueued bounds the catch-up frames kept for a connection between
	// sockets or polls, and one poll's response (default 1 MiB).
	MaxQueued int
	// AdminUser and AdminSecret sign in to the admin pages (an empty
	// secret leaves only signed API requests).
	AdminUser, AdminSecret string
	// SignInAttempts is how many sign-ins one address may try per
	// SignInLockout before it is locked out (default 5);
	// SignInAttemptsGlobal how many may fail across all addresses before
	// every sign-in is refused for the rest of the period (default 50).
	// SignInLockout is the period (default 15 min).
	SignInAttempts, SignInAttemptsGlobal int
	SignInLockout                        time.Duration
	Logger                               *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server holds Channelstream's state: users, connections and channels,
// in memory as in Channelstream, while their messages travel through the
// hub. Create it with New; Close stops it.
type Server struct {
	cfg       Config
	log       *slog.Logger
	guard     *Guard
	enc       *encoder
	prefix    string // hub channel prefix: Namespace + ":"
	maxQueued int
	started   time.Time
	cookieKey []byte
	adminPath string // set by Register
	signIns   *signin.Limiter

	mu       sync.Mutex // see the conn type for the lock order
	users    map[string]*user
	conns    map[string]*conn
	channels map[string]*channel
	stats    struct{ messages, unique int64 }

	polls  atomic.Int64 // parked long-polls (net/http's and parked ones)
	parked atomic.Int64 // the parked ones (park.go)

	handback *handback
	heads    sync.Map // rendered header lines -> shared copy (internHead)
	nheads   atomic.Int64

	stop   chan struct{}
	wg     sync.WaitGroup
	closed bool
}

// Stats are the server's current counts, for metrics.
type Stats struct {
	Connections int // Channelstream connections
	Users       int // users remembered (with or without connections)
	Channels    int
	Polls       int // long-polls parked now
}

// Stats returns the current counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Connections: len(s.conns), Users: len(s.users), Channels: len(s.channels), Polls: int(s.polls.Load())}
}

// New builds a server and starts its maintenance (heartbeats, connection,
// user and channel collection).
func New(cfg Config) (*Server, error) {
	if cfg.Hub == nil || cfg.Engine == nil {
		return nil, errors.New("channelstream: Hub and Engine are required")
	}
	if cfg.Secret == "" {
		return nil, errors.New("channelstream: Secret is required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "channelstream"
	}
	if cfg.SignatureMaxAge == 0 {
		cfg.SignatureMaxAge = time.Minute
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.ConnectionTimeout <= 0 {
		cfg.ConnectionTimeout = 15 * time.Second
	}
	if cfg.UserTimeout <= 0 {
		cfg.UserTimeout = 24 * time.Hour
	}
	if cfg.HistoryLimit <= 0 {
		cfg.HistoryLimit = 1000
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 1 << 20
	}
	if cfg.SignInAttempts <= 0 {
		cfg.SignInAttempts = 5
	}
	if cfg.SignInAttemptsGlobal <= 0 {
		cfg.SignInAttemptsGlobal = 50
	}
	if cfg.SignInLockout <= 0 {
		cfg.SignInLockout = 15 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	maxAge := max(cfg.SignatureMaxAge, 0)
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		guard:     &Guard{Secret: cfg.Secret, Allowed: cfg.Allowed, MaxAge: maxAge, MaxSkew: cfg.MaxClockSkew, Now: cfg.Now},
		signIns:   signin.New(cfg.SignInAttempts, cfg.SignInAttemptsGlobal, cfg.SignInLockout, cfg.Now),
		prefix:    cfg.Namespace + ":",
		maxQueued: cfg.MaxQueued,
		started:   cfg.Now(),
		cookieKey: []byte(newUUID() + cfg.AdminSecret),
		users:     map[string]*user{},
		conns:     map[string]*conn{},
		channels:  map[string]*channel{},
		stop:      make(chan struct{}),
		handback:  newHandback(),
	}
	s.enc = &encoder{srv: s}
	s.wg.Go(s.maintain)
	return s, nil
}

// Close ends every connection (their long-polls answer at once, parked
// ones with Connection: close, within about a second), closes Handback
// and stops the maintenance.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	var sockets []*ws.Conn
	for _, c := range s.conns {
		if w := s.removeLocked(c); w != nil {
			sockets = append(sockets, w)
		}
	}
	s.mu.Unlock()
	for _, w := range sockets {
		w.Close(1001, "server shutting down")
	}
	s.waitParked(2 * time.Second)
	s.handback.Close()
	s.wg.Wait()
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// hubChannel returns the hub channel of a Channelstream channel.
func (s *Server) hubChannel(name string) string { return s.prefix + escapeChannel(name) }

// channelName returns the Channelstream channel of a hub channel.
func (s *Server) channelName(hubName string) (string, bool) {
	rest, ok := strings.CutPrefix(hubName, s.prefix)
	if !ok {
		return "", false
	}
	return unescapeChannel(rest), true
}

// maintain runs the heartbeats and the collections, once a second.
func (s *Server) maintain() {
	t := time.NewTicker(min(time.Second, s.cfg.Heartbeat))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep(s.now())
		}
	}
}

// sweep sends heartbeats to idle sockets and collects dead connections,
// forgotten users and, when configured, idle channels.
func (s *Server) sweep(now time.Time) {
	s.mu.Lock()
	var beats []*conn
	var sockets []*ws.Conn
	for _, c := range s.conns {
		t := &c.tport
		t.mu.Lock()
		alive := t.ws != nil || t.poll != nil
		beat := t.ws != nil && now.Sub(t.lastBeat) >= s.cfg.Heartbeat
		if beat {
			t.lastBeat = now
		}
		t.mu.Unlock()
		switch {
		case alive:
			c.lastActive = now
			c.user.lastActive = now
			if beat {
				beats = append(beats, c)
			}
		case now.Sub(c.lastActive) > s.cfg.ConnectionTimeout:
			s.log.Debug("channelstream: connection expired", "conn", c.id, "user", c.user.name)
			if w := s.removeLocked(c); w != nil {
				sockets = append(sockets, w)
			}
		}
	}
	for name, u := range s.users {
		if len(u.conns) == 0 && now.Sub(u.lastActive) > s.cfg.UserTimeout {
			delete(s.users, name)
		}
	}
	if s.cfg.ChannelTimeout > 0 {
		for name, ch := range s.channels {
			if len(ch.members) == 0 && now.Sub(ch.lastActive) > s.cfg.ChannelTimeout {
				delete(s.channels, name)
			}
		}
	}
	s.mu.Unlock()
	for _, c := range beats {
		c.hs.Send([]byte("[]"))
	}
	for _, w := range sockets {
		w.Close(1000, "connection expired")
	}
}

// drop ends a connection from outside a request (the hub closed its
// session, or its socket closed).
func (s *Server) drop(c *conn, code int, reason string) {
	s.mu.Lock()
	w := s.removeLocked(c)
	s.mu.Unlock()
	if w != nil {
		w.Close(code, reason)
	}
}

// removeLocked ends a connection: it leaves its channels (parted where
// it was its user's last), leaves the hub, and its transport is told. It
// returns the socket to close once s.mu is released.
func (s *Server) removeLocked(c *conn) *ws.Conn {
	if s.conns[c.id] != c {
		return nil
	}
	for ch := range c.channels {
		s.leaveLocked(c, ch)
	}
	delete(s.conns, c.id)
	u := c.user
	for i, x := range u.conns {
		if x == c {
			u.conns = append(u.conns[:i], u.conns[i+1:]...)
			break
		}
	}
	u.lastActive = s.now()
	s.cfg.Hub.Disconnect(c.hs)
	t := &c.tport
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gone = true
	t.pending, t.pbytes = nil, 0
	if t.poll != nil {
		t.poll.done = true
		t.poll.signal()
	}
	w := t.ws
	t.ws = nil
	return w
}

// newChannel creates a channel with a configuration.
func (s *Server) newChannel(name string, st settings) *channel {
	ch := &channel{name: name, hub: s.hubChannel(name), uuid: newUUID(), settings: st, members: map[string][]*conn{}, lastActive: s.now()}
	s.channels[name] = ch
	return ch
}

// joinLocked adds a connection to a channel; it reports false when the
// connection already was in it. The user's first connection there
// announces a "joined" presence.
func (s *Server) joinLocked(ctx context.Context, c *conn, ch *channel) (bool, error) {
	if _, ok := c.channels[ch]; ok {
		return false, nil
	}
	if err := c.hs.Admit(1); err != nil {
		return false, err
	}
	if err := s.cfg.Hub.SubscribeSilent(ctx, c.hs, ch.hub); err != nil {
		return false, err
	}
	c.channels[ch] = struct{}{}
	c.joined.Add(1)
	name := c.user.name
	first := len(ch.members[name]) == 0
	if first {
		ch.order = append(ch.order, name)
	}
	ch.members[name] = append(ch.members[name], c)
	if first && ch.settings.NotifyPresence {
		s.presenceLocked(ch, c.user, "joined")
	}
	return true, nil
}

// leaveLocked removes a connection from a channel; the user's last
// connection there announces "parted".
func (s *Server) leaveLocked(c *conn, ch *channel) bool {
	if _, ok := c.channels[ch]; !ok {
		return false
	}
	delete(c.channels, ch)
	c.joined.Add(-1)
	s.cfg.Hub.UnsubscribeSilent(context.Background(), c.hs, ch.hub)
	name := c.user.name
	list := ch.members[name]
	for i, x := range list {
		if x == c {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) > 0 {
		ch.members[name] = list
		return true
	}
	delete(ch.members, name)
	for i, u := range ch.order {
		if u == name {
			ch.order = append(ch.order[:i], ch.order[i+1:]...)
			break
		}
	}
	if ch.settings.NotifyPresence {
		s.presenceLocked(ch, c.user, "parted")
	}
	return true
}

// presenceLocked sends a presence message to the channel's other users.
func (s *Server) presenceLocked(ch *channel, u *user, action string) {
	users := []object{}
	if ch.settings.BroadcastPresenceWithUserLists {
		for _, name := range ch.order {
			if m := s.users[name]; m != nil {
				users = append(users, object{{"user", raw(m.name)}, {"state", raw(m.publicState())}})
			}
		}
	}
	var state json.RawMessage = json.RawMessage("null")
	if action == "joined" {
		state = raw(u.publicState())
	}
	now := s.now()
	ch.lastActive = now
	msg := object{
		{"catchup", raw(false)},
		{"type", raw("presence")},
		{"uuid", raw(newUUID())},
		{"timestamp", raw(isoNaive(now))},
		{"user", raw(u.name)},
		{"channel", raw(ch.name)},
		{"message", raw(map[string]string{"action": action})},
		{"state", state},
		{"users", raw(users)},
	}
	s.publishLocked(ch, msg, switchyard.Audience{ExceptUsers: []string{u.name}})
}

// stateChangeLocked tells a channel about a user's new state.
func (s *Server) stateChangeLocked(ch *channel, u *user, changed []changedKey) {
	public := []changedKey{}
	for _, k := range changed {
		if contains(u.publicKeys, k.Key) {
			public = append(public, k)
		}
	}
	now := s.now()
	ch.lastActive = now
	msg := object{
		{"catchup", raw(false)},
		{"type", raw("user_state_change")},
		{"uuid", raw(newUUID())},
		{"timestamp", raw(isoNaive(now))},
		{"user", raw(u.name)},
		{"channel", raw(ch.name)},
		{"message", raw(map[string]any{"state": u.publicState(), "changed": public})},
	}
	s.publishLocked(ch, msg, switchyard.Audience{})
}

// publishLocked sends a message to a channel through the hub, so native
// subscribers of the hub channel (and, with a shared broker, other
// processes) get it too. It returns the number of this process's
// connections it reaches.
func (s *Server) publishLocked(ch *channel, msg object, aud switchyard.Audience) int {
	data := raw(msg.socketForm())
	if _, err := s.cfg.Hub.PublishAudience(context.Background(), ch.hub, data, aud); err != nil {
		s.log.Error("channelstream: publish failed", "channel", ch.hub, "err", err)
		return 0
	}
	n := 0
	for name, cs := range ch.members {
		if aud.Includes(name) {
			n += len(cs)
		}
	}
	return n
}

// sendToUsersLocked delivers a channel-less message to every connection of
// each listed user.
func (s *Server) sendToUsersLocked(users []string, msg object) int {
	f := frame(raw(msg.socketForm()))
	n := 0
	seen := map[string]bool{}
	for _, name := range users {
		u := s.users[name]
		if u == nil || seen[name] {
			continue
		}
		seen[name] = true
		for _, c := range u.conns {
			c.hs.Send(f)
			n++
		}
	}
	return n
}

// catchup returns the frames a detached connection keeps: heartbeats
// and the messages of channels that do not store frames are dropped, the
// rest marked "catchup": true.
func (s *Server) catchup(frames [][]byte) [][]byte {
	out := make([][]byte, 0, len(frames))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range frames {
		if isHeartbeat(f) {
			continue
		}
		var m []struct {
			Channel *string `json:"channel"`
		}
		if json.Unmarshal(f, &m) == nil && len(m) == 1 && m[0].Channel != nil {
			if ch := s.channels[*m[0].Channel]; ch != nil && !ch.settings.StoreFrames {
				continue
			}
		}
		out = append(out, asCatchup(f))
	}
	return out
}
