package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mathrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// State is the connection's state.
type State int32

// The states, in the order a connection goes through them.
const (
	Disconnected State = iota
	Connecting
	Connected
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	}
	return "disconnected"
}

// Backoff is the reconnection schedule: retry n (from 0) waits
// min(Max, Min·Factorⁿ), less a random part of up to Jitter of it, so that
// the clients of a server that went away do not all return at once.
type Backoff struct {
	// Min is the first delay (default 250 ms).
	Min time.Duration
	// Max caps the delay (default 10 s).
	Max time.Duration
	// Factor is the growth per retry (default 2).
	Factor float64
	// Jitter is the random fraction of each delay, 0..1 (default 0.5).
	Jitter float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = 250 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 10 * time.Second
	}
	if b.Factor < 1 {
		b.Factor = 2
	}
	if b.Jitter <= 0 || b.Jitter > 1 {
		b.Jitter = 0.5
	}
	return b
}

// Delay returns the delay before retry n, given random in [0, 1).
func (b Backoff) Delay(n int, random float64) time.Duration {
	b = b.withDefaults()
	d := math.Min(float64(b.Max), float64(b.Min)*math.Pow(b.Factor, float64(n)))
	return time.Duration(d * (1 - b.Jitter*random))
}

// Options configure a Client. The zero value works: anonymous, default
// timeouts and backoff.
type Options struct {
	// Token is a JWT sent on every connection (Authorization: Bearer).
	Token string
	// GetToken returns a fresh token: called before connecting when there
	// is none or it expires soon, and before it expires ($session refresh).
	GetToken func(ctx context.Context) (string, error)
	// RefreshBefore refreshes the token this long before it expires
	// (default 30 s, at most half of its remaining life).
	RefreshBefore time.Duration
	// RequestTimeout bounds a request without a deadline of its own
	// (default 10 s; negative: none).
	RequestTimeout time.Duration
	// ConnectTimeout bounds one connection attempt, until the server's
	// hello (default 10 s).
	ConnectTimeout time.Duration
	// Backoff is the reconnection schedule.
	Backoff Backoff
	// NoReconnect stops the client at the first disconnection.
	NoReconnect bool
	// Header is added to the WebSocket handshake (Origin, cookies…).
	Header http.Header
	// OnState is called on each state change, from the client's event
	// goroutine.
	OnState func(State)
	// OnMessage receives the messages of channels the server subscribed
	// this connection to (the token's channels claim, the server API's
	// subscribe), which have no Channel of their own.
	OnMessage func(Publication)
	// OnError receives errors that belong to no call: a refused
	// resubscription, a failed token refresh.
	OnError func(error)
	// Logger receives the client's debug logs; nil discards them.
	Logger *slog.Logger
}

// Client is a connection to a Switchyard server's /live socket, kept open:
// it reconnects with backoff, resubscribes everything with catch-up, and
// queues requests made while disconnected. Its methods are safe for
// concurrent use. Callbacks (events, messages, signals, OnState) run one at
// a time, in order, on the client's event goroutine: they may make requests
// but should not block for long.
type Client struct {
	url  string
	opts Options
	log  *slog.Logger

	ctx    context.Context // the client's lifetime; ends with Close
	cancel context.CancelFunc
	done   chan struct{} // closed when the run goroutine returned
	events *eventQueue

	mu         sync.Mutex
	state      State
	closed     bool
	conn       *websocket.Conn
	connection int // incremented on every connection: subscriptions are sent once per connection
	attempt    int
	clientID   string
	user       string
	token      string
	connected  chan struct{} // closed while connected
	pending    map[string]*call
	queue      []*call
	handlers   map[string]func(*payload) // frames of subscriptions, by request_id
	resubs     map[resubscriber]struct{}
	channels   map[string]*Channel
	signals    map[string]map[*signalHandler]struct{}

	wmu sync.Mutex // serializes writes; taken after mu, never the reverse
}

type resubscriber interface {
	// frames returns what to send on a new connection; called without c.mu.
	frames(connection int) [][]byte
}

