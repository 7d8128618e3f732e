package client

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// Position is a place in a channel's history: the offset of a message and
// the history's epoch.
type Position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// ClientInfo is a client in presence lists, join/leave and publications.
type ClientInfo struct {
	ClientID string          `json:"client_id"`
	User     string          `json:"user"`
	Info     json.RawMessage `json:"info,omitempty"`
}

// Publication is a message of a channel.
type Publication struct {
	Channel string          `json:"channel,omitempty"`
	Offset  uint64          `json:"offset"`
	Epoch   string          `json:"epoch,omitempty"`
	Data    json.RawMessage `json:"data"`
	// Info is the publishing client; nil when the server published.
	Info *ClientInfo `json:"info,omitempty"`
}

// Gap says that messages were missed and cannot be recovered (history
// trimmed, expired, or lost with a restart): reload your state.
type Gap struct {
	Channel  string
	Since    Position // the last position delivered
	Position Position // the channel's position now
}

// ChannelHandlers receive a channel's events on the event goroutine.
type ChannelHandlers struct {
	OnMessage func(Publication)
	OnJoin    func(ClientInfo)
	OnLeave   func(ClientInfo)
	OnGap     func(Gap)
	// OnError: a resubscription was refused, or the server unsubscribed the
	// client; the subscription has ended.
	OnError func(error)
	// Since resumes from a saved position: the messages after it come first.
	Since *Position
}

// Channel is a subscription to a channel. It keeps the position of the
// last message delivered; after a reconnect the client subscribes again
// with it, so the missed messages come first, in order, once each — or
// OnGap says they cannot.
type Channel struct {
	c        *Client
	name     string
	h        ChannelHandlers
	rid      string
	unhandle func()
	ready    chan error

	mu        sync.Mutex
	pos       Position
	sentOn    int
	sentSince *Position
	stopped   bool
}

// Subscribe subscribes to a channel and returns once the server accepted
// (ErrForbidden, ErrNotFound for an unknown namespace…).
func (c *Client) Subscribe(ctx context.Context, channel string, h ChannelHandlers) (*Channel, error) {
	ch := &Channel{c: c, name: channel, h: h, rid: newID(), ready: make(chan error, 1)}
	if h.Since != nil {
		ch.pos = *h.Since
	}
	c.mu.Lock()
	if _, dup := c.channels[channel]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("client: already subscribed to %s: %w", channel, ErrBadRequest)
	}
	c.channels[channel] = ch
	c.mu.Unlock()
	ch.unhandle = c.handle(ch.rid, ch.reply)
	connection, connected := c.addResubscriber(ch)
	if connected {
		if f := ch.frames(connection); len(f) > 0 {
			c.sendNow(f[0])
		}
	}
	if _, ok := ctx.Deadline(); !ok && c.opts.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
	}
	select {
	case err := <-ch.ready:
		if err != nil {
			ch.stop()
			return nil, err
		}
		return ch, nil
	case <-ctx.Done():
		ch.stop()
		return nil, &Error{Code: CodeTimeout, Message: "no reply to subscribe in time", err: ctx.Err()}
	case <-c.done:
		return nil, ErrClosed
	}
}

// Name returns the channel's name.
func (ch *Channel) Name() string { return ch.name }

// Position returns the position of the last message delivered: save it to
// resume later with ChannelHandlers.Since.
func (ch *Channel) Position() Position {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.pos
}

func (ch *Channel) frames(connection int) [][]byte {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.stopped || ch.sentOn == connection {
		return nil
	}
	ch.sentOn = connection
	p := map[string]any{"action": "subscribe", "channel": ch.name, "request_id": ch.rid}
	ch.sentSince = nil
	if ch.pos.Epoch != "" {
		since := ch.pos
		ch.sentSince = &since
		p["since"] = since
	}
	b, _ := json.Marshal(map[string]any{"stream": "$channels", "payload": p})
	return [][]byte{b}
}

