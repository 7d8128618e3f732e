package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// ChangeKind says how a live query's rows changed.
type ChangeKind int

// The kinds of change.
const (
	// Enter: a row entered the query (created, or changed into the filter).
	Enter ChangeKind = iota + 1
	// Update: a row of the query changed.
	Update
	// Leave: a row left the query (deleted, or changed out of the filter or
	// out of what you may read).
	Leave
)

func (k ChangeKind) String() string {
	switch k {
	case Enter:
		return "enter"
	case Update:
		return "update"
	case Leave:
		return "leave"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one change of a live query's rows. Previous is set for Update.
type Change struct {
	Kind     ChangeKind
	Row      json.RawMessage
	Previous json.RawMessage
}

// LiveQueryOptions select and order a live query's rows.
type LiveQueryOptions struct {
	// Filter is equality on declared fields, as List's.
	Filter map[string]any
	// Ordering keeps the rows sorted ("-field" descending); without it new
	// rows are appended.
	Ordering []string
	// PKField is the records' primary key (default "pk" when records have
	// one, else "id").
	PKField string
	// OnChange is called for every change, on the event goroutine.
	OnChange func(Change)
}

type liveRow struct {
	pk     string // the primary key's JSON
	raw    json.RawMessage
	fields map[string]any
}

// LiveQuery is a resource's rows matching a filter, kept in sync by the
// server's events. After a reconnect it lists again and reports the
// difference as changes, so nothing is lost.
type LiveQuery struct {
	c        *Client
	resource string
	o        LiveQueryOptions
	rid      string
	unhandle func()
	ready    chan error

	mu        sync.Mutex
	rows      []liveRow
	buffer    []*payload
	buffering bool
	sentOn    int
	stopped   bool
	loaded    bool
}

// LiveQuery starts a live query and returns once its first rows are there
// (ErrForbidden, or ErrBadRequest for a filter on an undeclared field).
func (c *Client) LiveQuery(ctx context.Context, resource string, o LiveQueryOptions) (*LiveQuery, error) {
	q := &LiveQuery{c: c, resource: resource, o: o, rid: newID(), ready: make(chan error, 1)}
	q.unhandle = c.handle(q.rid, q.frame)
	connection, connected := c.addResubscriber(q)
	if connected {
		for _, f := range q.frames(connection) {
			c.sendNow(f)
		}
	}
	if _, ok := ctx.Deadline(); !ok && c.opts.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
	}
	select {
	case err := <-q.ready:
		if err != nil {
			q.stop()
			return nil, err
		}
		return q, nil
	case <-ctx.Done():
		q.stop()
		return nil, &Error{Code: CodeTimeout, Message: "no rows in time", err: ctx.Err()}
	case <-c.done:
		return nil, ErrClosed
	}
}

// Rows returns the rows now, in order.
func (q *LiveQuery) Rows() []json.RawMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]json.RawMessage, len(q.rows))
	for i, r := range q.rows {
		out[i] = r.raw
	}
	return out
}

// frames subscribes and lists, both with the query's request_id: the
// list's reply then comes in order with the events, which are held until
// it is there.
func (q *LiveQuery) frames(connection int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped || q.sentOn == connection {
		return nil
	}
	q.sentOn = connection
	q.buffering, q.buffer = true, nil
	sub := map[string]any{"action": "subscribe_list", "request_id": q.rid}
	data := map[string]any{}
	if len(q.o.Filter) > 0 {
		sub["filter"] = q.o.Filter
		data["filter"] = q.o.Filter
	}
	if len(q.o.Ordering) > 0 {
		data["ordering"] = q.o.Ordering
	}
	a, _ := json.Marshal(map[string]any{"stream": q.resource, "payload": sub})
	b, _ := json.Marshal(map[string]any{"stream": q.resource, "payload": map[string]any{"action": "list", "request_id": q.rid, "data": data}})
	return [][]byte{a, b}
}

func (q *LiveQuery) frame(p *payload) {
	var changes []Change
	var failed error
	q.mu.Lock()
	switch {
	case q.stopped:
	case p.Action == "subscribe_list" || (p.Action == "list" && !p.ok()):
		if !p.ok() {
			failed = errorOf(p)
		}
	case p.Action == "list":
		var list []json.RawMessage
		if err := json.Unmarshal(p.Data, &list); err != nil {
			failed = fmt.Errorf("client: live query %s: %w", q.resource, err)
			break
		}
		changes = q.resetLocked(list)
		for _, e := range q.buffer {
			changes = append(changes, q.applyLocked(e)...)
		}
		q.buffering, q.buffer = false, nil
	case q.buffering:
		q.buffer = append(q.buffer, p)
	default:
		changes = q.applyLocked(p)
	}
	first := !q.loaded && (failed != nil || p.Action == "list")
	if first {
		q.loaded = true
	}
	q.mu.Unlock()
	if failed != nil {
		q.stop()
		if !first {
			q.c.report(failed)
		}
	}
	if first {
		q.ready <- failed
		if failed == nil {
			changes = nil // the first rows are the result, not changes
		}
	}
	if q.o.OnChange != nil {
		for _, ch := range changes {
			q.o.OnChange(ch)
		}
	}
}