type call struct {
	frame      []byte
	done       chan result
	sent       bool
	connection int
}

type result struct {
	p   *payload
	err error
}

// frame is a message on the wire.
type frame struct {
	Stream  string   `json:"stream"`
	Payload *payload `json:"payload"`
}

// payload holds the keys of every payload the client reads.
type payload struct {
	Action         string            `json:"action"`
	RequestID      json.RawMessage   `json:"request_id"`
	ResponseStatus *int              `json:"response_status"`
	Errors         []json.RawMessage `json:"errors"`
	Data           json.RawMessage   `json:"data"`
	Seq            *int64            `json:"seq"`

	ClientID     string          `json:"client_id"`
	User         string          `json:"user"`
	Channel      string          `json:"channel"`
	Offset       uint64          `json:"offset"`
	Epoch        string          `json:"epoch"`
	Info         json.RawMessage `json:"info"`
	Recovered    bool            `json:"recovered"`
	Publications []Publication   `json:"publications"`

	Signal   string          `json:"signal"`
	Kwargs   json.RawMessage `json:"kwargs"`
	SignalID string          `json:"signal_id"`
}

func (p *payload) ok() bool { return p.ResponseStatus != nil && *p.ResponseStatus/100 == 2 }

// requestID returns the payload's request_id when it is a string.
func (p *payload) requestID() string {
	var s string
	if len(p.RequestID) > 0 && p.RequestID[0] == '"' && json.Unmarshal(p.RequestID, &s) == nil {
		return s
	}
	return ""
}

// New returns a client of the /live socket at url (ws:// or wss://) and
// starts connecting in the background. Close it when done.
func New(url string, o Options) *Client {
	if o.RefreshBefore <= 0 {
		o.RefreshBefore = 30 * time.Second
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	o.Backoff = o.Backoff.withDefaults()
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		url: url, opts: o, log: log, ctx: ctx, cancel: cancel,
		done:      make(chan struct{}),
		events:    newEventQueue(),
		token:     o.Token,
		connected: make(chan struct{}),
		pending:   map[string]*call{},
		handlers:  map[string]func(*payload){},
		resubs:    map[resubscriber]struct{}{},
		channels:  map[string]*Channel{},
		signals:   map[string]map[*signalHandler]struct{}{},
	}
	go c.run()
	return c
}

// Dial is New, then waits until the client is connected or ctx ends.
func Dial(ctx context.Context, url string, o Options) (*Client, error) {
	c := New(url, o)
	if err := c.WaitConnected(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// WaitConnected waits until the client is connected.
func (c *Client) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		ch, state, closed := c.connected, c.state, c.closed
		c.mu.Unlock()
		if closed {
			return ErrClosed
		}
		if state == Connected {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("client: connecting to %s: %w", c.url, ctx.Err())
		case <-c.done:
			return ErrClosed
		}
	}
}

// State returns the connection's state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// ClientID returns the server's id of the current connection.
func (c *Client) ClientID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientID
}

// User returns the token's user ("" for anonymous).
func (c *Client) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// Close closes the connection for good; calls in progress return
// ErrClosed. It waits for the client's goroutines.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closed = true
	conn := c.conn
	calls := make([]*call, 0, len(c.pending))
	for id, cl := range c.pending {
		calls = append(calls, cl)
		delete(c.pending, id)
	}
	c.queue = nil
	c.mu.Unlock()
	for _, cl := range calls {
		cl.done <- result{err: ErrClosed}
	}
	c.cancel()
	if conn != nil {
		c.wmu.Lock()
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "client closed"), time.Now().Add(time.Second))
		c.wmu.Unlock()
		conn.Close()
	}
	<-c.done
	c.events.close()
	return nil
}

