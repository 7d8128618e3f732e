package client

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// Query selects the rows of a list: equality filters on declared fields,
// an ordering ("-field" descending), a text search; Limit and Offset page
// it (the reply is then one page).
type Query struct {
	Filter   map[string]any
	Ordering []string
	Search   string
	Limit    int
	Offset   int
}

func (q Query) fields() map[string]any {
	data := map[string]any{}
	if len(q.Filter) > 0 {
		data["filter"] = q.Filter
	}
	if len(q.Ordering) > 0 {
		data["ordering"] = q.Ordering
	}
	if q.Search != "" {
		data["search"] = q.Search
	}
	f := map[string]any{"action": "list", "data": data}
	if q.Limit > 0 || q.Offset > 0 {
		if q.Limit > 0 {
			f["limit"] = q.Limit
		}
		f["offset"] = q.Offset
	}
	return f
}

// Create creates a record of a resource and returns it as the server
// stored it.
func (c *Client) Create(ctx context.Context, resource string, data any) (json.RawMessage, error) {
	return c.Request(ctx, resource, map[string]any{"action": "create", "data": data})
}

// Retrieve returns a record (ErrNotFound when it does not exist for you).
func (c *Client) Retrieve(ctx context.Context, resource string, pk int64) (json.RawMessage, error) {
	return c.Request(ctx, resource, map[string]any{"action": "retrieve", "pk": pk})
}

// List returns the records selected by q: a JSON array (one page of it
// with Limit or Offset).
func (c *Client) List(ctx context.Context, resource string, q Query) (json.RawMessage, error) {
	data, err := c.Request(ctx, resource, q.fields())
	if err != nil || (q.Limit == 0 && q.Offset == 0) {
		return data, err
	}
	var page struct {
		Results json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(data, &page); err != nil {
		return nil, fmt.Errorf("client: list %s: %w", resource, err)
	}
	return page.Results, nil
}

// Update replaces a record's writable fields.
func (c *Client) Update(ctx context.Context, resource string, pk int64, data any) (json.RawMessage, error) {
	return c.Request(ctx, resource, map[string]any{"action": "update", "pk": pk, "data": data})
}

// Patch changes some fields of a record.
func (c *Client) Patch(ctx context.Context, resource string, pk int64, data any) (json.RawMessage, error) {
	return c.Request(ctx, resource, map[string]any{"action": "patch", "pk": pk, "data": data})
}

// Delete deletes a record.
func (c *Client) Delete(ctx context.Context, resource string, pk int64) error {
	_, err := c.Request(ctx, resource, map[string]any{"action": "delete", "pk": pk})
	return err
}

// Handle is a resource whose records decode into T.
type Handle[T any] struct {
	c    *Client
	name string
}

// Resource returns a typed handle on a resource.
func Resource[T any](c *Client, name string) Handle[T] { return Handle[T]{c: c, name: name} }

func decode[T any](raw json.RawMessage, err error) (T, error) {
	var v T
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("client: decoding %T: %w", v, err)
	}
	return v, nil
}

// Create creates a record.
func (h Handle[T]) Create(ctx context.Context, data any) (T, error) {
	return decode[T](h.c.Create(ctx, h.name, data))
}

// Retrieve returns a record.
func (h Handle[T]) Retrieve(ctx context.Context, pk int64) (T, error) {
	return decode[T](h.c.Retrieve(ctx, h.name, pk))
}

// List returns the records q selects.
func (h Handle[T]) List(ctx context.Context, q Query) ([]T, error) {
	return decode[[]T](h.c.List(ctx, h.name, q))
}

// Update replaces a record's writable fields.
func (h Handle[T]) Update(ctx context.Context, pk int64, data any) (T, error) {
	return decode[T](h.c.Update(ctx, h.name, pk, data))
}

// Patch changes some fields of a record.
func (h Handle[T]) Patch(ctx context.Context, pk int64, data any) (T, error) {
	return decode[T](h.c.Patch(ctx, h.name, pk, data))
}

// Delete deletes a record.
func (h Handle[T]) Delete(ctx context.Context, pk int64) error { return h.c.Delete(ctx, h.name, pk) }

// Event is a change of a followed record: Action "update" with the record
// as the change left it, or "delete" with {"pk": …}. Seq is the change's
// position in the server's change log.
type Event struct {
	Action string
	Data   json.RawMessage
	Seq    int64
}

// Subscription follows one record (SubscribeInstance).
type Subscription struct {
	c        *Client
	resource string
	pk       int64
	rid      string
	fn       func(Event)
	unhandle func()

	mu      sync.Mutex
	seq     int64 // the highest change delivered
	sentOn  int
	stopped bool
	ready   chan error
}

// SubscribeInstance calls fn (on the event goroutine) for every change of
// a record, from now on. After a reconnect the client subscribes again
// with the last position it saw (`since`), so the changes made meanwhile
// arrive first, once each, in order. It returns once the server accepted
// the subscription (ErrNotFound for a record that does not exist for you).
func (c *Client) SubscribeInstance(ctx context.Context, resource string, pk int64, fn func(Event)) (*Subscription, error) {
	s := &Subscription{c: c, resource: resource, pk: pk, rid: newID(), fn: fn, ready: make(chan error, 1)}
	s.unhandle = c.handle(s.rid, s.frame)
	connection, connected := c.addResubscriber(s)
	if connected {
		if f := s.frames(connection); len(f) > 0 {
			c.sendNow(f[0])
		}
	}
	if err := s.wait(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *Subscription) wait(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok && s.c.opts.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.c.opts.RequestTimeout)
		defer cancel()
	}
	select {
	case err := <-s.ready:
		return err
	case <-ctx.Done():
		return &Error{Code: CodeTimeout, Message: "no reply to subscribe_instance in time", err: ctx.Err()}
	case <-s.c.done:
		return ErrClosed
	}
}

func (s *Subscription) frames(connection int) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.sentOn == connection {
		return nil
	}
	s.sentOn = connection
	b, _ := json.Marshal(map[string]any{"stream": s.resource, "payload": map[string]any{
		"action": "subscribe_instance", "request_id": s.rid, "pk": s.pk, "since": s.seq,
	}})
	return [][]byte{b}
}

func (s *Subscription) frame(p *payload) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	if p.Action == "subscribe_instance" {
		var err error
		if !p.ok() {
			err = errorOf(p)
			s.stopped = true
		} else {
			var d struct {
				Seq int64 `json:"seq"`
			}
			if json.Unmarshal(p.Data, &d) == nil && s.seq == 0 {
				s.seq = d.Seq
			}
		}
		s.mu.Unlock()
		select {
		case s.ready <- err:
		default:
			if err != nil {
				s.c.report(fmt.Errorf("client: resubscribing to %s %d: %w", s.resource, s.pk, err))
			}
		}
		if err != nil {
			s.stop()
		}
		return
	}
	var seq int64
	if p.Seq != nil {
		seq = *p.Seq
		if seq <= s.seq {
			s.mu.Unlock()
			return // delivered before the reconnect
		}
		s.seq = seq
	}
	s.mu.Unlock()
	s.fn(Event{Action: p.Action, Data: p.Data, Seq: seq})
}

func (s *Subscription) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.unhandle()
	s.c.removeResubscriber(s)
}

// Close ends the subscription.
func (s *Subscription) Close(ctx context.Context) error {
	s.stop()
	if s.c.State() != Connected {
		return nil
	}
	_, err := s.c.requestAs(ctx, s.resource, map[string]any{"action": "unsubscribe_instance", "pk": s.pk}, s.rid)
	return err
}