// reply handles a (re)subscription's reply, on the event goroutine.
func (ch *Channel) reply(p *payload) {
	if p.Action != "subscribe" {
		return
	}
	if !p.ok() {
		err := errorOf(p)
		select {
		case ch.ready <- err:
		default:
			ch.end(fmt.Errorf("client: resubscribing to %s: %w", ch.name, err))
		}
		return
	}
	var d struct {
		Offset       uint64        `json:"offset"`
		Epoch        string        `json:"epoch"`
		Recovered    bool          `json:"recovered"`
		Publications []Publication `json:"publications"`
	}
	json.Unmarshal(p.Data, &d)
	ch.mu.Lock()
	since := ch.sentSince
	var gap *Gap
	var deliver []Publication
	switch {
	case since != nil && !(d.Recovered && d.Epoch == since.Epoch):
		gap = &Gap{Channel: ch.name, Since: *since, Position: Position{d.Offset, d.Epoch}}
		ch.pos = Position{d.Offset, d.Epoch}
	default:
		if since == nil {
			ch.pos = Position{d.Offset, d.Epoch}
		}
		for _, pub := range d.Publications {
			if ch.acceptLocked(pub) {
				deliver = append(deliver, pub)
			}
		}
		if d.Offset > ch.pos.Offset {
			ch.pos.Offset = d.Offset
		}
	}
	ch.mu.Unlock()
	select {
	case ch.ready <- nil:
	default:
	}
	if gap != nil && ch.h.OnGap != nil {
		ch.h.OnGap(*gap)
	}
	for _, pub := range deliver {
		pub.Channel = ch.name
		if ch.h.OnMessage != nil {
			ch.h.OnMessage(pub)
		}
	}
}

// acceptLocked reports whether a message is new and moves the position
// past it.
func (ch *Channel) acceptLocked(pub Publication) bool {
	if pub.Offset == 0 {
		return true // a namespace without history
	}
	if ch.pos.Epoch != "" && (pub.Epoch == "" || pub.Epoch == ch.pos.Epoch) {
		if pub.Offset <= ch.pos.Offset {
			return false
		}
		ch.pos.Offset = pub.Offset
		return true
	}
	if pub.Epoch != "" {
		ch.pos = Position{pub.Offset, pub.Epoch}
	}
	return true
}

func (ch *Channel) end(err error) {
	ch.stop()
	if ch.h.OnError != nil {
		ch.h.OnError(err)
	} else {
		ch.c.report(err)
	}
}

func (ch *Channel) stop() {
	ch.mu.Lock()
	ch.stopped = true
	ch.mu.Unlock()
	ch.unhandle()
	ch.c.removeResubscriber(ch)
	ch.c.mu.Lock()
	if ch.c.channels[ch.name] == ch {
		delete(ch.c.channels, ch.name)
	}
	ch.c.mu.Unlock()
}

// Unsubscribe ends the subscription.
func (ch *Channel) Unsubscribe(ctx context.Context) error {
	ch.stop()
	if ch.c.State() != Connected {
		return nil
	}
	_, err := ch.c.Request(ctx, "$channels", map[string]any{"action": "unsubscribe", "channel": ch.name})
	return err
}

// Publish publishes on the channel.
func (ch *Channel) Publish(ctx context.Context, data any) (Position, error) {
	return ch.c.Publish(ctx, ch.name, data)
}

// channelPush handles $channels pushes, on the event goroutine.
func (c *Client) channelPush(p *payload) {
	c.mu.Lock()
	ch := c.channels[p.Channel]
	c.mu.Unlock()
	if ch == nil {
		c.serverSidePush(p)
		return
	}
	switch p.Action {
	case "message":
		pub := Publication{Channel: p.Channel, Offset: p.Offset, Epoch: p.Epoch, Data: p.Data}
		if len(p.Info) > 0 && string(p.Info) != "null" {
			var info ClientInfo
			if json.Unmarshal(p.Info, &info) == nil {
				pub.Info = &info
			}
		}
		ch.mu.Lock()
		fresh := !ch.stopped && ch.acceptLocked(pub)
		ch.mu.Unlock()
		if fresh && ch.h.OnMessage != nil {
			ch.h.OnMessage(pub)
		}
	case "join", "leave":
		var info ClientInfo
		json.Unmarshal(p.Info, &info)
		if p.Action == "join" && ch.h.OnJoin != nil {
			ch.h.OnJoin(info)
		} else if p.Action == "leave" && ch.h.OnLeave != nil {
			ch.h.OnLeave(info)
		}
	case "unsubscribed":
		ch.end(fmt.Errorf("client: the server unsubscribed this client from %s: %w", ch.name, ErrForbidden))
	}
}