// run owns the connection: it connects, reads until the connection ends,
// and reconnects with backoff until Close.
func (c *Client) run() {
	defer close(c.done)
	for c.ctx.Err() == nil {
		reconnect := c.connectOnce()
		if !reconnect || c.opts.NoReconnect {
			c.setState(Disconnected)
			return
		}
		c.mu.Lock()
		delay := c.opts.Backoff.Delay(c.attempt, mathrand.Float64())
		c.attempt++
		c.mu.Unlock()
		c.log.Debug("client: reconnecting", "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return
		}
	}
}

// connectOnce makes one connection and serves it until it ends; it
// reports whether to reconnect.
func (c *Client) connectOnce() bool {
	c.setState(Connecting)
	tok, err := c.currentToken()
	if err != nil {
		c.report(fmt.Errorf("client: getToken: %w", err))
		return true
	}
	header := http.Header{}
	for k, v := range c.opts.Header {
		header[k] = v
	}
	if tok != "" {
		header.Set("Authorization", "Bearer "+tok)
	}
	dctx, cancel := context.WithTimeout(c.ctx, c.opts.ConnectTimeout)
	conn, resp, err := websocket.DefaultDialer.DialContext(dctx, c.url, header)
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized && c.opts.GetToken != nil {
			c.mu.Lock()
			c.token = "" // ask for a new one
			c.mu.Unlock()
		}
		c.log.Debug("client: dial failed", "err", err)
		return true
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.Close()
		return false
	}
	c.conn = conn
	c.mu.Unlock()

	readDone := make(chan error, 1)
	go func() { readDone <- c.read(conn) }()
	hello := time.NewTimer(c.opts.ConnectTimeout)
	defer hello.Stop()
	var refresh <-chan time.Time
	var refreshTimer *time.Timer
	defer func() {
		if refreshTimer != nil {
			refreshTimer.Stop()
		}
	}()
	c.mu.Lock()
	connected := c.connected
	c.mu.Unlock()
	for {
		select {
		case err := <-readDone:
			return c.disconnected(conn, err)
		case <-hello.C:
			if c.State() != Connected {
				conn.Close() // the read ends, then readDone
			}
		case <-connected:
			connected = nil
			hello.Stop()
			if d, ok := c.refreshIn(); ok {
				refreshTimer = time.NewTimer(d)
				refresh = refreshTimer.C
			}
		case <-refresh:
			d := c.refresh()
			refreshTimer.Reset(d)
		case <-c.ctx.Done():
			conn.Close()
			<-readDone
			return false
		}
	}
}

// read reads frames until the connection fails.
func (c *Client) read(conn *websocket.Conn) error {
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		c.receive(conn, data)
	}
}

// disconnected cleans up after a connection ended; it reports whether to
// reconnect.
func (c *Client) disconnected(conn *websocket.Conn, err error) bool {
	code := websocket.CloseAbnormalClosure
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		code = ce.Code
	}
	c.mu.Lock()
	conn.Close()
	c.conn = nil
	var failed []*call
	for id, cl := range c.pending {
		if cl.sent && cl.connection == c.connection {
			failed = append(failed, cl)
			delete(c.pending, id)
		}
	}
	if c.state == Connected {
		c.connected = make(chan struct{})
	}
	reconnect := !c.closed && code != 4003
	if code == 4001 {
		if c.opts.GetToken != nil {
			c.token = ""
		} else {
			reconnect = false
		}
	}
	c.mu.Unlock()
	for _, cl := range failed {
		cl.done <- result{err: fmt.Errorf("%w (close %d)", ErrDisconnected, code)}
	}
	c.log.Debug("client: disconnected", "code", code, "reconnect", reconnect)
	c.setState(Disconnected)
	return reconnect
}

func (c *Client) setState(s State) {
	c.mu.Lock()
	if c.state == s {
		c.mu.Unlock()
		return
	}
	c.state = s
	c.mu.Unlock()
	if fn := c.opts.OnState; fn != nil {
		c.events.push(func() { fn(s) })
	}
}

func (c *Client) report(err error) {
	c.log.Debug("client: error", "err", err)
	if fn := c.opts.OnError; fn != nil {
		c.events.push(func() { fn(err) })
	}
}

