package channelstream

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/hub"
)

// The operations of the signed API. Each validates its body (collecting
// marshmallow's errors), then changes the state under s.mu, and returns
// the response body or the error dictionary for a 422.

// infoOpts is Channelstream's InfoResolution.
type infoOpts struct {
	channels    []string
	exclude     []string
	history     bool
	users       bool
	publicState bool
}

func readInfo(r *reader, strict bool) infoOpts {
	o := infoOpts{history: true, users: true}
	o.history = r.boolean("include_history", true)
	o.users = r.boolean("include_users", true)
	o.channels, _ = r.strList("channels", false, true, 1, 256, 0)
	o.exclude, _ = r.strList("exclude_channels", false, false, 1, 256, 0)
	r.boolean("include_connections", false) // accepted, no effect (as in Channelstream)
	o.publicState = r.boolean("return_public_state", false)
	r.unknown(strict)
	return o
}

// info is {"channels": {name: ChannelInfo}, "users": [{"user", "state"}]}
// for the named channels (all when names is nil).
func (s *Server) infoLocked(names []string, all bool, o infoOpts) map[string]any {
	chans := map[string]channelInfo{}
	userSet := map[string]bool{}
	var list []*channel
	if all {
		for _, ch := range s.channels {
			list = append(list, ch)
		}
	} else {
		for _, n := range names {
			if ch := s.channels[n]; ch != nil {
				list = append(list, ch)
			}
		}
	}
	for _, ch := range list {
		if contains(o.exclude, ch.name) {
			continue
		}
		ci := ch.info(o.history, o.users)
		chans[ch.name] = ci
		for _, u := range ci.Users {
			userSet[u] = true
		}
	}
	users := make([]string, 0, len(userSet))
	for u := range userSet {
		users = append(users, u)
	}
	sort.Strings(users)
	out := make([]object, 0, len(users))
	for _, name := range users {
		u := s.users[name]
		if u == nil {
			continue
		}
		st := u.state.clone()
		if o.publicState {
			st = u.publicState()
		}
		out = append(out, object{{"user", raw(name)}, {"state", raw(st)}})
	}
	return map[string]any{"channels": chans, "users": out}
}

// stateMap reads a user state field: {key: scalar}.
func stateMap(r *reader, name string) (map[string]json.RawMessage, []string) {
	m, order, _ := r.eachValue(name, stateValue)
	return m, order
}

// configMap reads channel_configs: {channel: ChannelConfig}.
func configMap(r *reader, strict bool) map[string]settings {
	m, _, ok := r.eachValue("channel_configs", func(v json.RawMessage) any {
		if _, errs := readSettings(v, strict); len(errs) > 0 {
			return errs
		}
		return nil
	})
	out := map[string]settings{}
	if ok {
		for k, v := range m {
			out[k], _ = readSettings(v, strict)
		}
	}
	return out
}

