package config

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// verr is a validation problem: key is the key path reported, at a related
// key whose position is used when key itself has none (e.g. store.driver
// for a missing store.url).
type verr struct {
	key, at, msg string
}

type validator struct {
	errs []verr
}

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, verr{key: key, msg: fmt.Sprintf(format, args...)})
}

func (v *validator) addAt(key, at, format string, args ...any) {
	v.errs = append(v.errs, verr{key: key, at: at, msg: fmt.Sprintf(format, args...)})
}

// oneOf checks an enumerated value.
func (v *validator) oneOf(key, got string, allowed ...string) bool {
	for _, a := range allowed {
		if got == a {
			return true
		}
	}
	v.add(key, "must be one of %s (got %q)", strings.Join(allowed, ", "), got)
	return false
}

func (v *validator) positive(key string, d Duration) {
	if d <= 0 {
		v.add(key, "must be greater than 0 (got %s)", d)
	}
}

func (v *validator) nonNegative(key string, d Duration) {
	if d < 0 {
		v.add(key, "must not be negative (got %s)", d)
	}
}

// Validate checks the configuration as a whole, for use after fields were
// changed in Go (e.g. by command-line flags). It returns nil or an Errors
// whose entries name the offending keys; they carry no file or line.
// Validate reads auth.jwt.public_key_file to check that it is readable.
func (c *Config) Validate() error {
	var out Errors
	for _, e := range c.validate() {
		out = append(out, &Error{Key: e.key, Msg: e.msg})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

var (
	// signalNameRE is df_websockets' signal path: dotted identifiers.
	signalNameRE    = regexp.MustCompile(`^[_a-zA-Z]\w*(\.[_a-zA-Z]\w*)*$`)
	resourceNameRE  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	tableNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)
	namespaceNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	brokerPrefixRE  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	entryNameRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]*$`)
	claimNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.:/-]{0,63}$`)
)

// reservedClaims are the claims with a fixed meaning, which cannot hold the
// user id.
var reservedClaims = map[string]bool{"exp": true, "nbf": true, "iat": true, "iss": true, "aud": true, "jti": true, "info": true, "channels": true}