func (q *LiveQuery) row(raw json.RawMessage) liveRow {
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	if q.o.PKField == "" {
		q.o.PKField = "id"
		if _, ok := fields["pk"]; ok {
			q.o.PKField = "pk"
		}
	}
	pk, _ := json.Marshal(fields[q.o.PKField])
	return liveRow{pk: string(pk), raw: raw, fields: fields}
}

// resetLocked replaces the rows with a fresh list and returns the
// difference.
func (q *LiveQuery) resetLocked(list []json.RawMessage) []Change {
	old := make(map[string]liveRow, len(q.rows))
	for _, r := range q.rows {
		old[r.pk] = r
	}
	next := make([]liveRow, len(list))
	seen := make(map[string]bool, len(list))
	var changes []Change
	for i, raw := range list {
		r := q.row(raw)
		next[i] = r
		seen[r.pk] = true
		if prev, ok := old[r.pk]; !ok {
			changes = append(changes, Change{Kind: Enter, Row: raw})
		} else if !bytes.Equal(prev.raw, raw) {
			changes = append(changes, Change{Kind: Update, Row: raw, Previous: prev.raw})
		}
	}
	for _, r := range q.rows {
		if !seen[r.pk] {
			changes = append(changes, Change{Kind: Leave, Row: r.raw})
		}
	}
	q.rows = next
	return changes
}

// applyLocked applies one event.
func (q *LiveQuery) applyLocked(p *payload) []Change {
	switch p.Action {
	case "delete":
		var d map[string]json.RawMessage
		json.Unmarshal(p.Data, &d)
		pk, ok := d["pk"]
		if !ok {
			pk = d[q.o.PKField]
		}
		for i, r := range q.rows {
			if r.pk == string(pk) {
				q.rows = append(q.rows[:i:i], q.rows[i+1:]...)
				return []Change{{Kind: Leave, Row: r.raw}}
			}
		}
	case "create", "update":
		r := q.row(p.Data)
		at := -1
		var prev liveRow
		for i, x := range q.rows {
			if x.pk == r.pk {
				at, prev = i, x
				break
			}
		}
		rows := q.rows[:len(q.rows):len(q.rows)]
		if at >= 0 {
			rows = append(rows[:at:at], rows[at+1:]...)
		}
		switch {
		case len(q.o.Ordering) > 0:
			i := 0
			for i < len(rows) && q.compare(rows[i], r) <= 0 {
				i++
			}
			rows = append(rows[:i:i], append([]liveRow{r}, rows[i:]...)...)
		case at >= 0:
			rows = append(rows[:at:at], append([]liveRow{r}, rows[at:]...)...)
		default:
			rows = append(rows, r)
		}
		q.rows = rows
		if at >= 0 {
			return []Change{{Kind: Update, Row: r.raw, Previous: prev.raw}}
		}
		return []Change{{Kind: Enter, Row: r.raw}}
	}
	return nil
}

func (q *LiveQuery) compare(a, b liveRow) int {
	for _, f := range q.o.Ordering {
		desc := strings.HasPrefix(f, "-")
		f = strings.TrimPrefix(f, "-")
		c := compareValues(a.fields[f], b.fields[f])
		if c != 0 {
			if desc {
				return -c
			}
			return c
		}
	}
	return compareValues(a.fields[q.o.PKField], b.fields[q.o.PKField])
}

// compareValues orders JSON values: null first, then numbers, strings and
// booleans by their natural order.
func compareValues(x, y any) int {
	switch {
	case x == nil && y == nil:
		return 0
	case x == nil:
		return -1
	case y == nil:
		return 1
	}
	switch a := x.(type) {
	case float64:
		if b, ok := y.(float64); ok {
			switch {
			case a < b:
				return -1
			case a > b:
				return 1
			}
			return 0
		}
	case string:
		if b, ok := y.(string); ok {
			return strings.Compare(a, b)
		}
	case bool:
		if b, ok := y.(bool); ok && a != b {
			if !a {
				return -1
			}
			return 1
		}
		return 0
	}
	return 0
}

func (q *LiveQuery) stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.unhandle()
	q.c.removeResubscriber(q)
}

// Close ends the live query.
func (q *LiveQuery) Close(ctx context.Context) error {
	q.stop()
	if q.c.State() != Connected {
		return nil
	}
	_, err := q.c.requestAs(ctx, q.resource, map[string]any{"action": "unsubscribe_list"}, q.rid)
	return err
}
