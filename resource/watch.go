package resource

import (
	"context"
	"encoding/json"

	"github.com/switchyardhq/switchyard/store"
)

// Who receives what. The service decides, on every delivery, what each
// subscription receives of an event, with the rules of a read: a
// subscriber is told of a record only in a state its actor may read
// (retrieve's and list's rules, evaluated on the record the event carries)
// and, for a live query, that matches its filter. Protocol adapters hold
// one InstanceWatch or LiveQuery per subscription, pass every event of its
// channel through Apply, and encode what comes out; they decide nothing.

// Action is what a subscription is told of an event.
type Action uint8

// Actions.
const (
	// Skip: nothing (the record is not the subscription's, or the event is
	// one it already had).
	Skip Action = iota
	// Created: the record entered the subscription (it was created, or
	// it changed into the filter or into what the actor may read).
	Created
	// Updated: the record changed and stays in the subscription.
	Updated
	// Deleted: the record left the subscription (it was deleted, or it
	// changed out of the filter or out of what the actor may read).
	Deleted
)

// String returns DCRF's name of the action: create, update, delete.
func (a Action) String() string {
	switch a {
	case Created:
		return "create"
	case Updated:
		return "update"
	case Deleted:
		return "delete"
	}
	return "skip"
}

// Delivery is an event as one subscription receives it.
type Delivery struct {
	Action Action
	PK     int64
	Seq    int64
	// Record is the record as the change left it (Created, Updated). For
	// Deleted it is the record as it was before the change when the actor
	// may read that state (live queries show it to subscribe_many), nil
	// otherwise.
	Record json.RawMessage
}

// InstanceWatch is a subscription to one record. Apply is not safe for
// concurrent use: the caller serialises it (one connection's lock).
type InstanceWatch struct {
	sc  *Schema
	who Actor
	pk  int64
	// seq is the last change applied (or the position a catch-up brought
	// the subscriber to): a change at or below it is a late duplicate.
	seq int64
	// ended: the record became invisible to the actor; it was told with
	// one Deleted and hears nothing more.
	ended bool
}

// WatchInstance subscribes an actor to a record, with retrieve's checks:
// ErrForbidden when it may read nothing of the resource, ErrNotFound when
// the record does not exist for it.
func (s *Service) WatchInstance(ctx context.Context, name string, who Actor, pk int64) (*InstanceWatch, error) {
	sc, _, err := s.readable(ctx, name, who, pk)
	if err != nil {
		return nil, err
	}
	return &InstanceWatch{sc: sc, who: who, pk: pk}, nil
}

// Seq returns the position of the last change applied.
func (w *InstanceWatch) Seq() int64 { return w.seq }

// Apply returns what the subscriber receives of an event of its record:
// the change while the actor may read the record as the change left it; a
// delete when it is deleted; when it becomes unreadable (its owner
// changed), one Deleted and, from then on, nothing. An event at or below
// the last one applied is a duplicate or came late (another process
// published it): Skip, so the subscriber never goes back in time.
func (w *InstanceWatch) Apply(ev *Event) Delivery {
	if w.ended || ev.PK != w.pk || ev.Resource != w.sc.Name() {
		return Delivery{}
	}
	if ev.Seq != 0 && ev.Seq <= w.seq {
		return Delivery{}
	}
	w.seq = max(w.seq, ev.Seq)
	d := Delivery{PK: ev.PK, Seq: ev.Seq}
	switch {
	case ev.Op == store.OpDelete:
		d.Action = Deleted
	case !w.sc.readable(w.who, ev.Row):
		w.ended = true
		d.Action = Deleted
	default:
		d.Action, d.Record = Updated, ev.Data
		if ev.Op == store.OpCreate {
			d.Action = Created
		}
	}
	return d
}

// LiveFilter selects the records of a live query.
type LiveFilter struct {
	// Filter: field (or primary key) → value, checked as List checks it.
	Filter map[string]json.RawMessage
	// PKs, when not nil, limits the query to these records
	// (subscribe_many's things).
	PKs []int64
}