func (c *Config) validate() []verr {
	v := &validator{}
	v.listen("listen", c.Listen)
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			v.add("public_url", "must be an http:// or https:// URL with a host and no query, like https://api.example.com (got %q)", c.PublicURL)
		}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		v.add("data_dir", "must not be empty")
	}
	v.oneOf("log.format", c.Log.Format, LogFormatText, LogFormatJSON)
	v.oneOf("log.level", c.Log.Level, LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError)

	if v.oneOf("store.driver", c.Store.Driver, StoreSQLite, StorePostgres) {
		v.driverURL("store", c.Store.Driver, string(c.Store.URL), map[string][]string{
			StorePostgres: {"postgres://", "postgresql://"},
		})
	}
	v.positive("store.connect_timeout", c.Store.ConnectTimeout)
	if c.Store.MaxConnections < 1 || c.Store.MaxConnections > 1000 {
		v.add("store.max_connections", "must be between 1 and 1000 (got %d)", c.Store.MaxConnections)
	}
	if c.Store.InsertBatch < 1 || c.Store.InsertBatch > 1000 {
		v.add("store.insert_batch", "must be between 1 and 1000; 1 turns combining off (got %d)", c.Store.InsertBatch)
	}
	cl := c.Store.ChangeLog
	v.nonNegative("store.change_log.max_age", cl.MaxAge)
	if cl.MaxAge > 0 && cl.MaxAge < Duration(time.Minute) {
		v.add("store.change_log.max_age", "must be at least 1m, or 0 to keep changes of any age (got %s)", cl.MaxAge)
	}
	if cl.MaxRows < 0 {
		v.add("store.change_log.max_rows", "must not be negative; 0 keeps any number of changes (got %d)", cl.MaxRows)
	}
	if cl.MaxReplay < 1 || cl.MaxReplay > 100000 {
		v.add("store.change_log.max_replay", "must be between 1 and 100000 (got %d)", cl.MaxReplay)
	}
	if v.oneOf("broker.driver", c.Broker.Driver, BrokerMemory, BrokerRedis, BrokerNATS) {
		v.driverURL("broker", c.Broker.Driver, string(c.Broker.URL), map[string][]string{
			BrokerRedis: {"redis://", "rediss://"},
			BrokerNATS:  {"nats://"},
		})
	}
	if !brokerPrefixRE.MatchString(c.Broker.Prefix) {
		v.add("broker.prefix", "must be 1 to 64 letters, digits, '_', '-' or '.' (got %q)", c.Broker.Prefix)
	}
	v.positive("broker.connect_timeout", c.Broker.ConnectTimeout)
	if c.Broker.PubSubConnections < 1 || c.Broker.PubSubConnections > 64 {
		v.add("broker.pubsub_connections", "must be between 1 and 64 (got %d)", c.Broker.PubSubConnections)
	}
	if c.Broker.PresenceTTL < Duration(time.Second) {
		v.add("broker.presence_ttl", "must be at least 1s (got %s)", c.Broker.PresenceTTL)
	}

	c.validateAuth(v)
	seenKeys := map[Secret]int{}
	for i, k := range c.APIKeys {
		key := fmt.Sprintf("api_keys[%d]", i)
		switch {
		case k == "":
			v.add(key, "must not be empty")
		case utf8.RuneCountInString(string(k)) < 16:
			v.add(key, "must be at least 16 characters long (got %d)", utf8.RuneCountInString(string(k)))
		}
		if j, dup := seenKeys[k]; dup && k != "" {
			v.add(key, "duplicate of api_keys[%d]", j)
		} else {
			seenKeys[k] = i
		}
	}

	for i, o := range c.WebSocket.AllowedOrigins {
		if msg := checkOrigin(o); msg != "" {
			v.add(fmt.Sprintf("websocket.allowed_origins[%d]", i), "%s (got %q)", msg, o)
		}
	}
	v.positive("websocket.ping_interval", c.WebSocket.PingInterval)
	if c.WebSocket.PingInterval > 0 && c.WebSocket.ReadTimeout <= c.WebSocket.PingInterval {
		v.addAt("websocket.read_timeout", "websocket.ping_interval", "must be longer than websocket.ping_interval (%s) (got %s)", c.WebSocket.PingInterval, c.WebSocket.ReadTimeout)
	}
	v.positive("websocket.write_timeout", c.WebSocket.WriteTimeout)

	l := c.Limits
	if l.MaxMessageSize < 1 || l.MaxMessageSize > 64*MiB {
		v.add("limits.max_message_size", "must be between 1B and 64MiB (got %s)", l.MaxMessageSize)
	}
	if l.MaxQueuedBytes < l.MaxMessageSize {
		v.addAt("limits.max_queued_bytes", "limits.max_message_size", "must be at least limits.max_message_size (%s) (got %s)", l.MaxMessageSize, l.MaxQueuedBytes)
	}
	if l.MaxOutgoingMessageSize < KiB || l.MaxOutgoingMessageSize > GiB {
		v.add("limits.max_outgoing_message_size", "must be between 1KiB and 1GiB (got %s)", l.MaxOutgoingMessageSize)
	}
	if l.MaxRequestBody < 1 {
		v.add("limits.max_request_body", "must be at least 1B (got %s)", l.MaxRequestBody)
	}
	v.positive("limits.read_timeout", l.ReadTimeout)
	v.positive("limits.write_timeout", l.WriteTimeout)
	v.positive("limits.idle_timeout", l.IdleTimeout)
	if l.MaxConnections < 0 {
		v.add("limits.max_connections", "must not be negative; 0 derives it from the open-file limit (got %d)", l.MaxConnections)
	}
	if l.Writers < -1 || l.Writers > 1024 {
		v.add("limits.writers", "must be between -1 (no workers) and 1024; 0 is one per CPU (got %d)", l.Writers)
	}
	switch l.IOURing {
	case "", "auto", "off":
	default:
		v.add("limits.io_uring", "must be auto or off (got %q)", l.IOURing)
	}
	if l.BroadcastChunk < -1 || l.BroadcastChunk > 1<<20 {
		v.add("limits.broadcast_chunk", "must be between -1 (never split) and 1048576; 0 is 1024 (got %d)", l.BroadcastChunk)
	}
	for _, e := range []struct {
		key string
		n   int
	}{
		{"limits.max_subscriptions", l.MaxSubscriptions},
		{"limits.max_subscriptions_per_user", l.MaxSubscriptionsPerUser},
		{"limits.max_channels_per_namespace", l.MaxChannelsPerNamespace},
	} {
		if e.n < 0 {
			v.add(e.key, "must not be negative; 0 is unlimited (got %d)", e.n)
		}
	}
	if l.MaxHistoryBytes < 0 {
		v.add("limits.max_history_bytes", "must not be negative; 0 is unlimited (got %s)", l.MaxHistoryBytes)
	}
	if l.MaxSearchLength < 1 || l.MaxSearchLength > 10000 {
		v.add("limits.max_search_length", "must be between 1 and 10000 (got %d)", l.MaxSearchLength)
	}
	if l.MessagesPerSecond < 0 {
		v.add("limits.messages_per_second", "must not be negative; 0 is unlimited (got %d)", l.MessagesPerSecond)
	}
	v.nonNegative("limits.shutdown_timeout", l.ShutdownTimeout)
	if l.IdleRelease != 0 && (l.IdleRelease < Duration(100*time.Millisecond) || l.IdleRelease > Duration(time.Hour)) {
		v.add("limits.idle_release", "must be 0 (never) or between 100ms and 1h (got %s)", l.IdleRelease)
	}

	c.validateChannelstream(v)
	c.validateDashboard(v)
	c.validateResources(v)
	c.validateDFWebsockets(v) // dfws.go
	c.validateWires(v)        // wires.go: after each wire's own checks, the paths they claim

	v.channelOptions("channels.default", c.Channels.Default)
	seenNS := map[string]bool{}
	for _, ns := range c.Channels.Namespaces {
		key := joinKey("channels.namespaces", ns.Name)
		if !namespaceNameRE.MatchString(ns.Name) {
			v.add(key, "namespace name must match %s", namespaceNameRE)
		}
		if seenNS[ns.Name] {
			v.add(key, "duplicate namespace")
		}
		seenNS[ns.Name] = true
		v.channelOptions(key, ns.ChannelOptions)
	}

	queues := map[string]bool{DefaultQueue: true}
	seenQ := map[string]bool{}
	for _, q := range c.Queues {
		key := joinKey("queues", q.Name)
		if !entryNameRE.MatchString(q.Name) {
			v.add(key, "queue name must match %s", entryNameRE)
		}
		if seenQ[q.Name] {
			v.add(key, "duplicate queue")
		}
		seenQ[q.Name] = true
		queues[q.Name] = true
		if q.Concurrency < 1 {
			v.add(key+".concurrency", "must be at least 1 (got %d)", q.Concurrency)
		}
		if q.MaxAttempts < 1 || q.MaxAttempts > 1000 {
			v.add(key+".max_attempts", "must be from 1 to 1000 (got %d)", q.MaxAttempts)
		}
		v.positive(key+".backoff", q.Backoff)
		if q.MaxBackoff < q.Backoff {
			v.add(key+".max_backoff", "must be at least %s.backoff (%s) (got %s)", key, q.Backoff, q.MaxBackoff)
		}
		v.positive(key+".timeout", q.Timeout)
	}
	c.validateSignals(v, queues)
	return v.errs
}

