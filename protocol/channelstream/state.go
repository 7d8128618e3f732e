package channelstream

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/switchyardhq/switchyard/hub"
)

// settings is a channel's configuration (Channelstream's ChannelConfig).
type settings struct {
	NotifyPresence                 bool `json:"notify_presence"`
	StoreHistory                   bool `json:"store_history"`
	HistorySize                    int  `json:"history_size"`
	BroadcastPresenceWithUserLists bool `json:"broadcast_presence_with_user_lists"`
	NotifyState                    bool `json:"notify_state"`
	StoreFrames                    bool `json:"store_frames"`
}

func defaultSettings() settings { return settings{HistorySize: 10, StoreFrames: true} }

// readSettings reads a ChannelConfig; omitted keys take their defaults
// (Channelstream resets them on every reconfiguration too).
func readSettings(v json.RawMessage, strict bool) (settings, fieldErrors) {
	r, ok := newReader(v)
	if !ok {
		return settings{}, fieldErrors{"_schema": []string{msgInputType}}
	}
	st := settings{
		NotifyPresence:                 r.boolean("notify_presence", false),
		StoreHistory:                   r.boolean("store_history", false),
		HistorySize:                    r.integer("history_size", 10, 0),
		BroadcastPresenceWithUserLists: r.boolean("broadcast_presence_with_user_lists", false),
		NotifyState:                    r.boolean("notify_state", false),
		StoreFrames:                    r.boolean("store_frames", true),
	}
	r.unknown(strict)
	return st, r.errs
}

// user is a Channelstream user: it outlives its connections (its state
// survives reconnects) until the user GC removes it.
type user struct {
	name       string
	uuid       string
	state      object // in the order keys were first set
	publicKeys []string
	conns      []*conn
	lastActive time.Time
}

func (u *user) publicState() object {
	out := object{}
	for _, m := range u.state {
		if contains(u.publicKeys, m.Key) {
			out = append(out, m)
		}
	}
	return out
}

// changedKey is one entry of changed_state.
type changedKey struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// mergeState sets the keys of upd (in order) and returns those whose value
// changed, compared as Python compares them (1 == 1.0 == true).
func (u *user) mergeState(upd map[string]json.RawMessage, order []string) []changedKey {
	changed := []changedKey{}
	for _, k := range order {
		v := upd[k]
		if old, ok := u.state.get(k); !ok || !pyEqual(old, v) {
			changed = append(changed, changedKey{k, v})
		}
		u.state.set(k, v)
	}
	return changed
}

// pyEqual compares two scalars as Python's == does on their decoded values.
func pyEqual(a, b json.RawMessage) bool {
	num := func(v json.RawMessage) (float64, bool) {
		switch kind(v) {
		case 'b':
			return map[bool]float64{true: 1, false: 0}[bytes.HasPrefix(bytes.TrimSpace(v), []byte("true"))], true
		case '0':
			f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
			return f, err == nil
		}
		return 0, false
	}
	if x, ok := num(a); ok {
		y, ok := num(b)
		return ok && x == y
	}
	ka, kb := kind(a), kind(b)
	if ka != kb {
		return false
	}
	if ka == '"' {
		var x, y string
		json.Unmarshal(a, &x)
		json.Unmarshal(b, &y)
		return x == y
	}
	return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b))
}

// channel is a Channelstream channel and its hub channel.
type channel struct {
	name       string
	hub        string // the hub channel it maps to
	uuid       string
	settings   settings
	history    []object // stored messages, oldest first (HTTP form)
	members    map[string][]*conn
	order      []string // member users in the order they joined
	lastActive time.Time
}

func (ch *channel) numConns() int {
	n := 0
	for _, cs := range ch.members {
		n += len(cs)
	}
	return n
}

func (ch *channel) users() []string {
	out := make([]string, 0, len(ch.members))
	for u := range ch.members {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// channelInfo is ChannelInfo in /info, /connect and friends.
type channelInfo struct {
	UUID             string   `json:"uuid"`
	Name             string   `json:"name"`
	LongName         *string  `json:"long_name"`
	Settings         settings `json:"settings"`
	History          []object `json:"history"`
	LastActive       string   `json:"last_active"`
	TotalConnections int      `json:"total_connections"`
	TotalUsers       int      `json:"total_users"`
	Users            []string `json:"users"`
}

func (ch *channel) info(history, users bool) channelInfo {
	ci := channelInfo{
		UUID:             ch.uuid,
		Name:             ch.name,
		Settings:         ch.settings,
		History:          []object{},
		LastActive:       isoNaive(ch.lastActive),
		TotalConnections: ch.numConns(),
		Users:            []string{},
	}
	if history {
		for _, h := range ch.history {
			ci.History = append(ci.History, h.clone())
		}
	}
	if users {
		ci.Users = ch.users()
		ci.TotalUsers = len(ci.Users) // 0 without users, as Channelstream does
	}
	return ci
}

// conn is one Channelstream connection: a hub session whose transport
// (a WebSocket, a parked long-poll, or nothing between polls) comes and
// goes. Its membership fields are guarded by Server.mu, its transport by
// tmu; Server.mu may be held when tmu is taken, never the reverse.
type conn struct {
	id         string
	srv        *Server
	user       *user
	hs         *hub.Session
	channels   map[*channel]struct{}
	lastActive time.Time
	// joined is len(channels), readable without Server.mu (see
	// Subscriptions).
	joined atomic.Int64

	tport transport
}

// Subscriptions implements hub.SubscriptionCounter: a connection's
// channels count against limits.max_subscriptions (they are the hub's
// silent subscriptions).
func (c *conn) Subscriptions() int { return int(c.joined.Load()) }

func (c *conn) channelNames() []string {
	out := make([]string, 0, len(c.channels))
	for ch := range c.channels {
		out = append(out, ch.name)
	}
	sort.Strings(out)
	return out
}