// connect is POST /connect.
func (s *Server) connect(ctx context.Context, body json.RawMessage) (any, fieldErrors) {
	strict := s.cfg.StrictFields
	r, ok := newReader(body)
	if !ok {
		return nil, fieldErrors{"_schema": []string{msgInputType}}
	}
	username, _ := r.str("username", true, false, 1, 512)
	connID, hasID := r.uuid("conn_id", false)
	channels, _ := r.strList("channels", false, false, 1, 256, 0)
	configs := configMap(r, strict)
	fresh, freshOrder := stateMap(r, "fresh_user_state")
	upd, updOrder := stateMap(r, "user_state")
	publicKeys, _ := r.strList("state_public_keys", false, false, 1, 256, 0)
	var info infoOpts
	if !r.nested("info", false, func(sub *reader) { info = readInfo(sub, strict) }) {
		info = infoOpts{history: true, users: true}
	}
	r.unknown(strict)
	s.checkChannelNames(r, "channels", channels)
	if len(r.errs) > 0 {
		return nil, r.errs
	}
	if !hasID {
		connID = newUUID()
	}
	if publicKeys == nil {
		publicKeys = []string{} // always replaced, as in Channelstream
	}
	if channels == nil {
		channels = []string{} // the reply lists them: [] for none, never null
	}
	sort.Strings(channels)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	u := s.users[username]
	if u == nil {
		u = &user{name: username, uuid: newUUID(), state: object{}}
		u.mergeState(fresh, freshOrder)
		s.users[username] = u
	}
	u.publicKeys = publicKeys
	u.mergeState(upd, updOrder)
	u.lastActive = now
	c := s.conns[connID]
	switch {
	case c != nil && c.user != u:
		return nil, fieldErrors{"conn_id": []string{"Connection is in use by another user"}}
	case c == nil:
		c = &conn{id: connID, srv: s, user: u, channels: map[*channel]struct{}{}}
		c.hs = s.cfg.Hub.Connect(connID, hub.Principal{User: username, Protocol: "channelstream", Transport: "websocket or long-poll"}, c, s.enc)
		c.hs.SetValue(c)
		s.conns[connID] = c
		u.conns = append(u.conns, c)
	}
	c.lastActive = now
	for _, name := range channels {
		s.joinNamedLocked(ctx, c, name, configs)
	}
	return map[string]any{
		"conn_id":       connID,
		"username":      username,
		"state":         u.state.clone(),
		"public_state":  u.publicState(),
		"channels":      channels,
		"channels_info": s.infoLocked(channels, false, info),
	}, nil
}

// joinNamedLocked adds a connection to a channel, creating it with its
// configuration from configs (defaults when absent) if it does not exist;
// it reports whether the connection was not in it yet.
func (s *Server) joinNamedLocked(ctx context.Context, c *conn, name string, configs map[string]settings) bool {
	ch := s.channels[name]
	if ch == nil {
		st, ok := configs[name]
		if !ok {
			st = defaultSettings()
		}
		ch = s.newChannel(name, st)
	}
	ok, err := s.joinLocked(ctx, c, ch)
	switch {
	case switchyard.ErrorCode(err) == switchyard.CodeRateLimited:
		// Over limits.max_subscriptions: the channel is left out of the
		// answer's channels.
		s.log.Warn("channelstream: subscribe refused", "conn", c.id, "channel", ch.hub, "err", err)
	case err != nil:
		s.log.Error("channelstream: subscribe failed", "channel", ch.hub, "err", err)
	}
	return ok
}

// checkChannelNames refuses names whose hub channel would be too long.
func (s *Server) checkChannelNames(r *reader, field string, names []string) {
	sub := fieldErrors{}
	for i, n := range names {
		if len(s.hubChannel(n)) > hub.MaxChannelLength {
			sub.add(itoa(i), "Too long once mapped to a hub channel.")
		}
	}
	r.errs.nest(field, sub)
}

// subscription is the body of /subscribe and /unsubscribe.
type subscription struct {
	connID   string
	channels []string
	configs  map[string]settings
	info     infoOpts
}

func (s *Server) readSubscription(body json.RawMessage, queryConnID *string) (*reader, subscription) {
	strict := s.cfg.StrictFields
	var sub subscription
	r, ok := newReader(body)
	if !ok {
		r.errs["_schema"] = []string{msgInputType}
		return r, sub
	}
	if _, ok := r.fields["conn_id"]; !ok {
		// The conn_id query parameter stands in for a missing field.
		if queryConnID != nil {
			r.fields["conn_id"] = raw(*queryConnID)
		} else {
			r.fields["conn_id"] = json.RawMessage("null")
		}
	}
	sub.connID, _ = r.uuid("conn_id", true)
	sub.channels, _ = r.strList("channels", true, false, 1, 256, 1)
	sub.configs = configMap(r, strict)
	sub.info = infoOpts{history: true, users: true}
	r.nested("info", false, func(x *reader) { sub.info = readInfo(x, strict) })
	r.unknown(strict)
	s.checkChannelNames(r, "channels", sub.channels)
	return r, sub
}