// listen checks a host:port address.
func (v *validator) listen(key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		msg := err.Error()
		if ae, ok := err.(*net.AddrError); ok {
			msg = ae.Err
		}
		v.add(key, "must be host:port, like 127.0.0.1:8000 or :8000 (got %q: %s)", addr, msg)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(key, "port must be a number from 0 to 65535 (got %q)", port)
	}
}

// driverURL checks the url of a store or broker: required with one of the
// given schemes for the drivers in schemes, empty for the others. The URL
// may hold a password, so it is never shown.
func (v *validator) driverURL(section, driver, u string, schemes map[string][]string) {
	key, at := section+".url", section+".driver"
	prefixes, needs := schemes[driver]
	switch {
	case !needs && u != "":
		v.addAt(key, at, "must be empty for driver %s", driver)
	case needs && u == "":
		v.addAt(key, at, "is required for driver %s (a %s URL)", driver, strings.Join(prefixes, " or "))
	case needs:
		ok := false
		for _, p := range prefixes {
			if strings.HasPrefix(u, p) {
				ok = true
			}
		}
		if _, err := url.Parse(u); !ok || err != nil {
			v.addAt(key, at, "must be a URL starting with %s (value not shown)", strings.Join(prefixes, " or "))
		}
	}
}

func (c *Config) validateAuth(v *validator) {
	j := c.Auth.JWT
	if j.HMACSecret != "" && j.PublicKeyFile != "" {
		v.add("auth.jwt.hmac_secret", "cannot be set together with auth.jwt.public_key_file: they are mutually exclusive")
	}
	if j.HMACSecret != "" && len(j.HMACSecret) < 16 {
		v.add("auth.jwt.hmac_secret", "must be at least 16 bytes long (got %d)", len(j.HMACSecret))
	}
	if j.PublicKeyFile != "" {
		if fi, err := os.Stat(j.PublicKeyFile); err != nil {
			v.add("auth.jwt.public_key_file", "cannot read %q: %v", j.PublicKeyFile, unwrapPath(err))
		} else if fi.IsDir() {
			v.add("auth.jwt.public_key_file", "%q is a directory, not a file", j.PublicKeyFile)
		} else if f, err := os.Open(j.PublicKeyFile); err != nil {
			v.add("auth.jwt.public_key_file", "cannot read %q: %v", j.PublicKeyFile, unwrapPath(err))
		} else {
			f.Close()
		}
	}
	if !claimNameRE.MatchString(j.UserClaim) {
		v.add("auth.jwt.user_claim", "must be a claim name such as sub or user_id (got %q)", j.UserClaim)
	} else if reservedClaims[j.UserClaim] {
		v.add("auth.jwt.user_claim", "%q is a claim Switchyard reads for another purpose; name the claim that holds the user id, such as sub or user_id", j.UserClaim)
	}
	if name := c.Auth.CookieName; name != "" && !isToken(name) {
		v.add("auth.cookie_name", "must be a valid cookie name: letters, digits and !#$%%&'*+-.^_`|~ (got %q)", name)
	}
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// isToken reports whether s is an RFC 9110 token (valid cookie name).
func isToken(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return s != ""
}

// checkOrigin returns "" when o is a valid websocket.allowed_origins entry.
func checkOrigin(o string) string {
	const want = `must be "*", an origin like https://app.example.com or a host pattern like *.example.com`
	if o == "*" {
		return ""
	}
	if strings.Contains(o, "://") {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" ||
			!validHost(u.Host, false) {
			return want
		}
		if u.Path == "/" {
			return "must not end with \"/\": an origin has no path"
		}
		return ""
	}
	if !validHost(o, true) {
		return want
	}
	return ""
}

// validHost checks host[:port], allowing a leading "*." when pattern.
func validHost(h string, pattern bool) bool {
	if host, port, err := net.SplitHostPort(h); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return false
		}
		h = host
	}
	if pattern {
		h = strings.TrimPrefix(h, "*.")
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func (c *Config) validateChannelstream(v *validator) {
	cs := c.Channelstream
	if cs.Enabled && cs.Secret == "" {
		v.addAt("channelstream.secret", "channelstream.enabled", "is required when channelstream.enabled is true")
	}
	if cs.Enabled && cs.AdminUser == "" {
		v.addAt("channelstream.admin_user", "channelstream.enabled", "must not be empty when channelstream.enabled is true")
	}
	if !strings.HasPrefix(cs.Prefix, "/") {
		v.add("channelstream.prefix", "must start with \"/\" (got %q)", cs.Prefix)
	}
	for i, s := range cs.AllowPostingFrom {
		_, perr := netip.ParsePrefix(s)
		_, aerr := netip.ParseAddr(s)
		if perr != nil && aerr != nil {
			v.add(fmt.Sprintf("channelstream.allow_posting_from[%d]", i), "must be an IP address or a CIDR prefix like 10.0.0.0/8 (got %q)", s)
		}
	}
	v.positive("channelstream.connection_gc", cs.ConnectionGC)
	v.positive("channelstream.heartbeat_interval", cs.HeartbeatInterval)
	v.positive("channelstream.user_gc", cs.UserGC)
	v.nonNegative("channelstream.channel_gc", cs.ChannelGC)
	if !namespaceNameRE.MatchString(cs.Namespace) {
		v.add("channelstream.namespace", "must match %s (got %q)", namespaceNameRE, cs.Namespace)
	}
	v.oneOf("channelstream.unknown_fields", cs.UnknownFields, ChannelstreamUnknownReject, ChannelstreamUnknownIgnore)
	if cs.HistoryLimit < 1 || cs.HistoryLimit > 100000 {
		v.add("channelstream.history_limit", "must be between 1 and 100000 (got %d)", cs.HistoryLimit)
	}
	v.nonNegative("channelstream.max_clock_skew", cs.MaxClockSkew)
	if cs.SignInAttempts < 1 {
		v.add("channelstream.sign_in_attempts", "must be at least 1 (got %d)", cs.SignInAttempts)
	}
	if cs.SignInAttemptsGlobal < 1 {
		v.add("channelstream.sign_in_attempts_global", "must be at least 1 (got %d)", cs.SignInAttemptsGlobal)
	}
	v.positive("channelstream.sign_in_lockout", cs.SignInLockout)
	for i, o := range cs.AllowCORS {
		if o == "" {
			v.add(fmt.Sprintf("channelstream.allow_cors[%d]", i), "must not be empty")
		}
	}
}

func (v *validator) channelOptions(key string, o ChannelOptions) {
	if o.HistorySize < 0 {
		v.add(key+".history_size", "must not be negative (got %d)", o.HistorySize)
	}
	v.nonNegative(key+".history_ttl", o.HistoryTTL)
	if o.HistorySize > 0 && o.HistoryTTL == 0 {
		v.addAt(key+".history_ttl", key+".history_size", "must be greater than 0 when history_size is set, or the history would be kept forever: set how long kept messages live, e.g. history_ttl: 1h")
	}
	if o.Recover && (o.HistorySize <= 0 || o.HistoryTTL <= 0) {
		v.add(key+".recover", "requires history_size > 0 and history_ttl > 0 (got history_size %d, history_ttl %s)", o.HistorySize, o.HistoryTTL)
	}
	p := o.Permissions
	for _, e := range []struct{ name, val string }{
		{"subscribe", p.Subscribe}, {"publish", p.Publish}, {"presence", p.Presence}, {"history", p.History},
	} {
		v.oneOf(key+".permissions."+e.name, e.val, AccessAnyone, AccessAuthenticated, AccessNone)
	}
}

func (c *Config) validateResources(v *validator) {
	seen := map[string]bool{}
	for ri := range c.Resources {
		r := &c.Resources[ri]
		key := joinKey("resources", r.Name)
		if !resourceNameRE.MatchString(r.Name) {
			v.add(key, "resource name must match %s", resourceNameRE)
		}
		if seen[r.Name] {
			v.add(key, "duplicate resource")
		}
		seen[r.Name] = true
		if len(r.Fields) == 0 && !r.External() {
			v.add(key+".fields", "at least one field is required (or name an existing table with table:)")
		}
		c.validateTable(v, key, r)
		fields := map[string]*Field{}
		for fi := range r.Fields {
			f := &r.Fields[fi]
			fkey := key + ".fields." + f.Name
			if !resourceNameRE.MatchString(f.Name) {
				v.add(fkey, "field name must match %s", resourceNameRE)
			}
			if fields[f.Name] != nil {
				v.add(fkey, "duplicate field")
			}
			fields[f.Name] = f
			if r.External() && f.Type == "" {
				continue // the type comes from the catalog; checked at start
			}
			v.field(fkey, f)
		}
		if !resourceNameRE.MatchString(r.PKField) {
			v.add(key+".pk_field", "must match %s (got %q)", resourceNameRE, r.PKField)
		} else if fields[r.PKField] != nil {
			v.addAt(key+".pk_field", key+".fields."+r.PKField, "%q collides with the declared field of that name; the primary key is implicit", r.PKField)
		}
		for i, s := range r.Search {
			skey := fmt.Sprintf("%s.search[%d]", key, i)
			switch f := fields[s]; {
			case f == nil && r.External():
				// A column of the table: checked at start.
			case f == nil:
				v.add(skey, "%q is not a declared field", s)
			case f.Type == "" && r.External():
			case f.Type != FieldString && f.Type != FieldText:
				v.add(skey, "field %q has type %s; only string and text fields can be searched", s, f.Type)
			}
		}
		for i, o := range r.Ordering {
			name := strings.TrimPrefix(o, "-")
			if fields[name] == nil && name != r.PKField && !r.External() {
				v.add(fmt.Sprintf("%s.ordering[%d]", key, i), "%q is not a declared field or the pk_field (%s); write NAME or -NAME", name, r.PKField)
			}
		}
		if r.PageSize < 1 || r.PageSize > 1000 {
			v.add(key+".page_size", "must be between 1 and 1000 (got %d)", r.PageSize)
		}
		p := r.Permissions
		for _, e := range []struct{ name, val string }{
			{"read", p.Read}, {"create", p.Create}, {"update", p.Update}, {"delete", p.Delete},
		} {
			pkey := key + ".permissions." + e.name
			if owner, ok := OwnerField(e.val); ok {
				switch f := fields[owner]; {
				case f == nil && r.External():
					// A column of the table: checked at start.
				case f == nil:
					v.add(pkey, "owner:%s names no declared field", owner)
				case f.Type == "" && r.External():
				case f.Type != FieldString && f.Type != FieldInt:
					v.add(pkey, "owner:%s must name a string or int field holding the user id (it is %s)", owner, f.Type)
				}
				continue
			}
			if e.val != AccessAnyone && e.val != AccessAuthenticated && e.val != AccessNone {
				v.add(pkey, "must be one of anyone, authenticated, none, owner:<field> (got %q)", e.val)
			}
		}
		c.validateOwnership(v, key, p)
	}
}

// validateOwnership refuses rules that make records nobody can edit: with
// an owner:<field> rule, a record gets its owner from the user who
// creates it, so an anonymous create would make a record without one —
// invisible (read: owner) or frozen (update/delete: owner) for everyone.
func (c *Config) validateOwnership(v *validator, key string, p ResourcePermissions) {
	var owned []string
	for _, e := range []struct{ name, val string }{
		{"read", p.Read}, {"update", p.Update}, {"delete", p.Delete}, {"create", p.Create},
	} {
		if _, ok := OwnerField(e.val); ok {
			owned = append(owned, e.name+": "+e.val)
		}
	}
	if len(owned) == 0 || p.Create != AccessAnyone || !c.Auth.Anonymous {
		return
	}
	v.add(key+".permissions.create", "create: anyone lets anonymous users create records, which would have no owner, so nobody could read or edit them under %s; set create: authenticated (or auth.anonymous: false)", strings.Join(owned, ", "))
}

// field checks the options of one resource field.
func (v *validator) field(key string, f *Field) {
	if !v.oneOf(key+".type", f.Type, FieldString, FieldText, FieldInt, FieldFloat, FieldBool, FieldDatetime, FieldJSON) {
		return
	}
	isString := f.Type == FieldString || f.Type == FieldText
	isNumber := f.Type == FieldInt || f.Type == FieldFloat
	if f.MaxLength != nil {
		switch {
		case !isString:
			v.add(key+".max_length", "only applies to string and text fields (this one is %s)", f.Type)
		case *f.MaxLength <= 0:
			v.add(key+".max_length", "must be greater than 0 (got %d)", *f.MaxLength)
		}
	}
	for _, b := range []struct {
		name string
		val  *float64
	}{{"min", f.Min}, {"max", f.Max}} {
		switch {
		case b.val == nil:
		case !isNumber:
			v.add(key+"."+b.name, "only applies to int and float fields (this one is %s)", f.Type)
		case math.IsNaN(*b.val) || math.IsInf(*b.val, 0):
			v.add(key+"."+b.name, "must be a finite number")
		case f.Type == FieldInt && *b.val != math.Trunc(*b.val):
			v.add(key+"."+b.name, "must be an integer for an int field (got %v)", *b.val)
		}
	}
	if isNumber && f.Min != nil && f.Max != nil && *f.Min > *f.Max {
		v.add(key+".min", "must not be greater than max (%v > %v)", *f.Min, *f.Max)
	}
	if f.Default != nil {
		v.fieldDefault(key+".default", f)
	}
}

// fieldDefault checks that a field's default matches its type and bounds.
func (v *validator) fieldDefault(key string, f *Field) {
	bad := func() { v.add(key, "must match the field's type %s (got %s)", f.Type, describeValue(f.Default)) }
	switch f.Type {
	case FieldString, FieldText:
		s, ok := f.Default.(string)
		if !ok {
			bad()
			return
		}
		if f.MaxLength != nil && *f.MaxLength > 0 && utf8.RuneCountInString(s) > *f.MaxLength {
			v.add(key, "is longer than max_length (%d)", *f.MaxLength)
		}
	case FieldInt, FieldFloat:
		n, ok := asNumber(f.Default, f.Type == FieldInt)
		if !ok {
			bad()
			return
		}
		if f.Min != nil && n < *f.Min || f.Max != nil && n > *f.Max {
			v.add(key, "is outside min..max (got %v)", n)
		}
	case FieldBool:
		if _, ok := f.Default.(bool); !ok {
			bad()
		}
	case FieldDatetime:
		switch d := f.Default.(type) {
		case time.Time:
		case string:
			if _, err := time.Parse(time.RFC3339Nano, d); err != nil {
				v.add(key, "must be an RFC 3339 date-time like 2024-01-02T15:04:05Z for a datetime field (got %q)", d)
			}
		default:
			bad()
		}
	case FieldJSON:
		if _, err := json.Marshal(f.Default); err != nil {
			v.add(key, "must be representable as JSON (mapping keys must be strings)")
		}
	}
}

// asNumber converts a default value to float64; integer only if intOnly.
func asNumber(x any, intOnly bool) (float64, bool) {
	switch n := x.(type) {
	case int:
		return float64(n), true
	case int8:
		return float64(n), true
	case int16:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint:
		return float64(n), true
	case uint8:
		return float64(n), true
	case uint16:
		return float64(n), true
	case uint32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float32:
		return float64(n), !intOnly && !math.IsNaN(float64(n)) && !math.IsInf(float64(n), 0)
	case float64:
		return n, !intOnly && !math.IsNaN(n) && !math.IsInf(n, 0)
	}
	return 0, false
}

// describeValue renders a decoded default value for an error message.
func describeValue(x any) string {
	switch x := x.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("bool %v", x)
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	case int, int64, uint64:
		return fmt.Sprintf("integer %v", x)
	case float64:
		return fmt.Sprintf("number %v", x)
	}
	return fmt.Sprintf("%T", x)
}