// receive routes one frame: replies to their callers, subscription frames
// and pushes to the event goroutine, in the order they came.
func (c *Client) receive(conn *websocket.Conn, data []byte) {
	var f frame
	if err := json.Unmarshal(data, &f); err != nil || f.Payload == nil {
		c.log.Debug("client: bad frame", "err", err)
		return
	}
	p := f.Payload
	rid := p.requestID()
	if rid == "" {
		switch f.Stream {
		case "$session":
			if p.Action == "connected" {
				c.onConnected(conn, p)
			}
		case "$channels":
			c.events.push(func() { c.channelPush(p) })
		case "$signals":
			if p.Action == "signal" {
				c.events.push(func() { c.signalPush(p) })
			}
		}
		return
	}
	c.mu.Lock()
	if cl, ok := c.pending[rid]; ok {
		delete(c.pending, rid)
		c.mu.Unlock()
		cl.done <- result{p: p}
		return
	}
	h := c.handlers[rid]
	c.mu.Unlock()
	if h != nil {
		c.events.push(func() { h(p) })
	}
}

// onConnected runs on the server's hello: subscriptions are sent again
// (with catch-up), then the requests queued while disconnected.
func (c *Client) onConnected(conn *websocket.Conn, p *payload) {
	c.mu.Lock()
	if c.conn != conn || c.state == Connected {
		c.mu.Unlock()
		return
	}
	c.state = Connected
	c.connection++
	connection := c.connection
	c.attempt = 0
	c.clientID, c.user = p.ClientID, p.User
	resubs := make([]resubscriber, 0, len(c.resubs))
	for r := range c.resubs {
		resubs = append(resubs, r)
	}
	queue := c.queue
	c.queue = nil
	for _, cl := range queue {
		cl.sent, cl.connection = true, connection
	}
	close(c.connected)
	c.wmu.Lock() // before unlocking mu: requests made now go after the queue
	c.mu.Unlock()
	defer c.wmu.Unlock()
	if fn := c.opts.OnState; fn != nil {
		c.events.push(func() { fn(Connected) })
	}
	for _, r := range resubs {
		for _, f := range r.frames(connection) {
			c.writeLocked(conn, f)
		}
	}
	for _, cl := range queue {
		c.writeLocked(conn, cl.frame)
	}
}

func (c *Client) writeLocked(conn *websocket.Conn, b []byte) {
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		c.log.Debug("client: write failed", "err", err)
		conn.Close() // the reader sees it and the client reconnects
	}
}

