package resource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
)

// Write is a write about to happen, as hooks see it.
type Write struct {
	Resource string
	User     string // "" when anonymous or the server
	// Server is true for a write by the server itself (the Go API, or the
	// REST API called with an API key): no permission applied.
	Server bool
	Op     store.Op
	PK     int64 // 0 on create
	// Row holds the validated values to store (all fields on create and
	// update, those sent on patch); BeforeWrite may change it.
	Row store.Row
	// Current is the stored record before the write (nil on create).
	Current store.Row
}

// Hooks are application code around a resource's writes, for what a
// configuration file cannot express. Declared through the Go API
// (server.Options.ResourceHooks).
type Hooks struct {
	// Validate runs after the fields were validated, before anything is
	// written; an error refuses the write: a *ValidationError reports
	// field errors (400 with {"field": ["msg"]}), a *switchyard.Error its
	// own code, anything else is an internal error.
	Validate func(ctx context.Context, w Write) error
	// BeforeWrite runs after Validate and may change w.Row (fill computed
	// fields); an error refuses the write like Validate's.
	BeforeWrite func(ctx context.Context, w *Write) error
	// AfterWrite runs after the write committed (creates, updates and
	// deletes), before subscribers are notified, in commit order per
	// resource (see ServiceConfig.OnChange). It may write, to its own
	// resource too, with the ctx it is given: that write returns at once,
	// and its event follows this one.
	AfterWrite func(ctx context.Context, ev Event)
	// InTx runs inside the write's transaction, after the write and
	// before its commit, with the transaction (a pgx.Tx on PostgreSQL)
	// and the write's event (the record with its primary key): what it
	// does in tx commits with the write or not at all, so
	// queue.Queue.EnqueueTx(ctx, tx, …) enqueues a job that exists if and
	// only if the write committed. An error rolls the write back and is
	// the write's error, as Validate's. It needs a store that writes in
	// explicit transactions (store.TxWriter: PostgreSQL); NewService
	// refuses it on another. Every other write of the store waits while
	// it runs: keep it short, and do not write resources from it (such a
	// write fails; use tx).
	InTx func(ctx context.Context, tx store.Tx, ev Event) error
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	Store     store.Store
	Resources []config.Resource
	// Hooks by resource name.
	Hooks map[string]Hooks
	// OnChange is called after each write committed, in commit order per
	// resource, before the write returns (nil: no events); so are the
	// AfterWrite hooks. A write made from a hook with the ctx it was given
	// returns at once, its event following the one being emitted.
	OnChange func(ctx context.Context, ev Event)
}

// Service runs create, retrieve, list, update, patch and delete with the
// resources' rules. It is safe for concurrent use.
type Service struct {
	st       store.Store
	schemas  map[string]*Schema
	hooks    map[string]Hooks
	onChange func(context.Context, Event)
	emitters map[string]*emitter // by resource; the map is fixed by NewService
}

// inHook marks the context hooks and OnChange are given.
type inHook struct{}

// inTxHook marks the context InTx hooks are given.
type inTxHook struct{}

// errWriteInTx refuses a resource write made from an InTx hook: it would
// wait for the hook's own transaction forever.
var errWriteInTx = errors.New("resource: a write from an InTx hook would wait for its own transaction forever: use the hook's transaction")

// write runs a store write, with the resource's InTx hook inside its
// transaction when it has one.
func (s *Service) write(ctx context.Context, sc *Schema, before store.Row, write func(ctx context.Context) (store.Row, store.Change, error)) (store.Row, store.Change, error) {
	h := s.hooks[sc.Name()]
	if h.InTx == nil {
		return write(ctx)
	}
	var (
		row store.Row
		ch  store.Change
	)
	err := s.st.(store.TxWriter).WriteTx(ctx, func(ctx context.Context) error {
		var err error
		row, ch, err = write(ctx)
		return err
	}, func(ctx context.Context, tx store.Tx) error {
		return h.InTx(context.WithValue(ctx, inTxHook{}, true), tx, s.event(sc, ch, before))
	})
	if err != nil {
		return nil, store.Change{}, err
	}
	return row, ch, nil
}