// Publish publishes data (any JSON value) on a channel; the namespace must
// allow clients to publish.
func (c *Client) Publish(ctx context.Context, channel string, data any) (Position, error) {
	return decode[Position](c.Request(ctx, "$channels", map[string]any{"action": "publish", "channel": channel, "data": data}))
}

// Presence lists a channel's subscribers (namespaces with presence).
func (c *Client) Presence(ctx context.Context, channel string) ([]ClientInfo, error) {
	r, err := decode[struct {
		Clients []ClientInfo `json:"clients"`
	}](c.Request(ctx, "$channels", map[string]any{"action": "presence", "channel": channel}))
	return r.Clients, err
}

// HistoryOptions select a channel's kept messages.
type HistoryOptions struct {
	// Limit returns at most this many (0: all kept).
	Limit int
	// Since returns the messages after a position.
	Since *Position
	// Reverse returns the newest first.
	Reverse bool
}

// History is a channel's kept messages and its position.
type History struct {
	Publications []Publication `json:"publications"`
	Offset       uint64        `json:"offset"`
	Epoch        string        `json:"epoch"`
}

// History returns a channel's kept messages, oldest first (newest first
// with Reverse).
func (c *Client) History(ctx context.Context, channel string, o HistoryOptions) (History, error) {
	f := map[string]any{"action": "history", "channel": channel}
	if o.Limit > 0 {
		f["limit"] = o.Limit
	}
	if o.Since != nil {
		f["since"] = o.Since
	}
	if o.Reverse {
		f["reverse"] = true
	}
	return decode[History](c.Request(ctx, "$channels", f))
}

// Signal is a signal pushed by the server.
type Signal struct {
	Name     string
	Kwargs   json.RawMessage
	SignalID string
}

type signalHandler struct{ fn func(Signal) }

// Call calls a signal of the server with kwargs (any JSON object) and
// returns its answer: {"job_id": …} when queued, the result of a sync
// signal.
func (c *Client) Call(ctx context.Context, name string, kwargs any) (json.RawMessage, error) {
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	return c.Request(ctx, "$signals", map[string]any{"action": "call", "signal": name, "kwargs": kwargs})
}

// OnSignal calls fn for every push of the signal name ("*": every signal);
// the returned function stops it.
func (c *Client) OnSignal(name string, fn func(Signal)) (stop func()) {
	h := &signalHandler{fn: fn}
	c.mu.Lock()
	if c.signals[name] == nil {
		c.signals[name] = map[*signalHandler]struct{}{}
	}
	c.signals[name][h] = struct{}{}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.signals[name], h)
		c.mu.Unlock()
	}
}

func (c *Client) signalPush(p *payload) {
	s := Signal{Name: p.Signal, Kwargs: p.Kwargs, SignalID: p.SignalID}
	c.mu.Lock()
	var fns []func(Signal)
	for _, name := range []string{s.Name, "*"} {
		for h := range c.signals[name] {
			fns = append(fns, h.fn)
		}
	}
	c.mu.Unlock()
	for _, fn := range fns {
		fn(s)
	}
}

// serverSidePush hands the messages of server-side subscriptions to
// Options.OnMessage.
func (c *Client) serverSidePush(p *payload) {
	fn := c.opts.OnMessage
	if fn == nil {
		return
	}
	switch p.Action {
	case "message":
		pub := Publication{Channel: p.Channel, Offset: p.Offset, Epoch: p.Epoch, Data: p.Data}
		if len(p.Info) > 0 && string(p.Info) != "null" {
			var info ClientInfo
			if json.Unmarshal(p.Info, &info) == nil {
				pub.Info = &info
			}
		}
		fn(pub)
	case "subscribed":
		for _, pub := range p.Publications {
			pub.Channel = p.Channel
			fn(pub)
		}
	}
}
