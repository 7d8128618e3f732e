package hub

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
	"github.com/switchyardhq/switchyard/config"
)

// MaxChannelLength bounds a channel name in bytes.
const MaxChannelLength = 1024

// options returns the settings of a channel's namespace: the part before
// the first ":" names it; a channel without ":" belongs to the default
// namespace.
func (h *Hub) options(ch string) (config.ChannelOptions, error) {
	if err := validChannel(ch); err != nil {
		return config.ChannelOptions{}, err
	}
	ns, _, ok := strings.Cut(ch, ":")
	if !ok {
		return h.cfg.Channels.Default, nil
	}
	opts, ok := h.ns[ns]
	if !ok {
		return config.ChannelOptions{}, switchyard.Errorf(switchyard.CodeNotFound, "namespace %q is not configured", ns)
	}
	return opts, nil
}

func validChannel(ch string) error {
	switch {
	case ch == "":
		return switchyard.Errorf(switchyard.CodeBadRequest, "channel is required")
	case len(ch) > MaxChannelLength:
		return switchyard.Errorf(switchyard.CodeBadRequest, "channel name over %d bytes", MaxChannelLength)
	case !utf8.ValidString(ch):
		return switchyard.Errorf(switchyard.CodeBadRequest, "channel name is not UTF-8")
	case strings.IndexFunc(ch, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return switchyard.Errorf(switchyard.CodeBadRequest, "channel name contains spaces or control characters")
	}
	return nil
}

// allowed applies an access level to a user ("" is anonymous).
func allowed(level, user string) bool {
	switch level {
	case config.AccessAnyone:
		return true
	case config.AccessAuthenticated:
		return user != ""
	}
	return false
}

// userLimited reports whether a user may use a channel limited with
// "#user1,user2": only the listed users may.
func userLimited(ch, user string) bool {
	i := strings.LastIndexByte(ch, '#')
	if i < 0 {
		return true
	}
	return user != "" && slices.Contains(strings.Split(ch[i+1:], ","), user)
}

// check resolves a channel for a client action and applies its access
// level; s == nil is the server itself, which may do anything.
func (h *Hub) check(s *Session, ch string, level func(config.ChannelPermissions) string, what string) (config.ChannelOptions, error) {
	if s != nil && strings.HasPrefix(ch, "$") {
		return config.ChannelOptions{}, switchyard.Errorf(switchyard.CodeForbidden, "channels starting with $ are reserved for the server")
	}
	opts, err := h.options(ch)
	if err != nil {
		return opts, err
	}
	if s == nil {
		return opts, nil
	}
	if !allowed(level(opts.Permissions), s.user) {
		if s.user == "" && level(opts.Permissions) == config.AccessAuthenticated {
			return opts, switchyard.Errorf(switchyard.CodeForbidden, "%s on %q needs an authenticated user", what, ch)
		}
		return opts, switchyard.Errorf(switchyard.CodeForbidden, "%s on %q is not allowed", what, ch)
	}
	if !userLimited(ch, s.user) {
		return opts, switchyard.Errorf(switchyard.CodeForbidden, "channel %q is limited to other users", ch)
	}
	return opts, nil
}

// SubscribeResult is the answer to a subscribe.
type SubscribeResult struct {
	Channel      string                   `json:"channel"`
	Offset       uint64                   `json:"offset"`
	Epoch        string                   `json:"epoch"`
	Recovered    bool                     `json:"recovered"`
	Publications []switchyard.Publication `json:"publications"`
}

// Subscribe subscribes a session to a channel. With since (the position
// of the last publication the client saw) and a namespace that recovers,
// the publications after it are returned, oldest first, with Recovered
// true; when history no longer covers them Recovered is false and no
// publication is returned, so the client knows to reload its state. The
// reply frame (encodeReply's) is queued before any live publication of the
// channel, and no publication is lost or repeated between the two.
func (h *Hub) Subscribe(ctx context.Context, s *Session, ch string, since *switchyard.StreamPosition, encodeReply func(SubscribeResult) []byte) error {
	opts, err := h.check(s, ch, func(p config.ChannelPermissions) string { return p.Subscribe }, "subscribe")
	if err != nil {
		return err
	}
	if err := s.Admit(1); err != nil {
		return err
	}
	return h.subscribe(ctx, s, ch, opts, since, true, encodeReply)
}

// SubscribeSilent subscribes a session on the server's behalf without
// telling the client (the protocol answers in its own terms, as DCRF's
// subscribe_instance does). No permission applies, and the subscription
// does not count against the limits: the protocol counts its own (see
// SubscriptionCounter and Session.Admit).
func (h *Hub) SubscribeSilent(ctx context.Context, s *Session, ch string) error {
	opts, err := h.options(ch)
	if err != nil {
		return err
	}
	return h.subscribe(ctx, s, ch, opts, nil, false, func(SubscribeResult) []byte { return nil })
}

// SubscribeSilentFrom is SubscribeSilent for a channel of sequenced
// publications (resource events) whose keys' sequences are at floor or
// above from now on: a publication whose predecessor is at or above the
// floor waits for it, even when it is the first one this channel sees
// (see order.go). The floor applies when the channel has no subscriber on
// this process yet.
func (h *Hub) SubscribeSilentFrom(ctx context.Context, s *Session, ch string, floor int64) error {
	opts, err := h.options(ch)
	if err != nil {
		return err
	}
	return h.subscribeAt(ctx, s, ch, opts, nil, false, floor, func(SubscribeResult) []byte { return nil })
}

// SubscribeServer subscribes a session on the server's behalf (the server
// API, a token's channels claim): no permission applies, and the client
// is told with its protocol's EncodeSubscribed frame, queued like a
// subscribe reply.
func (h *Hub) SubscribeServer(ctx context.Context, s *Session, ch string) error {
	opts, err := h.check(nil, ch, nil, "subscribe")
	if err != nil {
		return err
	}
	if err := s.Admit(1); err != nil {
		return err
	}
	return h.subscribe(ctx, s, ch, opts, nil, true, s.enc.EncodeSubscribed)
}

// CheckServerChannel reports whether the server may subscribe sessions to
// a channel: a valid name in a configured namespace (the error says why
// not).
func (h *Hub) CheckServerChannel(ch string) error {
	_, err := h.check(nil, ch, nil, "subscribe")
	return err
}

func (h *Hub) subscribe(ctx context.Context, s *Session, ch string, opts config.ChannelOptions, since *switchyard.StreamPosition, counted bool, encodeReply func(SubscribeResult) []byte) error {
	return h.subscribeAt(ctx, s, ch, opts, since, counted, 0, encodeReply)
}

func (h *Hub) subscribeAt(ctx context.Context, s *Session, ch string, opts config.ChannelOptions, since *switchyard.StreamPosition, counted bool, floor int64, encodeReply func(SubscribeResult) []byte) error {
	sub := &subscription{opts: opts, counted: counted, floor: floor}
	sub.recovering.Store(true)
	if err := h.addSubscriber(ctx, s, ch, sub); err != nil {
		return err
	}
	res := SubscribeResult{Channel: ch, Publications: []switchyard.Publication{}}
	if opts.HistorySize > 0 {
		hopts := broker.HistoryOptions{}
		if since != nil && opts.Recover {
			hopts = broker.HistoryOptions{Since: since, Limit: -1}
		}
		pubs, pos, err := h.cfg.Broker.History(ctx, ch, hopts)
		if err != nil {
			h.removeSubscriber(context.WithoutCancel(ctx), s, ch)
			return err
		}
		res.Offset, res.Epoch = pos.Offset, pos.Epoch
		if since != nil && opts.Recover {
			res.Recovered = recovered(since, pubs, pos)
			if res.Recovered && len(pubs) > 0 {
				res.Publications = forUser(pubs, s.user)
			}
		}
	}
	// Presence before the reply: a client that asks who is here once
	// subscribed finds itself, on every process.
	if opts.Presence && !s.observer {
		info := s.ClientInfo()
		if err := h.cfg.Presence.AddPresence(ctx, ch, s.id, info, h.cfg.PresenceExpiry); err != nil {
			h.log.Warn("presence add failed", "channel", ch, "err", err)
		}
		if err := h.cfg.Broker.PublishJoin(ctx, ch, info); err != nil {
			h.log.Warn("join event failed", "channel", ch, "err", err)
		}
	}
	frame := encodeReply(res)
	s.mu.Lock()
	s.enqueueLocked(frame, nil)
	sub.upTo, sub.epoch = res.Offset, res.Epoch
	for i := range sub.pending {
		ev := &sub.pending[i]
		if sub.covered(ev) {
			continue // already in the reply's position or publications
		}
		var cache encodeCache // one event per cache
		for _, f := range s.frames(ev, &cache) {
			s.enqueueLocked(f, nil)
		}
	}
	sub.pending = nil
	sub.recovering.Store(false)
	s.mu.Unlock()

	return nil
}

// recovered reports whether pubs cover everything after since without a
// gap.
func recovered(since *switchyard.StreamPosition, pubs []switchyard.Publication, pos switchyard.StreamPosition) bool {
	if since.Epoch != pos.Epoch || since.Offset > pos.Offset {
		return false
	}
	if len(pubs) == 0 {
		return since.Offset == pos.Offset
	}
	return pubs[0].Offset == since.Offset+1 && pubs[len(pubs)-1].Offset == pos.Offset
}

// addSubscriber adds the session to the channel's local subscribers,
// subscribing this process to the channel at the broker first if needed.
func (h *Hub) addSubscriber(ctx context.Context, s *Session, ch string, sub *subscription) error {
	sh := h.shard(ch)
	sh.subMu.Lock()
	defer sh.subMu.Unlock()
	s.mu.Lock()
	_, dup := s.subs[ch]
	closed := s.closed
	s.mu.Unlock()
	if dup {
		return switchyard.Wrap(ErrAlreadySubscribed, switchyard.CodeBadRequest, "already subscribed to %q", ch)
	}
	if closed {
		return switchyard.Wrap(ErrClosing, switchyard.CodeUnavailable, "connection is closing")
	}
	sh.mu.RLock()
	c := sh.channels[ch]
	sh.mu.RUnlock()
	if c == nil {
		if err := h.cfg.Broker.Subscribe(ctx, ch); err != nil {
			return err
		}
	}
	sh.mu.Lock()
	c = sh.channels[ch]
	if c == nil {
		// A new channel: nobody else reaches its orderer before the
		// shard's lock is released.
		c = &channel{subs: map[*Session]*subscription{}}
		c.ord.floor = sub.floor
		sh.channels[ch] = c
	}
	was := c.hasClients()
	c.subs[s] = sub
	if s.observer {
		c.observers++
	}
	sh.clientChannels += c.hasClients() - was
	sh.mu.Unlock()
	if sub.floor > 0 {
		c.ord.mu.Lock() // after the shard's lock: see LOCKS.md
		if c.ord.floor == 0 {
			c.ord.floor = sub.floor
		}
		c.ord.mu.Unlock()
	}
	s.mu.Lock()
	if s.subs == nil {
		s.subs = map[string]*subscription{}
	}
	s.subs[ch] = sub
	if sub.counted {
		s.counted++
	}
	s.mu.Unlock()
	return nil
}

// removeSubscriber undoes addSubscriber; it reports whether the session
// was subscribed.
func (h *Hub) removeSubscriber(ctx context.Context, s *Session, ch string) (*subscription, bool) {
	sh := h.shard(ch)
	sh.subMu.Lock()
	defer sh.subMu.Unlock()
	s.mu.Lock()
	sub, ok := s.subs[ch]
	delete(s.subs, ch)
	if ok && sub.counted {
		s.counted--
	}
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	sh.mu.Lock()
	c := sh.channels[ch]
	last := false
	if c != nil {
		was := c.hasClients()
		delete(c.subs, s)
		if s.observer {
			c.observers--
		}
		sh.clientChannels += c.hasClients() - was
		if len(c.subs) == 0 {
			delete(sh.channels, ch)
			last = true
		}
	}
	sh.mu.Unlock()
	if last {
		if err := h.cfg.Broker.Unsubscribe(ctx, ch); err != nil {
			h.log.Warn("broker unsubscribe failed", "channel", ch, "err", err)
		}
	}
	return sub, true
}

// Unsubscribe removes a session from a channel at its client's request.
func (h *Hub) Unsubscribe(ctx context.Context, s *Session, ch string) error {
	return h.unsubscribe(ctx, s, ch, false)
}

// UnsubscribeServer removes a session from a channel on the server's
// behalf; the client is told with its protocol's EncodeUnsubscribed frame.
func (h *Hub) UnsubscribeServer(ctx context.Context, s *Session, ch string) error {
	return h.unsubscribe(ctx, s, ch, true)
}

// UnsubscribeSilent undoes SubscribeSilent.
func (h *Hub) UnsubscribeSilent(ctx context.Context, s *Session, ch string) error {
	return h.unsubscribe(ctx, s, ch, false)
}

func (h *Hub) unsubscribe(ctx context.Context, s *Session, ch string, notify bool) error {
	if err := validChannel(ch); err != nil {
		return err
	}
	sub, ok := h.removeSubscriber(ctx, s, ch)
	if !ok {
		return switchyard.Wrap(ErrNotSubscribed, switchyard.CodeBadRequest, "not subscribed to %q", ch)
	}
	if notify {
		s.Send(s.enc.EncodeUnsubscribed(ch))
	}
	h.left(ctx, s, ch, sub)
	return nil
}

func (h *Hub) left(ctx context.Context, s *Session, ch string, sub *subscription) {
	if !sub.opts.Presence || s.observer {
		return
	}
	if err := h.cfg.Presence.RemovePresence(ctx, ch, s.id); err != nil {
		h.log.Warn("presence remove failed", "channel", ch, "err", err)
	}
	if err := h.cfg.Broker.PublishLeave(ctx, ch, s.ClientInfo()); err != nil {
		h.log.Warn("leave event failed", "channel", ch, "err", err)
	}
}

// Disconnect removes a closed session from every channel and from the
// hub (leave events for channels with presence).
func (h *Hub) Disconnect(s *Session) {
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	chans := make([]string, 0, len(s.subs))
	for ch := range s.subs {
		chans = append(chans, ch)
	}
	s.mu.Unlock()
	ctx := context.Background()
	for _, ch := range chans {
		if sub, ok := h.removeSubscriber(ctx, s, ch); ok {
			h.left(ctx, s, ch, sub)
		}
	}
	h.smu.Lock()
	delete(h.sessions, s)
	if u := h.users[s.user]; u != nil {
		delete(u, s)
		if len(u) == 0 {
			delete(h.users, s.user)
		}
	}
	h.smu.Unlock()
}

// appendPresence appends the session's presence entries (its channels
// with presence) to entries.
func (s *Session) appendPresence(entries []broker.PresenceEntry) []broker.PresenceEntry {
	info := s.ClientInfo()
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch, sub := range s.subs {
		if sub.opts.Presence {
			entries = append(entries, broker.PresenceEntry{Channel: ch, ClientID: s.id, Info: info})
		}
	}
	return entries
}

// Publish publishes data (a JSON value) to a channel. s is the publishing
// session, or nil for the server (no permission check).
func (h *Hub) Publish(ctx context.Context, s *Session, ch string, data json.RawMessage) (switchyard.StreamPosition, error) {
	return h.publish(ctx, s, ch, data, switchyard.Audience{})
}

// PublishAudience publishes on the server's behalf to the subscribers of
// a channel that the audience includes (Channelstream's private and
// excluding messages). History keeps the audience: recovery and client
// history reads apply it too.
func (h *Hub) PublishAudience(ctx context.Context, ch string, data json.RawMessage, aud switchyard.Audience) (switchyard.StreamPosition, error) {
	return h.publish(ctx, nil, ch, data, aud)
}

// PublishOrdered publishes on the server's behalf a publication that
// subscribers receive in its Sequence's order among those of its key,
// whichever process published them (see HandlePublication): resource
// events, ordered per record by their change-log positions.
func (h *Hub) PublishOrdered(ctx context.Context, ch string, data json.RawMessage, seq switchyard.Sequence) (switchyard.StreamPosition, error) {
	return h.publishWith(ctx, nil, ch, data, switchyard.Audience{}, seq)
}

func (h *Hub) publish(ctx context.Context, s *Session, ch string, data json.RawMessage, aud switchyard.Audience) (switchyard.StreamPosition, error) {
	return h.publishWith(ctx, s, ch, data, aud, switchyard.Sequence{})
}

func (h *Hub) publishWith(ctx context.Context, s *Session, ch string, data json.RawMessage, aud switchyard.Audience, seq switchyard.Sequence) (switchyard.StreamPosition, error) {
	opts, err := h.check(s, ch, func(p config.ChannelPermissions) string { return p.Publish }, "publish")
	if err != nil {
		return switchyard.StreamPosition{}, err
	}
	if len(data) == 0 || !json.Valid(data) {
		return switchyard.StreamPosition{}, switchyard.Errorf(switchyard.CodeBadRequest, "data must be a JSON value")
	}
	ns, _, _ := strings.Cut(ch, ":")
	if ns == ch {
		ns = "" // the default namespace
	}
	po := broker.PublishOptions{HistorySize: opts.HistorySize, HistoryTTL: opts.HistoryTTL.Duration(), Audience: aud, Namespace: ns, Sequence: seq}
	if s != nil {
		info := s.ClientInfo()
		po.Info = &info
	}
	return h.cfg.Broker.Publish(ctx, ch, data, po)
}

// Presence returns the clients present in a channel.
func (h *Hub) Presence(ctx context.Context, s *Session, ch string) ([]switchyard.ClientInfo, error) {
	opts, err := h.check(s, ch, func(p config.ChannelPermissions) string { return p.Presence }, "presence")
	if err != nil {
		return nil, err
	}
	if !opts.Presence {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "presence is not enabled for %q", ch)
	}
	m, err := h.cfg.Presence.Presence(ctx, ch)
	if err != nil {
		return nil, err
	}
	out := make([]switchyard.ClientInfo, 0, len(m))
	for _, ci := range m {
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b switchyard.ClientInfo) int { return strings.Compare(a.ClientID, b.ClientID) })
	return out, nil
}