// validateSignals checks the signals section; queues are the declared
// queue names.
func (c *Config) validateSignals(v *validator, queues map[string]bool) {
	sg := c.Signals
	if sg.MaxKwargsBytes < 1 {
		v.add("signals.max_kwargs_bytes", "must be at least 1B (got %s)", sg.MaxKwargsBytes)
	}
	if sg.CallsPerSecond < 0 {
		v.add("signals.calls_per_second", "must not be negative (got %d)", sg.CallsPerSecond)
	}
	v.positive("signals.window_ttl", sg.WindowTTL)
	if sg.WebhookIdleConns < 0 || sg.WebhookIdleConns > 10000 {
		v.add("signals.webhook_idle_conns", "must be 0 to 10000; 0 is the default, 64 (got %d)", sg.WebhookIdleConns)
	}
	webhooks := false
	seen := map[string]bool{}
	for i := range sg.Declared {
		s := &sg.Declared[i]
		key := joinKey("signals", s.Name)
		if !signalNameRE.MatchString(s.Name) || len(s.Name) > 200 {
			v.add(key, "signal name must match %s (at most 200 characters)", signalNameRE)
		}
		if seen[s.Name] {
			v.add(key, "duplicate signal")
		}
		seen[s.Name] = true
		if !queues[s.Queue] {
			v.add(key+".queue", "must name a queue declared under queues, or %q (got %q)", DefaultQueue, s.Queue)
		}
		v.signalAccess(key+".allowed", s.Allowed)
		if s.Webhook == "" {
			v.add(key+".webhook", "is required: a signal declared in the file is handled by a webhook (Go handlers are registered in code)")
		} else if u, err := url.Parse(s.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(key+".webhook", "must be an http:// or https:// URL (got %q)", s.Webhook)
		} else {
			webhooks = true
		}
		v.oneOf(key+".extra_args", s.ExtraArgs, SignalExtraReject, SignalExtraAccept)
		for j := range s.Args {
			v.signalArg(joinKey(key+".args", s.Args[j].Name), &s.Args[j])
		}
	}
	if webhooks && len(sg.WebhookSecret) < 16 {
		v.add("signals.webhook_secret", "is required (at least 16 bytes) when a signal has a webhook: webhook requests are signed with it")
	}
}