// NewService builds the schemas and migrates the store to them.
func NewService(ctx context.Context, cfg ServiceConfig) (*Service, error) {
	s := &Service{st: cfg.Store, schemas: map[string]*Schema{}, hooks: cfg.Hooks, onChange: cfg.OnChange, emitters: map[string]*emitter{}}
	for name, h := range cfg.Hooks {
		found := false
		for _, r := range cfg.Resources {
			found = found || r.Name == name
		}
		if !found {
			return nil, fmt.Errorf("resource: hooks for %q, which is not declared", name)
		}
		if _, ok := cfg.Store.(store.TxWriter); h.InTx != nil && !ok {
			return nil, fmt.Errorf("resource: %s: an InTx hook needs a store that writes in explicit transactions (PostgreSQL: store.driver postgres)", name)
		}
	}
	var tables []store.Table
	for _, r := range cfg.Resources {
		sc, err := NewSchema(r)
		if err != nil {
			return nil, err
		}
		s.schemas[r.Name] = sc
		s.emitters[r.Name] = &emitter{}
		tables = append(tables, sc.Table())
	}
	if err := cfg.Store.Migrate(ctx, tables); err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	return s, nil
}

// Position returns the store's change-log position: the Seq of the
// newest change committed. Events of changes after it may still come;
// a subscription made now passes Position()+1 to the hub as its ordering
// floor (hub.SubscribeSilentFrom).
func (s *Service) Position(ctx context.Context) (int64, error) {
	return s.st.Position(ctx)
}

// Schema returns a resource's schema.
func (s *Service) Schema(name string) (*Schema, bool) {
	sc, ok := s.schemas[name]
	return sc, ok
}

// Conditions callers branch on (with errors.Is); each is a
// *switchyard.Error with DRF's message, so adapters show it as is.
var (
	// ErrForbidden: the caller may not perform the action (403).
	ErrForbidden = switchyard.Errorf(switchyard.CodeForbidden, "You do not have permission to perform this action.")
	// ErrNotFound: no such record for this caller (404): missing, or
	// another owner's.
	ErrNotFound = switchyard.Errorf(switchyard.CodeNotFound, "Not found.")
	// ErrUnknownResource: no resource of that name (404).
	ErrUnknownResource = errors.New("resource: unknown resource")
)

// Actor is who performs an operation: a user of a connection or request,
// or the server itself.
type Actor struct {
	// User is the authenticated user ("" when anonymous).
	User string
	// Server is the application's own code (the Go API, the REST API
	// called with an API key): no permission applies to it, and it may
	// set and change owner fields.
	Server bool
}

// As returns the actor of a user ("" for an anonymous one).
func As(user string) Actor { return Actor{User: user} }

// AsServer returns the actor of the application's own code.
func AsServer() Actor { return Actor{Server: true} }

func (s *Service) schema(name string) (*Schema, error) {
	sc, ok := s.schemas[name]
	if !ok {
		return nil, switchyard.Wrap(ErrUnknownResource, switchyard.CodeNotFound, "unknown resource %q", name)
	}
	return sc, nil
}

// storeError maps store errors to client errors.
func (s *Service) storeError(sc *Schema, err error) error {
	var ce *store.ConflictError
	var se *store.SchemaError
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case errors.As(err, &ce):
		return &ValidationError{Fields: map[string][]string{ce.Column: {fmt.Sprintf("%s with this %s already exists.", sc.Name(), ce.Column)}}}
	case errors.As(err, &se):
		// A value the database refused (an existing table's type or
		// constraint): the client's to fix.
		field := se.Column
		if field == "" {
			field = "non_field_errors"
		}
		return &ValidationError{Fields: map[string][]string{field: {se.Problem}}}
	}
	return err
}