// LiveQuery is a subscription to the records of a resource that match a
// filter and that its actor may read. Apply is not safe for concurrent
// use: the caller serialises it (one connection's lock).
type LiveQuery struct {
	sc     *Schema
	who    Actor
	conds  []store.Cond
	pks    map[int64]bool
	recent recent
}

// LiveQuery subscribes an actor to a resource's records with list's
// checks: ErrForbidden when it may not list the resource (read none, or
// authenticated or owner:<field> for an anonymous actor), a
// *ValidationError for a filter list would refuse.
func (s *Service) LiveQuery(name string, who Actor, f LiveFilter) (*LiveQuery, error) {
	sc, err := s.schema(name)
	if err != nil {
		return nil, err
	}
	if !sc.allowed("read", who, nil) {
		return nil, ErrForbidden
	}
	verr := &ValidationError{}
	conds := sc.filter(f.Filter, verr)
	if len(verr.Fields) > 0 {
		return nil, verr
	}
	q := &LiveQuery{sc: sc, who: who, conds: conds}
	if f.PKs != nil {
		q.pks = make(map[int64]bool, len(f.PKs))
		for _, pk := range f.PKs {
			q.pks[pk] = true
		}
	}
	return q, nil
}

// visible reports whether a record (nil: none) is in the query for its
// actor.
func (q *LiveQuery) visible(row store.Row) bool {
	if row == nil {
		return false
	}
	if q.pks != nil {
		id, _ := row["id"].(int64)
		if !q.pks[id] {
			return false
		}
	}
	return matches(row, q.conds) && q.sc.allowed("read", q.who, row)
}

// Apply returns what the subscriber receives of an event of its
// resource: Updated while the record stays in the query, Created when it
// enters, Deleted when it leaves (deleted, out of the filter, or no longer
// readable by the actor) — each exactly once — and Skip otherwise.
//
// Whether the record was in the query is what the subscriber was last
// told of it when that is remembered (the most recently changed records),
// and otherwise the record before the change; an event at or below the
// last one applied to its record is Skip. So events that reach a process
// out of order (two processes publishing changes of one record) never
// take a subscriber back in time.
func (q *LiveQuery) Apply(ev *Event) Delivery {
	if ev.Resource != q.sc.Name() {
		return Delivery{}
	}
	last, known := q.recent.get(ev.PK)
	if known && ev.Seq != 0 && ev.Seq <= last.seq {
		return Delivery{}
	}
	was := q.visible(ev.BeforeRow)
	if known {
		was = last.visible
	}
	is := q.visible(ev.Row)
	q.recent.put(ev.PK, ev.Seq, is)
	d := Delivery{PK: ev.PK, Seq: ev.Seq}
	switch {
	case was && is:
		d.Action, d.Record = Updated, ev.Data
	case is:
		d.Action, d.Record = Created, ev.Data
	case was:
		d.Action = Deleted
		if ev.BeforeRow != nil && q.sc.allowed("read", q.who, ev.BeforeRow) {
			d.Record = ev.Before
		}
	}
	return d
}

// recentSize bounds how many records a live query remembers: enough to
// cover events reordered between processes (milliseconds apart), small
// enough to cost little per subscription.
const recentSize = 32

// recent remembers, for the records a subscription heard of last, the
// seq of the last change applied and whether the record was in the
// subscription after it. The oldest entry makes room for a new one.
type recent struct {
	m    map[int64]seen
	ring []int64
	next int
}

type seen struct {
	seq     int64
	visible bool
}

func (r *recent) get(pk int64) (seen, bool) {
	s, ok := r.m[pk]
	return s, ok
}

func (r *recent) put(pk, seq int64, visible bool) {
	if r.m == nil {
		r.m = make(map[int64]seen, 4)
	}
	if _, ok := r.m[pk]; !ok {
		if len(r.ring) < recentSize {
			r.ring = append(r.ring, pk)
		} else {
			delete(r.m, r.ring[r.next])
			r.ring[r.next] = pk
			r.next = (r.next + 1) % recentSize
		}
	}
	r.m[pk] = seen{seq: seq, visible: visible}
}