// connLocked checks a validated conn_id: "Unknown connection" when none.
func (s *Server) connLocked(r *reader, id string) *conn {
	if id == "" {
		return nil
	}
	c := s.conns[id]
	if c == nil {
		r.errs.add("conn_id", s.unknownConn(context.Background()))
	}
	return c
}

// subscribe is POST /subscribe.
func (s *Server) subscribe(ctx context.Context, body json.RawMessage, queryConnID *string) (any, fieldErrors) {
	r, sub := s.readSubscription(body, queryConnID)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.connLocked(r, sub.connID)
	if len(r.errs) > 0 {
		return nil, r.errs
	}
	joined := []string{}
	for _, name := range sub.channels {
		if s.joinNamedLocked(ctx, c, name, sub.configs) {
			joined = append(joined, name)
		}
	}
	return s.membershipLocked(c, sub.info, "subscribed_to", joined), nil
}

// membershipLocked is the answer of /subscribe and /unsubscribe: the
// connection's channels and their info, and (under key, sorted) those the
// call changed.
func (s *Server) membershipLocked(c *conn, info infoOpts, key string, changed []string) map[string]any {
	sort.Strings(changed)
	names := c.channelNames()
	return map[string]any{"channels": names, "channels_info": s.infoLocked(names, false, info), key: changed}
}

// unsubscribe is POST /unsubscribe.
func (s *Server) unsubscribe(body json.RawMessage, queryConnID *string) (any, fieldErrors) {
	r, sub := s.readSubscription(body, queryConnID)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.connLocked(r, sub.connID)
	if len(r.errs) > 0 {
		return nil, r.errs
	}
	left := []string{}
	for _, name := range sub.channels {
		if ch := s.channels[name]; ch != nil && s.leaveLocked(c, ch) {
			left = append(left, name)
		}
	}
	return s.membershipLocked(c, sub.info, "unsubscribed_from", left), nil
}

// userState is POST /user_state.
func (s *Server) userState(body json.RawMessage) (any, fieldErrors) {
	strict := s.cfg.StrictFields
	r, ok := newReader(body)
	if !ok {
		return nil, fieldErrors{"_schema": []string{msgInputType}}
	}
	name, hasName := r.str("user", true, false, 1, 512)
	upd, order := stateMap(r, "user_state")
	keys, setKeys := r.strList("state_public_keys", false, true, 1, 256, 0)
	r.unknown(strict)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[name]
	if hasName && u == nil {
		r.errs.add("user", msgUnknownUser)
	}
	if len(r.errs) > 0 {
		return nil, r.errs
	}
	if setKeys {
		u.publicKeys = keys
	}
	changed := u.mergeState(upd, order)
	u.lastActive = s.now()
	if len(changed) > 0 {
		for _, ch := range s.userChannelsLocked(u) {
			if ch.settings.NotifyState {
				s.stateChangeLocked(ch, u, changed)
			}
		}
	}
	return map[string]any{"user_state": u.state.clone(), "changed_state": changed, "public_keys": u.publicKeys}, nil
}

