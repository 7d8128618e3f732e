package channelstream

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/ws"
)

// transport is where a connection's frames go: its WebSocket, its parked
// long-poll, or, with neither, a bounded list of catch-up frames that the
// next socket or poll receives first (marked "catchup": true). Frames are
// JSON arrays of one message, as Channelstream sends them.
type transport struct {
	mu       sync.Mutex
	ws       *ws.Conn
	poll     *poll
	pending  [][]byte
	pbytes   int
	lastBeat time.Time
	gone     bool
}

// poll is one parked /listen request.
type poll struct {
	frames [][]byte
	bytes  int
	wake   chan struct{} // one slot: a frame arrived or the poll must end
	park   *parked       // a parked poll (wake is nil then); see park.go
	done   bool          // replaced, or the connection is gone
}

// signal tells the poll's waiter that it changed (t.mu held).
func (p *poll) signal() {
	if p.park != nil {
		p.park.signal()
		return
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// attached reports whether a socket or a poll is attached (the connection
// is then alive).
func (t *transport) attached() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ws != nil || t.poll != nil
}

// WriteFrames implements hub.Writer. It never fails: a connection outlives
// its sockets, so a failed write only loses that socket (whose close then
// ends the connection, as in Channelstream).
func (c *conn) WriteFrames(ctx context.Context, frames [][]byte) error {
	t := &c.tport
	t.mu.Lock()
	if w := t.ws; w != nil {
		t.mu.Unlock()
		w.SendBatch(ctx, frames...)
		return nil
	}
	if t.poll != nil {
		t.poll.add(frames)
		t.mu.Unlock()
		return nil
	}
	t.mu.Unlock()
	// Detached: keep what the channel's store_frames allows, as catch-up.
	keep := c.srv.catchup(frames)
	t.mu.Lock()
	if w := t.ws; w != nil {
		// A socket attached meanwhile, after its catch-up: these are newer.
		t.mu.Unlock()
		w.SendBatch(ctx, keep...)
		return nil
	}
	switch {
	case t.gone:
	case t.poll != nil:
		t.poll.add(keep)
	default:
		t.keep(keep, c.srv.maxQueued)
	}
	t.mu.Unlock()
	return nil
}

func (p *poll) add(frames [][]byte) {
	for _, f := range frames {
		if isHeartbeat(f) {
			continue
		}
		p.frames = append(p.frames, f)
		p.bytes += len(f)
	}
	p.signal()
}

// keep adds catch-up frames, dropping the oldest beyond max bytes (as
// Channelstream keeps only the last frames of a channel).
func (t *transport) keep(frames [][]byte, max int) {
	for _, f := range frames {
		t.pending = append(t.pending, f)
		t.pbytes += len(f)
	}
	for t.pbytes > max && len(t.pending) > 0 {
		t.pbytes -= len(t.pending[0])
		t.pending[0] = nil
		t.pending = t.pending[1:]
	}
}

// takePending returns and clears the catch-up frames. t.mu must be held.
func (t *transport) takePending() [][]byte {
	p := t.pending
	t.pending, t.pbytes = nil, 0
	return p
}

// Close implements hub.Writer: the hub closes a session that fell too far
// behind (4008) or that the server API disconnected (4003); the
// connection ends with it.
func (c *conn) Close(code int, reason string) error {
	c.srv.drop(c, code, reason)
	return nil
}

func isHeartbeat(f []byte) bool { return len(f) == 2 && f[0] == '[' && f[1] == ']' }

var (
	liveMark    = []byte(`[{"catchup":false,`)
	catchupMark = []byte(`[{"catchup":true,`)
)

// asCatchup turns a live frame into its catch-up copy. Frames put
// "catchup" first (see message encoding), so the key nested in a user's
// message can never be the one changed.
func asCatchup(f []byte) []byte {
	if !bytes.HasPrefix(f, liveMark) {
		return f
	}
	out := make([]byte, 0, len(f)-1)
	out = append(out, catchupMark...)
	return append(out, f[len(liveMark):]...)
}

// frame wraps one encoded message in its array.
func frame(msg []byte) []byte {
	b := make([]byte, 0, len(msg)+2)
	b = append(b, '[')
	b = append(b, msg...)
	return append(b, ']')
}

// encoder is the hub.Encoder of Channelstream connections: a publication
// whose data is already a Channelstream message (what this package
// publishes) goes out as is; any other publication (from a native /live
// client or the server API) is wrapped as a "message" from its
// publisher. Presence and subscription events of the hub are not sent:
// Channelstream has its own presence messages.
type encoder struct {
	srv *Server
}

func (e *encoder) EncodePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) []byte {
	if isMessage(pub.Data) {
		return frame(pub.Data)
	}
	user := ""
	if pub.Info != nil {
		user = pub.Info.User
	}
	name, ok := e.srv.channelName(ch)
	if !ok {
		name = ch
	}
	msg := object{
		{"catchup", raw(false)},
		{"type", raw("message")},
		{"uuid", raw(newUUID())},
		{"timestamp", raw(isoNaive(e.srv.now()))},
		{"user", raw(user)},
		{"channel", raw(name)},
		{"message", pub.Data},
		{"edited", json.RawMessage("null")},
	}
	return frame(raw(msg))
}

// isMessage reports whether data is a Channelstream message object: one
// with "type", "uuid" and "channel".
func isMessage(data []byte) bool {
	if kind(data) != '{' {
		return false
	}
	var m struct {
		Type    *string         `json:"type"`
		UUID    *string         `json:"uuid"`
		Channel json.RawMessage `json:"channel"`
	}
	return json.Unmarshal(data, &m) == nil && m.Type != nil && m.UUID != nil && m.Channel != nil
}

func (*encoder) EncodeJoin(string, switchyard.ClientInfo) []byte  { return nil }
func (*encoder) EncodeLeave(string, switchyard.ClientInfo) []byte { return nil }
func (*encoder) EncodeSubscribed(hub.SubscribeResult) []byte      { return nil }
func (*encoder) EncodeUnsubscribed(string) []byte                 { return nil }

var _ hub.Encoder = (*encoder)(nil)
var _ hub.Writer = (*conn)(nil)

// escapeChannel maps a Channelstream channel name (any characters) to the
// part of a hub channel name after the namespace: the characters hub
// names refuse (spaces, control characters), and "%" and "#" (which hub
// names give a meaning), are percent-encoded.
func escapeChannel(name string) string {
	var b strings.Builder
	for _, r := range name {
		if r == '%' || r == '#' || unicode.IsSpace(r) || unicode.IsControl(r) {
			var buf [4]byte
			n := utf8.EncodeRune(buf[:], r)
			for _, c := range buf[:n] {
				b.WriteByte('%')
				b.WriteByte("0123456789ABCDEF"[c>>4])
				b.WriteByte("0123456789ABCDEF"[c&15])
			}
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unescapeChannel(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, ok := unhex(s[i+1], s[i+2]); ok {
				b = append(b, v)
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

func unhex(a, b byte) (byte, bool) {
	d := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, true
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10, true
		}
		return 0, false
	}
	x, ok1 := d(a)
	y, ok2 := d(b)
	return x<<4 | y, ok1 && ok2
}
