package resource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"testing"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

// typed is a resource with a field of every filterable type.
func typed(t *testing.T, read string) (*Service, *events) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "w.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ev := &events{}
	svc, err := NewService(context.Background(), ServiceConfig{Store: db, OnChange: ev.add, Resources: []config.Resource{{
		Name: "items",
		Fields: []config.Field{
			{Name: "name", Type: config.FieldString},
			{Name: "n", Type: config.FieldInt},
			{Name: "x", Type: config.FieldFloat},
			{Name: "ok", Type: config.FieldBool},
			{Name: "at", Type: config.FieldDatetime},
			{Name: "meta", Type: config.FieldJSON},
			{Name: "owner", Type: config.FieldString},
		},
		Permissions: config.ResourcePermissions{Read: read, Create: "authenticated", Update: "anyone", Delete: "anyone"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return svc, ev
}

// A live query and a list with the same filter select the same rows: the
// filter is checked the same way, and the service's evaluation of an
// event's record agrees with the store's query, for every type, null
// included — and for what each user may read.
func TestLiveQuerySelectsWhatListSelects(t *testing.T) {
	for _, read := range []string{"anyone", "owner:owner"} {
		svc, ev := typed(t, read)
		ctx := context.Background()
		rows := []string{
			`{"name": "a", "n": 1, "x": 1.5, "ok": true, "at": "2026-01-02T03:04:05Z"}`,
			`{"name": "A", "n": 2, "x": 1.0, "ok": false, "at": "2026-01-02T04:04:05+01:00"}`,
			`{"name": "a ", "n": 1, "x": 2, "ok": true}`,
			`{"name": null, "n": null, "x": null, "ok": null, "at": null}`,
			`{"name": "b", "n": -7, "x": 1e3, "ok": false, "at": "2026-01-02T03:04:05.5Z", "meta": {"k": 1}}`,
		}
		for i, body := range rows {
			user := []string{"alice", "bob"}[i%2]
			if _, err := svc.Create(ctx, "items", As(user), json.RawMessage(body)); err != nil {
				t.Fatal(err)
			}
		}
		filters := []string{
			`{}`, `{"name": "a"}`, `{"name": "A"}`, `{"name": null}`, `{"n": 1}`, `{"n": 1.0}`, `{"x": 1}`, `{"x": 1.5}`,
			`{"ok": true}`, `{"ok": false}`, `{"ok": null}`, `{"at": "2026-01-02T03:04:05Z"}`, `{"at": "2026-01-02T04:04:05+01:00"}`,
			`{"at": "2026-01-02T03:04:05.500Z"}`, `{"n": 1, "ok": true}`, `{"id": 3}`, `{"owner": "alice"}`,
		}
		for _, who := range []Actor{As("alice"), As("bob"), As(""), AsServer()} {
			for _, fs := range filters {
				var filter map[string]json.RawMessage
				json.Unmarshal([]byte(fs), &filter)
				res, lerr := svc.List(ctx, "items", who, ListQuery{Filter: filter})
				q, qerr := svc.LiveQuery("items", who, LiveFilter{Filter: filter})
				if (lerr == nil) != (qerr == nil) || switchyard.ErrorCode(lerr) != switchyard.ErrorCode(qerr) {
					t.Fatalf("%s %+v %s: list says %v, live query %v", read, who, fs, lerr, qerr)
				}
				if lerr != nil {
					continue
				}
				var listed, entered []int64
				for _, r := range res.Results {
					var m map[string]any
					json.Unmarshal(r, &m)
					listed = append(listed, int64(m["id"].(float64)))
				}
				for _, e := range ev.got {
					// Through the wire form, as a broadcast decodes it.
					dec, err := svc.DecodeEvent(e.Payload())
					if err != nil {
						t.Fatal(err)
					}
					if d := q.Apply(NewView(dec)); d.Action == Created {
						entered = append(entered, d.PK)
					}
				}
				sort.Slice(listed, func(i, j int) bool { return listed[i] < listed[j] })
				if fmt.Sprint(listed) != fmt.Sprint(entered) {
					t.Errorf("%s %+v %s: list selects %v, the live query %v", read, who, fs, listed, entered)
				}
			}
		}
	}
}

// Filters a list refuses, a live query refuses the same way (400 naming
// the field), and the read permission applies before any filter.
func TestLiveQueryChecks(t *testing.T) {
	svc, _ := typed(t, "anyone")
	for _, fs := range []string{`{"n": "one"}`, `{"nope": 1}`, `{"meta": {}}`, `{"at": "yesterday"}`, `{"ok": 1}`, `{"id": "x"}`} {
		var filter map[string]json.RawMessage
		json.Unmarshal([]byte(fs), &filter)
		_, err := svc.LiveQuery("items", As("alice"), LiveFilter{Filter: filter})
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Fields) != 1 {
			t.Errorf("%s: %v", fs, err)
		}
		if _, lerr := svc.List(context.Background(), "items", As("alice"), ListQuery{Filter: filter}); switchyard.ErrorCode(lerr) != switchyard.CodeBadRequest {
			t.Errorf("list %s: %v", fs, lerr)
		}
	}
	if _, err := svc.LiveQuery("nope", As("alice"), LiveFilter{}); !errors.Is(err, ErrUnknownResource) {
		t.Errorf("unknown resource: %v", err)
	}
	for read, refused := range map[string][]Actor{
		"none":          {As("alice"), As("")},
		"authenticated": {As("")},
		"owner:owner":   {As("")},
	} {
		svc, _ := typed(t, read)
		for _, who := range refused {
			if _, err := svc.LiveQuery("items", who, LiveFilter{}); !errors.Is(err, ErrForbidden) {
				t.Errorf("read %s, %+v: %v", read, who, err)
			}
		}
	}
}

func ev(seq int64, op store.Op, before, after store.Row) *Event {
	e := &Event{Resource: "items", PK: 1, Op: op, Seq: seq, Row: after, BeforeRow: before}
	if after != nil {
		e.Data = json.RawMessage(fmt.Sprintf(`{"seq":%d}`, seq))
	}
	if before != nil {
		e.Before = json.RawMessage(`{"before":true}`)
	}
	return e
}

// Events that reach a process out of order (two processes publishing
// changes of one record) never take a subscriber back: the Sequencer drops
// a late event, and gives a later one the state last delivered as its
// record before the change, so entering and leaving are decided against
// what subscribers were last told.
func TestSequencerKeepsCommitOrder(t *testing.T) {
	svc, _ := typed(t, "owner:owner")
	q, err := svc.LiveQuery("items", As("alice"), LiveFilter{})
	if err != nil {
		t.Fatal(err)
	}
	seq := NewSequencer(4)
	hers := store.Row{"id": int64(1), "owner": "alice"}
	his := store.Row{"id": int64(1), "owner": "bob"}
	hisToo := store.Row{"id": int64(1), "owner": "bob", "name": "x"}
	steps := []struct {
		ev   *Event
		want Action // Skip also for an event the sequencer drops
	}{
		{ev(1, store.OpCreate, nil, hers), Created},
		{ev(1, store.OpCreate, nil, hers), Skip}, // a duplicate
		// seq 3 (bob's, after 2 gave it to him) arrives before 2: its own
		// before is bob's, yet alice was last told she has it: it leaves.
		{ev(3, store.OpUpdate, his, hisToo), Deleted},
		{ev(2, store.OpUpdate, hers, his), Skip}, // late: already accounted for
		{ev(4, store.OpUpdate, hisToo, hers), Created},
	}
	for i, s := range steps {
		e, ok := seq.Admit(s.ev)
		got := Skip
		var d Delivery
		if ok {
			d = q.Apply(NewView(e))
			got = d.Action
		}
		if got != s.want {
			t.Fatalf("step %d (seq %d): %v, want %v", i, s.ev.Seq, got, s.want)
		}
		if d.Action == Deleted && string(d.Record) != `{"seq":1}` {
			t.Fatalf("step %d: a leave shows %s, not the state alice last had (seq 1)", i, d.Record)
		}
	}
	// Bounded memory: other records push the first out; its next event's
	// own before-state decides again, and nothing is dropped.
	for pk := int64(2); pk < 10; pk++ {
		if _, ok := seq.Admit(&Event{Resource: "items", PK: pk, Op: store.OpCreate, Seq: 10 + pk, Row: store.Row{"id": pk}}); !ok {
			t.Fatal("a new record dropped")
		}
	}
	if len(seq.last) != 4 || len(seq.ring) != 4 {
		t.Fatalf("remembers %d/%d records", len(seq.last), len(seq.ring))
	}
	if _, ok := seq.Admit(ev(2, store.OpUpdate, hers, his)); !ok {
		t.Fatal("a forgotten record's event dropped")
	}
}

func TestInstanceWatch(t *testing.T) {
	svc, _ := typed(t, "owner:owner")
	ctx := context.Background()
	out, err := svc.Create(ctx, "items", As("alice"), json.RawMessage(`{"name": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	json.Unmarshal(out, &rec)
	pk := int64(rec["id"].(float64))
	if _, err := svc.WatchInstance(ctx, "items", As("bob"), pk); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob watches alice's record: %v", err)
	}
	if _, err := svc.WatchInstance(ctx, "items", As(""), pk); !errors.Is(err, ErrForbidden) {
		t.Fatalf("anonymous watches an owned record: %v", err)
	}
	w, err := svc.WatchInstance(ctx, "items", As("alice"), pk)
	if err != nil {
		t.Fatal(err)
	}
	hers := store.Row{"id": pk, "owner": "alice"}
	his := store.Row{"id": pk, "owner": "bob"}
	mk := func(seq int64, before, after store.Row) *Event {
		e := ev(seq, store.OpUpdate, before, after)
		e.PK = pk
		return e
	}
	for i, s := range []struct {
		ev   *Event
		want Action
	}{
		{mk(5, hers, hers), Updated},
		{mk(4, hers, hers), Skip}, // late
		{mk(6, hers, his), Deleted},
		{mk(7, his, hers), Skip}, // ended: nothing more, even readable again
		{&Event{Resource: "items", PK: pk, Op: store.OpDelete, Seq: 8, BeforeRow: hers}, Skip},
	} {
		if d := w.Apply(s.ev); d.Action != s.want || (d.Action == Deleted && d.Record != nil) {
			t.Fatalf("step %d: %+v, want %v", i, d, s.want)
		}
	}
}

// DecodeEvent refuses what is not a resource event of a declared
// resource, so nobody receives it.
func TestDecodeEventRefusesGarbage(t *testing.T) {
	svc, _ := typed(t, "anyone")
	for _, in := range []string{
		``, `[]`, `{"resource": "nope", "op": "create", "pk": 1, "data": {"id": 1}}`,
		`{"resource": "items", "op": "explode", "pk": 1}`, `{"resource": "items", "op": "create", "pk": 1}`,
		`{"resource": "items", "op": "update", "pk": 1, "data": {"name": "no id"}}`,
		`{"resource": "items", "op": "update", "pk": 1, "data": {"id": 1, "n": "one"}}`,
		`{"resource": "items", "op": "update", "pk": 1, "data": {"id": 1, "at": "soon"}}`,
	} {
		if _, err := svc.DecodeEvent([]byte(in)); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%s: %v", in, err)
		}
	}
}