// userChannelsLocked returns the channels where the user has a
// connection, by name.
func (s *Server) userChannelsLocked(u *user) []*channel {
	set := map[*channel]bool{}
	for _, c := range u.conns {
		for ch := range c.channels {
			set[ch] = true
		}
	}
	out := make([]*channel, 0, len(set))
	for ch := range set {
		out = append(out, ch)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// delivery is the routing part of a /message item.
type delivery struct {
	channel    *string
	pmUsers    []string
	exclude    []string
	noHistory  bool
	hasChannel bool
}

func readDelivery(r *reader) delivery {
	var d delivery
	d.pmUsers, _ = r.strList("pm_users", false, false, 1, 512, 0)
	d.exclude, _ = r.strList("exclude_users", false, false, 1, 512, 0)
	if ch, ok := r.str("channel", false, true, 1, 256); ok {
		d.channel, d.hasChannel = &ch, true
	}
	d.noHistory = r.boolean("no_history", false)
	if d.pmUsers == nil {
		d.pmUsers = []string{}
	}
	if d.exclude == nil {
		d.exclude = []string{}
	}
	return d
}

func (d delivery) members() object {
	var ch json.RawMessage = json.RawMessage("null")
	if d.channel != nil {
		ch = raw(*d.channel)
	}
	return object{
		{"channel", ch},
		{"pm_users", raw(d.pmUsers)},
		{"exclude_users", raw(d.exclude)},
		{"no_history", raw(d.noHistory)},
	}
}

var deliveryKeys = []string{"pm_users", "exclude_users", "no_history"}

// items reads a /message body: a JSON array of objects, each read by fn.
// Errors are keyed by the item's index.
func items(body json.RawMessage, fn func(i int, r *reader)) fieldErrors {
	var list []json.RawMessage
	if kind(body) != '[' || json.Unmarshal(body, &list) != nil {
		return fieldErrors{"_schema": []string{msgInputType}}
	}
	errs := fieldErrors{}
	for i, v := range list {
		r, ok := newReader(v)
		if !ok {
			errs.nest(itoa(i), fieldErrors{"_schema": []string{msgInputType}})
			continue
		}
		fn(i, r)
		errs.nest(itoa(i), r.errs)
	}
	return errs
}

// message is POST /message: publish.
func (s *Server) message(body json.RawMessage) (any, fieldErrors) {
	type item struct {
		d   delivery
		obj object // the item after defaults, as the response shows it
	}
	var list []item
	errs := items(body, func(i int, r *reader) {
		d := readDelivery(r)
		id, ok := r.uuid("uuid", false)
		if !ok {
			id = newUUID()
		}
		ts, ok := r.datetime("timestamp")
		if !ok {
			ts = isoNaive(s.now())
		}
		sender, _ := r.str("user", true, false, 1, 512)
		msg, hasMsg := r.dict("message")
		extra := r.unknown(false)
		if !s.cfg.StrictFields {
			extra = nil // Channelstream 0.7.1 drops unknown keys
		}
		obj := d.members()
		obj = append(obj, member{"uuid", raw(id)}, member{"timestamp", raw(ts)}, member{"user", raw(sender)})
		if hasMsg {
			obj = append(obj, member{"message", msg})
		}
		obj = append(obj, member{"edited", json.RawMessage("null")})
		obj = append(obj, extra...)
		list = append(list, item{d, obj})
	})
	if len(errs) > 0 {
		return nil, errs
	}
	out := []object{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range list {
		if !it.d.hasChannel && len(it.d.pmUsers) == 0 {
			continue // nowhere to go: dropped, as in Channelstream
		}
		out = append(out, it.obj)
		s.stats.unique++
		stored := it.obj.clone()
		stored.set("type", raw("message"))
		stored.set("catchup", raw(false))
		deliver := stored.without(deliveryKeys...).first("catchup")
		s.stats.messages += int64(s.routeLocked(it.d, deliver, func(ch *channel) {
			if ch.settings.StoreHistory && !it.d.noHistory {
				s.storeLocked(ch, stored)
			}
		}))
	}
	return out, nil
}

// routeLocked sends a message where a /message item says: to its
// channel, after change (if any) has updated the channel's state, with
// pm_users and exclude_users as the audience; without a channel, to every
// connection of the pm_users. A channel that does not exist gets nothing
// (messages do not create channels). It returns the connections reached.
func (s *Server) routeLocked(d delivery, msg object, change func(*channel)) int {
	if !d.hasChannel {
		return s.sendToUsersLocked(d.pmUsers, msg)
	}
	ch := s.channels[*d.channel]
	if ch == nil {
		return 0
	}
	if change != nil {
		change(ch)
	}
	ch.lastActive = s.now()
	return s.publishLocked(ch, msg, switchyard.Audience{Users: d.pmUsers, ExceptUsers: d.exclude})
}

// stored returns the index of the history entry with a uuid, or -1.
func (ch *channel) stored(id json.RawMessage) int {
	for i, h := range ch.history {
		if v, _ := h.get("uuid"); string(v) == string(id) {
			return i
		}
	}
	return -1
}

// storeLocked appends to a channel's history, trimmed to its size.
func (s *Server) storeLocked(ch *channel, msg object) {
	limit := ch.settings.HistorySize
	if limit == 0 || limit > s.cfg.HistoryLimit {
		limit = s.cfg.HistoryLimit // Channelstream's 0 means unlimited
	}
	ch.history = append(ch.history, msg)
	if n := len(ch.history) - limit; n > 0 {
		ch.history = append([]object(nil), ch.history[n:]...)
	}
}

// editableKeys are the keys an edit changes in a stored message.
var editableKeys = []string{"uuid", "timestamp", "user", "message", "edited"}

// editMessage is PATCH /message.
func (s *Server) editMessage(body json.RawMessage) (any, fieldErrors) {
	type item struct {
		d   delivery
		obj object
	}
	var list []item
	errs := items(body, func(i int, r *reader) {
		d := readDelivery(r)
		id, _ := r.uuid("uuid", true)
		obj := d.members()
		obj = append(obj, member{"uuid", raw(id)})
		if ts, ok := r.datetime("timestamp"); ok {
			obj = append(obj, member{"timestamp", raw(ts)})
		}
		if sender, ok := r.str("user", false, false, 1, 512); ok {
			obj = append(obj, member{"user", raw(sender)})
		}
		if msg, ok := r.dict("message"); ok {
			obj = append(obj, member{"message", msg})
		}
		edited, ok := r.datetime("edited")
		if !ok {
			edited = isoNaive(s.now())
		}
		obj = append(obj, member{"edited", raw(edited)})
		if extra := r.unknown(false); s.cfg.StrictFields {
			obj = append(obj, extra...)
		}
		list = append(list, item{d, obj})
	})
	if len(errs) > 0 {
		return nil, errs
	}
	out := []object{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range list {
		out = append(out, it.obj)
		edit := it.obj.without(deliveryKeys...)
		edit = append(object{{"type", raw("message:edit")}}, edit...)
		id, _ := it.obj.get("uuid")
		s.routeLocked(it.d, edit, func(ch *channel) {
			if i := ch.stored(id); i >= 0 {
				for _, k := range editableKeys {
					if v, ok := it.obj.get(k); ok {
						ch.history[i].set(k, v)
					}
				}
			}
		})
	}
	return out, nil
}

// deleteMessage is DELETE /message.
func (s *Server) deleteMessage(body json.RawMessage) (any, fieldErrors) {
	type item struct {
		d  delivery
		id string
	}
	var list []item
	errs := items(body, func(i int, r *reader) {
		d := readDelivery(r)
		id, _ := r.uuid("uuid", true)
		r.unknown(s.cfg.StrictFields)
		list = append(list, item{d, id})
	})
	if len(errs) > 0 {
		return nil, errs
	}
	out := []object{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range list {
		obj := append(it.d.members(), member{"uuid", raw(it.id)})
		out = append(out, obj)
		del := object{{"type", raw("message:delete")}, {"uuid", raw(it.id)}}
		del = append(del, member{"channel", obj[0].Value})
		s.routeLocked(it.d, del, func(ch *channel) {
			if i := ch.stored(raw(it.id)); i >= 0 {
				ch.history = slices.Delete(ch.history, i, i+1)
			}
		})
	}
	return out, nil
}

// channelConfig is POST /channel_config.
func (s *Server) channelConfig(body json.RawMessage) (any, fieldErrors) {
	var m map[string]json.RawMessage
	if kind(body) != '{' || json.Unmarshal(body, &m) != nil {
		return nil, fieldErrors{"_schema": []string{msgInputType}}
	}
	order := keyOrder(body)
	errs := fieldErrors{}
	configs := map[string]settings{}
	for _, name := range order {
		st, e := readSettings(m[name], s.cfg.StrictFields)
		errs.merge(e) // not keyed by channel, as in Channelstream
		configs[name] = st
		if n := []rune(name); len(n) < 1 || len(n) > 256 || len(s.hubChannel(name)) > hub.MaxChannelLength {
			errs.add(name, "Not a valid channel name.")
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range order {
		if ch := s.channels[name]; ch != nil {
			ch.settings = configs[name]
			if lim := ch.settings.HistorySize; lim > 0 && len(ch.history) > lim {
				ch.history = append([]object(nil), ch.history[len(ch.history)-lim:]...)
			}
		} else {
			s.newChannel(name, configs[name])
		}
	}
	return s.infoLocked(order, false, infoOpts{}), nil
}

// info is /info.
func (s *Server) info(body json.RawMessage) (any, fieldErrors) {
	o := infoOpts{history: true, users: true}
	if len(body) > 0 {
		r, ok := newReader(body)
		if !ok {
			return nil, fieldErrors{"_schema": []string{msgInputType}}
		}
		r.nested("info", true, func(sub *reader) { o = readInfo(sub, s.cfg.StrictFields) })
		r.unknown(s.cfg.StrictFields)
		if len(r.errs) > 0 {
			return nil, r.errs
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.infoLocked(o.channels, len(o.channels) == 0, o), nil
}

// disconnect is /disconnect: true when the connection existed.
func (s *Server) disconnect(id string) bool {
	s.mu.Lock()
	c := s.conns[id]
	s.mu.Unlock()
	if c != nil {
		s.drop(c, 1000, "disconnected")
	}
	return c != nil
}

func itoa(i int) string { return strconv.Itoa(i) }

// pyTimedelta writes a duration as Python's str(timedelta) does.
func pyTimedelta(d time.Duration) string {
	secs := int64(d / time.Second)
	days, secs := secs/86400, secs%86400
	s := fmt.Sprintf("%d:%02d:%02d", secs/3600, secs/60%60, secs%60)
	switch {
	case days == 1:
		s = "1 day, " + s
	case days > 1:
		s = fmt.Sprintf("%d days, %s", days, s)
	}
	return s
}

// admin is the admin.json statistics.
func (s *Server) admin() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	type adminUser struct {
		User        string   `json:"user"`
		UUID        string   `json:"uuid"`
		State       object   `json:"state"`
		Connections []string `json:"connections"`
	}
	users := []adminUser{}
	conns := 0
	for _, u := range s.users {
		if len(u.conns) == 0 {
			continue
		}
		ids := make([]string, 0, len(u.conns))
		for _, c := range u.conns {
			ids = append(ids, c.id)
		}
		conns += len(ids)
		users = append(users, adminUser{u.name, u.uuid, u.publicState(), ids})
	}
	sort.Slice(users, func(i, j int) bool { return users[i].User < users[j].User })
	info := s.infoLocked(nil, true, infoOpts{history: true, users: true})
	up := s.now().Sub(s.started).Truncate(time.Second)
	return map[string]any{
		"remembered_user_count": len(s.users),
		"unique_user_count":     len(users),
		"total_connections":     conns,
		"total_channels":        len(s.channels),
		"total_messages":        s.stats.messages,
		"total_unique_messages": s.stats.unique,
		"channels":              info["channels"],
		"users":                 users,
		"uptime":                pyTimedelta(up),
		"version":               switchyard.Version,
	}
}