// before runs the Validate and BeforeWrite hooks of a write.
func (s *Service) before(ctx context.Context, w *Write) error {
	h := s.hooks[w.Resource]
	if h.Validate != nil {
		if err := h.Validate(ctx, *w); err != nil {
			return err
		}
	}
	if h.BeforeWrite != nil {
		return h.BeforeWrite(ctx, w)
	}
	return nil
}

// event is the event of a change.
func (s *Service) event(sc *Schema, ch store.Change, before store.Row) Event {
	ev := Event{Resource: sc.Name(), PK: ch.ID, Op: ch.Op, Seq: ch.Seq, Prev: ch.Prev, Row: ch.Row, BeforeRow: before}
	if ch.Row != nil {
		ev.Data = sc.Encode(ch.Row)
	}
	if before != nil {
		ev.Before = sc.Encode(before)
	}
	return ev
}

func (s *Service) emit(ctx context.Context, sc *Schema, ch store.Change, before store.Row) {
	h := s.hooks[sc.Name()]
	if s.onChange == nil && h.AfterWrite == nil {
		return
	}
	ev := s.event(sc, ch, before)
	if h.AfterWrite != nil {
		h.AfterWrite(ctx, ev)
	}
	if s.onChange != nil {
		s.onChange(ctx, ev)
	}
}

// Create validates and stores a new record and returns it.
func (s *Service) Create(ctx context.Context, name string, who Actor, body json.RawMessage) (json.RawMessage, error) {
	sc, err := s.schema(name)
	if err != nil {
		return nil, err
	}
	if !sc.allowed("create", who, nil) {
		return nil, ErrForbidden
	}
	row, err := sc.Decode(body, Create, who)
	if err != nil {
		return nil, err
	}
	w := Write{Resource: name, User: who.User, Server: who.Server, Op: store.OpCreate, Row: row}
	if err := s.before(ctx, &w); err != nil {
		return nil, err
	}
	stored, err := s.commit(ctx, sc, nil, func(ctx context.Context) (store.Row, store.Change, error) {
		return s.st.Insert(ctx, name, w.Row)
	})
	if err != nil {
		return nil, s.storeError(sc, err)
	}
	return sc.Encode(stored), nil
}

// Retrieve returns one record.
func (s *Service) Retrieve(ctx context.Context, name string, who Actor, pk int64) (json.RawMessage, error) {
	sc, row, err := s.readable(ctx, name, who, pk)
	if err != nil {
		return nil, err
	}
	return sc.Encode(row), nil
}

// readable loads a record the actor may read: 403 when it may read none
// of the resource, 404 when the record does not exist for it.
func (s *Service) readable(ctx context.Context, name string, who Actor, pk int64) (*Schema, store.Row, error) {
	sc, err := s.schema(name)
	if err != nil {
		return nil, nil, err
	}
	if !sc.allowed("read", who, nil) {
		return nil, nil, ErrForbidden
	}
	row, err := s.st.Get(ctx, name, pk)
	if err != nil {
		return nil, nil, s.storeError(sc, err)
	}
	if !sc.allowed("read", who, row) {
		return nil, nil, ErrNotFound // another user's record does not exist for this one
	}
	return sc, row, nil
}

// Write changes a record: update (all writable fields) or patch (those
// sent).
func (s *Service) Write(ctx context.Context, name string, who Actor, pk int64, body json.RawMessage, mode Mode) (json.RawMessage, error) {
	sc, err := s.schema(name)
	if err != nil {
		return nil, err
	}
	if !sc.allowed("update", who, nil) {
		return nil, ErrForbidden
	}
	current, err := s.st.Get(ctx, name, pk)
	if err != nil {
		return nil, s.storeError(sc, err)
	}
	if !sc.allowed("update", who, current) {
		if sc.allowed("read", who, current) {
			return nil, ErrForbidden
		}
		return nil, ErrNotFound
	}
	set, err := sc.Decode(body, mode, who)
	if err != nil {
		return nil, err
	}
	w := Write{Resource: name, User: who.User, Server: who.Server, Op: store.OpUpdate, PK: pk, Row: set, Current: current}
	if err := s.before(ctx, &w); err != nil {
		return nil, err
	}
	stored, err := s.commit(ctx, sc, current, func(ctx context.Context) (store.Row, store.Change, error) {
		return s.st.Update(ctx, name, pk, w.Row)
	})
	if err != nil {
		return nil, s.storeError(sc, err)
	}
	return sc.Encode(stored), nil
}