// PresenceStats counts the clients and users present in a channel.
func (h *Hub) PresenceStats(ctx context.Context, ch string) (broker.PresenceStats, error) {
	opts, err := h.options(ch)
	if err != nil {
		return broker.PresenceStats{}, err
	}
	if !opts.Presence {
		return broker.PresenceStats{}, switchyard.Errorf(switchyard.CodeBadRequest, "presence is not enabled for %q", ch)
	}
	return h.cfg.Presence.PresenceStats(ctx, ch)
}

// History returns a channel's publications after since (all kept when
// since is nil), oldest first, at most limit of them (limit <= 0: all),
// and the channel's position. With reverse they come newest first: the
// latest limit, or those before since (broker.HistoryOptions.Reverse).
func (h *Hub) History(ctx context.Context, s *Session, ch string, limit int, since *switchyard.StreamPosition, reverse bool) ([]switchyard.Publication, switchyard.StreamPosition, error) {
	opts, err := h.check(s, ch, func(p config.ChannelPermissions) string { return p.History }, "history")
	if err != nil {
		return nil, switchyard.StreamPosition{}, err
	}
	if opts.HistorySize == 0 {
		return nil, switchyard.StreamPosition{}, switchyard.Errorf(switchyard.CodeBadRequest, "history is not enabled for %q", ch)
	}
	if limit <= 0 {
		limit = -1
	}
	pubs, pos, err := h.cfg.Broker.History(ctx, ch, broker.HistoryOptions{Since: since, Limit: limit, Reverse: reverse})
	if s != nil {
		pubs = forUser(pubs, s.user)
	}
	if pubs == nil {
		pubs = []switchyard.Publication{}
	}
	return pubs, pos, err
}

// forUser drops the publications whose audience excludes user (in place).
func forUser(pubs []switchyard.Publication, user string) []switchyard.Publication {
	return slices.DeleteFunc(pubs, func(p switchyard.Publication) bool { return !p.Audience.Includes(user) })
}
