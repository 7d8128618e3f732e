package resource

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"unique"

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

// Ended reports whether the record became unreadable to the actor: the
// watch was told with one Deleted and passes nothing more.
func (w *InstanceWatch) Ended() bool { return w.ended }

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
// filter and that its actor may read. It keeps no state: Apply is safe
// for concurrent use.
type LiveQuery struct {
	sc    *Schema
	who   Actor
	read  readRule
	conds []store.Cond
	pks   map[int64]bool
	// shape identifies the filter (conds and pks): live queries with the
	// same shape select the same records, so a broadcast evaluates each
	// shape once (View).
	shape unique.Handle[string]
}

// readRule is the read permission of a live query's actor, resolved at
// subscribe time: only an owner rule depends on the record.
type readRule uint8

const (
	readAll   readRule = iota // anyone, authenticated (with a user), the server
	readOwner                 // owner:<field>: the record's field must be the actor's user
)

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
	switch _, owned := sc.owner["read"]; {
	case who.Server || !owned:
		q.read = readAll // allowed above, and nothing of the record decides
	default:
		q.read = readOwner
	}
	key := make([]byte, 0, 64)
	for _, c := range conds {
		key = fmt.Appendf(key, "%q=%T:%v;", c.Column, c.Value, c.Value)
	}
	if f.PKs != nil {
		pks := append([]int64(nil), f.PKs...)
		slices.Sort(pks)
		pks = slices.Compact(pks)
		q.pks = make(map[int64]bool, len(pks))
		key = append(key, "pks:"...)
		for _, pk := range pks {
			q.pks[pk] = true
			key = strconv.AppendInt(append(key, ','), pk, 10)
		}
	}
	q.shape = unique.Make(string(key))
	return q, nil
}

// View is an event as the live queries of one broadcast evaluate it: what
// every subscriber shares (the owner of the record before and after the
// change, each filter's verdict) is worked out once. Build one per event
// with NewView; it is not safe for concurrent use (a broadcast runs on one
// goroutine).
type View struct {
	ev *Event
	sc *Schema // the schema the owners below were read with
	// owner of the record before [0] and after [1] the change, for an
	// owner:<field> read rule; ok false when there is no such record or
	// the field is not a string.
	owner   [2]string
	ownerOK [2]bool
	memo    []verdict
}

// verdict is whether the records before and after the change meet one
// filter shape.
type verdict struct {
	shape   unique.Handle[string]
	matches [2]bool
}

// NewView returns the view of an event for its live queries.
func NewView(ev *Event) *View { return &View{ev: ev} }

// Event returns the viewed event.
func (v *View) Event() *Event { return v.ev }

func (v *View) owners(sc *Schema) {
	if v.sc == sc {
		return
	}
	v.sc = sc
	field := sc.owner["read"]
	for i, row := range [2]store.Row{v.ev.BeforeRow, v.ev.Row} {
		v.owner[i], v.ownerOK[i] = "", false
		if row != nil && field != "" {
			v.owner[i], v.ownerOK[i] = ownerID(row[field])
		}
	}
}

// filtered returns whether the records before and after the change meet
// the query's filter, once per shape.
func (v *View) filtered(q *LiveQuery) [2]bool {
	for i := range v.memo {
		if v.memo[i].shape == q.shape {
			return v.memo[i].matches
		}
	}
	var m [2]bool
	for i, row := range [2]store.Row{v.ev.BeforeRow, v.ev.Row} {
		if row == nil {
			continue
		}
		if q.pks != nil {
			id, _ := row["id"].(int64)
			if !q.pks[id] {
				continue
			}
		}
		m[i] = matches(row, q.conds)
	}
	if len(v.memo) < maxVerdicts {
		v.memo = append(v.memo, verdict{q.shape, m})
	}
	return m
}

// maxVerdicts bounds a view's memo: past it (many distinct filters on one
// collection) each filter is evaluated per subscriber.
const maxVerdicts = 16

// Apply returns what the subscriber receives of an event of its
// resource: Updated while the record stays in the query, Created when it
// enters, Deleted when it leaves (deleted, out of the filter, or no longer
// readable by the actor), Skip otherwise. Whether the record was in the
// query is decided on the event's record before the change, which a
// Sequencer makes the state the process last delivered: pass a
// collection's events through one first.
func (q *LiveQuery) Apply(v *View) Delivery {
	ev := v.ev
	if ev.Resource != q.sc.Name() {
		return Delivery{}
	}
	m := v.filtered(q)
	var readable [2]bool
	switch q.read {
	case readAll:
		readable = [2]bool{ev.BeforeRow != nil, ev.Row != nil}
	case readOwner:
		v.owners(q.sc)
		for i := range readable {
			readable[i] = v.ownerOK[i] && v.owner[i] == q.who.User
		}
	}
	was, is := m[0] && readable[0], m[1] && readable[1]
	d := Delivery{PK: ev.PK, Seq: ev.Seq}
	switch {
	case was && is:
		d.Action, d.Record = Updated, ev.Data
	case is:
		d.Action, d.Record = Created, ev.Data
	case was:
		d.Action = Deleted
		if readable[0] {
			d.Record = ev.Before
		}
	}
	return d
}

// DefaultSequencerSize is how many records a Sequencer remembers by
// default.
const DefaultSequencerSize = 4096

// Sequencer keeps one wire's resource events of collections in per-record
// commit order on this process. Events of one record published by
// different processes (several servers on one PostgreSQL) may reach a
// process out of order; Admit drops an event at or below the last seq
// delivered for its record, and gives a later one, as its record before
// the change, the state the process last delivered, so live queries
// decide entering and leaving against what their subscribers were last
// told. It remembers the most recently changed records (a bounded
// number: the oldest is forgotten first, and its next event's own record
// before the change is used). Each wire (each hub encoder) owns one, and
// passes each collection broadcast through it once. It is safe for
// concurrent use.
type Sequencer struct {
	mu   sync.Mutex
	size int
	last map[recordKey]lastState
	ring []recordKey
	next int
}

type recordKey struct {
	resource string
	pk       int64
}

type lastState struct {
	seq  int64
	row  store.Row
	data json.RawMessage
}

// NewSequencer returns a Sequencer remembering up to size records (<= 0:
// DefaultSequencerSize).
func NewSequencer(size int) *Sequencer {
	if size <= 0 {
		size = DefaultSequencerSize
	}
	return &Sequencer{size: size, last: make(map[recordKey]lastState)}
}

// Admit returns the event as this process's subscribers see it, or false
// when it is late (its record had a later change delivered already) or a
// duplicate.
func (q *Sequencer) Admit(ev *Event) (*Event, bool) {
	k := recordKey{ev.Resource, ev.PK}
	q.mu.Lock()
	defer q.mu.Unlock()
	prev, known := q.last[k]
	if known && ev.Seq <= prev.seq {
		return nil, false
	}
	if !known {
		if len(q.ring) < q.size {
			q.ring = append(q.ring, k)
		} else {
			delete(q.last, q.ring[q.next])
			q.ring[q.next] = k
			q.next = (q.next + 1) % q.size
		}
	}
	q.last[k] = lastState{seq: ev.Seq, row: ev.Row, data: ev.Data}
	if known && prev.seq != ev.Seq && !sameState(prev.data, ev.Before) {
		out := *ev
		out.BeforeRow, out.Before = prev.row, prev.data
		return &out, true
	}
	return ev, true
}

// sameState compares two encodings of a record (Schema.Encode is
// deterministic).
func sameState(a, b json.RawMessage) bool { return string(a) == string(b) }