// Delete removes a record.
func (s *Service) Delete(ctx context.Context, name string, who Actor, pk int64) error {
	sc, err := s.schema(name)
	if err != nil {
		return err
	}
	if !sc.allowed("delete", who, nil) {
		return ErrForbidden
	}
	current, err := s.st.Get(ctx, name, pk)
	if err != nil {
		return s.storeError(sc, err)
	}
	if !sc.allowed("delete", who, current) {
		if sc.allowed("read", who, current) {
			return ErrForbidden
		}
		return ErrNotFound
	}
	w := Write{Resource: name, User: who.User, Server: who.Server, Op: store.OpDelete, PK: pk, Current: current}
	if err := s.before(ctx, &w); err != nil {
		return err
	}
	_, err = s.commit(ctx, sc, current, func(ctx context.Context) (store.Row, store.Change, error) {
		ch, err := s.st.Delete(ctx, name, pk)
		return nil, ch, err
	})
	if err != nil {
		return s.storeError(sc, err)
	}
	return nil
}

// ListQuery narrows a list. Filter values are JSON values of the fields'
// types; Ordering names fields (or the primary key), "-" for descending;
// Limit 0 means the resource's page size is not applied (a bare list).
type ListQuery struct {
	Filter   map[string]json.RawMessage
	Search   string
	Ordering []string
	Limit    int
	Offset   int
}

// ListResult is a page of records and how many match in all.
type ListResult struct {
	Count   int
	Results []json.RawMessage
}

// List returns the records an actor may read that match q. Filters,
// ordering and search on undeclared fields are refused (400) before any
// query runs.
func (s *Service) List(ctx context.Context, name string, who Actor, q ListQuery) (ListResult, error) {
	sc, err := s.schema(name)
	if err != nil {
		return ListResult{}, err
	}
	if !sc.allowed("read", who, nil) {
		return ListResult{}, ErrForbidden
	}
	sq := store.Query{Limit: q.Limit, Offset: q.Offset}
	verr := &ValidationError{}
	sq.Where = sc.filter(q.Filter, verr)
	cond, limited, none := sc.ownerCond(who)
	if limited {
		sq.Where = append(sq.Where, cond)
	}
	if q.Search != "" {
		if len(sc.r.Search) == 0 {
			verr.add("search", "This resource declares no search fields.")
		}
		sq.Search, sq.SearchColumns = q.Search, sc.r.Search
	}
	ordering := q.Ordering
	if len(ordering) == 0 {
		ordering = sc.r.Ordering
	}
	for _, o := range ordering {
		desc := strings.HasPrefix(o, "-")
		field := strings.TrimPrefix(o, "-")
		switch {
		case field == sc.PK() || field == "id":
			sq.OrderBy = append(sq.OrderBy, store.Order{Column: "id", Desc: desc})
		default:
			if _, ok := sc.Field(field); !ok {
				verr.add("ordering", fmt.Sprintf("Invalid ordering field %q.", field))
				continue
			}
			sq.OrderBy = append(sq.OrderBy, store.Order{Column: field, Desc: desc})
		}
	}
	if q.Limit < 0 || q.Offset < 0 {
		verr.add("non_field_errors", "limit and offset must be >= 0.")
	}
	if len(verr.Fields) > 0 {
		return ListResult{}, verr
	}
	if none {
		return ListResult{Results: []json.RawMessage{}}, nil
	}
	rows, n, err := s.st.List(ctx, name, sq)
	if err != nil {
		return ListResult{}, s.storeError(sc, err)
	}
	out := ListResult{Count: n, Results: make([]json.RawMessage, len(rows))}
	for i, r := range rows {
		out.Results[i] = sc.Encode(r)
	}
	return out, nil
}