// signalAccess checks a signal's allowed value.
func (v *validator) signalAccess(key, a string) {
	if name, ok := strings.CutPrefix(a, AccessClaimPrefix); ok {
		if name == "" {
			v.add(key, "claim: must name a claim, like claim:is_staff")
		}
		return
	}
	if p, ok := strings.CutPrefix(a, AccessPermPrefix); ok {
		if p == "" {
			v.add(key, "perm: must name a permission, like perm:app.change_thing")
		}
		return
	}
	v.oneOf(key, a, AccessAnyone, AccessAuthenticated, AccessAnonymous, AccessServerSide, AccessNone,
		AccessClaimPrefix+"<claim>", AccessPermPrefix+"<permission>")
}

// signalArg checks one declared argument.
func (v *validator) signalArg(key string, a *SignalArg) {
	if !signalNameRE.MatchString(a.Name) || strings.Contains(a.Name, ".") {
		v.add(key, "argument name must be an identifier")
	}
	if a.Type != "" {
		v.oneOf(key+".type", a.Type, ArgString, ArgInt, ArgFloat, ArgBool, ArgObject, ArgArray, ArgForm)
	}
	numeric := a.Type == "" || a.Type == ArgInt || a.Type == ArgFloat
	if (a.Min != nil || a.Max != nil) && !numeric {
		v.add(key, "min and max apply to int and float arguments (type is %s)", a.Type)
	}
	if a.Min != nil && a.Max != nil && *a.Min > *a.Max {
		v.add(key+".max", "must be at least min (%v) (got %v)", *a.Min, *a.Max)
	}
	if a.MaxLength != nil {
		if *a.MaxLength < 0 {
			v.add(key+".max_length", "must not be negative (got %d)", *a.MaxLength)
		}
		if a.Type != "" && a.Type != ArgString && a.Type != ArgArray && a.Type != ArgForm {
			v.add(key+".max_length", "applies to string, array and form arguments (type is %s)", a.Type)
		}
	}
	if a.Pattern != "" {
		if a.Type != "" && a.Type != ArgString {
			v.add(key+".pattern", "applies to string arguments (type is %s)", a.Type)
		}
		if _, err := regexp.Compile(a.Pattern); err != nil {
			v.add(key+".pattern", "is not a valid regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
	}
}

// validateTable checks the keys of a resource on an existing table; what
// the table holds is checked at start, against the catalog.
func (c *Config) validateTable(v *validator, key string, r *Resource) {
	if r.Capture != "" && !v.oneOf(key+".capture", r.Capture, CaptureNone, CaptureTrigger) {
		return
	}
	if r.Table == "" {
		if r.Capture == CaptureTrigger && c.Store.Driver != StorePostgres {
			v.addAt(key+".capture", "store.driver", "capture: trigger needs store.driver: postgres (the trigger writes into PostgreSQL's change log)")
		}
		return
	}
	if !tableNameRE.MatchString(r.Table) {
		v.add(key+".table", "must be a table name, optionally schema-qualified (%s), got %q", tableNameRE, r.Table)
	}
	if c.Store.Driver != StorePostgres {
		v.addAt(key+".table", "store.driver", "an existing table needs store.driver: postgres (it is %s)", c.Store.Driver)
	}
}