// sendNow writes a frame if connected (and reports whether it did).
func (c *Client) sendNow(b []byte) bool {
	c.mu.Lock()
	conn := c.conn
	ok := c.state == Connected && conn != nil
	c.mu.Unlock()
	if !ok {
		return false
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writeLocked(conn, b)
	return true
}

// Request sends payload on a stream and returns the reply's data when its
// status is 2xx; otherwise an *Error (the server's), ErrDisconnected (the
// connection closed before the reply), ErrClosed, or a timeout (ctx, or
// Options.RequestTimeout). Made while disconnected, a request waits for
// the next connection.
func (c *Client) Request(ctx context.Context, stream string, payload map[string]any) (json.RawMessage, error) {
	p, err := c.request(ctx, stream, payload)
	if err != nil {
		return nil, err
	}
	return p.Data, nil
}

func (c *Client) request(ctx context.Context, stream string, fields map[string]any) (*payload, error) {
	return c.requestAs(ctx, stream, fields, newID())
}

// requestAs is request with a given request_id (unsubscribing uses the
// subscription's).
func (c *Client) requestAs(ctx context.Context, stream string, fields map[string]any, rid string) (*payload, error) {
	body := make(map[string]any, len(fields)+1)
	for k, v := range fields {
		body[k] = v
	}
	body["request_id"] = rid
	b, err := json.Marshal(map[string]any{"stream": stream, "payload": body})
	if err != nil {
		return nil, fmt.Errorf("client: encoding the request: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok && c.opts.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
	}
	cl := &call{frame: b, done: make(chan result, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.pending[rid] = cl
	conn := c.conn
	if c.state == Connected && conn != nil {
		cl.sent, cl.connection = true, c.connection
		c.mu.Unlock()
		c.wmu.Lock()
		c.writeLocked(conn, b)
		c.wmu.Unlock()
	} else {
		c.queue = append(c.queue, cl)
		c.mu.Unlock()
	}
	select {
	case r := <-cl.done:
		if r.err != nil {
			return nil, r.err
		}
		if !r.p.ok() {
			return r.p, errorOf(r.p)
		}
		return r.p, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, rid)
		for i, q := range c.queue {
			if q == cl {
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, fmt.Errorf("client: %s %v: %w", stream, fields["action"], ctx.Err())
		}
		return nil, fmt.Errorf("client: %s %v: %w", stream, fields["action"], &Error{Code: CodeTimeout, Message: "no reply in time", err: ctx.Err()})
	}
}

// handle routes the frames of a subscription (by its request_id) to fn, on
// the event goroutine; the returned function removes it.
func (c *Client) handle(rid string, fn func(*payload)) func() {
	c.mu.Lock()
	c.handlers[rid] = fn
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.handlers, rid)
		c.mu.Unlock()
	}
}

func (c *Client) addResubscriber(r resubscriber) (connection int, connected bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resubs[r] = struct{}{}
	return c.connection, c.state == Connected
}

func (c *Client) removeResubscriber(r resubscriber) {
	c.mu.Lock()
	delete(c.resubs, r)
	c.mu.Unlock()
}

// ---- tokens ----

func (c *Client) currentToken() (string, error) {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if c.opts.GetToken == nil {
		return tok, nil
	}
	if exp := expiry(tok); tok != "" && (exp.IsZero() || time.Until(exp) > c.margin(exp)) {
		return tok, nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.ConnectTimeout)
	defer cancel()
	tok, err := c.opts.GetToken(ctx)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
	return tok, nil
}

func (c *Client) margin(exp time.Time) time.Duration {
	return min(c.opts.RefreshBefore, max(0, time.Until(exp)/2))
}

// refreshIn returns when to refresh the token, if it expires and can be
// refreshed.
func (c *Client) refreshIn() (time.Duration, bool) {
	if c.opts.GetToken == nil {
		return 0, false
	}
	c.mu.Lock()
	exp := expiry(c.token)
	c.mu.Unlock()
	if exp.IsZero() {
		return 0, false
	}
	return max(0, time.Until(exp)-c.margin(exp)), true
}

// refresh hands a new token to the server and returns when to refresh
// next (a second when it failed, while the old token lasts).
func (c *Client) refresh() time.Duration {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.ConnectTimeout)
	defer cancel()
	tok, err := c.opts.GetToken(ctx)
	if err == nil {
		_, err = c.request(ctx, "$session", map[string]any{"action": "refresh", "token": tok})
	}
	if err != nil {
		c.report(fmt.Errorf("client: token refresh: %w", err))
		return time.Second
	}
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
	d, _ := c.refreshIn()
	return d
}

// expiry reads a JWT's exp claim without verifying it (the server does).
func expiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(b, &claims) != nil || claims.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(int64(claims.Exp), 0)
}

// newID returns a random request id (a UUID v4).
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// eventQueue runs callbacks one at a time, in order, on one goroutine.
type eventQueue struct {
	mu     sync.Mutex
	items  []func()
	wake   chan struct{}
	closed bool
	done   chan struct{}
}

func newEventQueue() *eventQueue {
	q := &eventQueue{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *eventQueue) push(fn func()) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.items = append(q.items, fn)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *eventQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		items := q.items
		q.items = nil
		closed := q.closed
		q.mu.Unlock()
		for _, fn := range items {
			fn()
		}
		if closed && len(items) == 0 {
			return
		}
		if len(items) == 0 {
			<-q.wake
		}
	}
}

// close stops the goroutine once it has run what is queued. It does not
// wait, so a callback may call Client.Close.
func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
