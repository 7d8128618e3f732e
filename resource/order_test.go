package resource

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

// OnChange sees a resource's changes in commit order even when writers
// race: the change log's order.
func TestEventsInCommitOrder(t *testing.T) {
	svc, ev := service(t, config.ResourcePermissions{})
	ctx := context.Background()
	out, _ := svc.Create(ctx, "things", As(""), json.RawMessage(`{"name": "raced"}`))
	pk := int64(decode(t, out)["pk"].(float64))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				var err error
				switch i % 3 {
				case 0:
					_, err = svc.Write(ctx, "things", As(""), pk, json.RawMessage(fmt.Sprintf(`{"counter": %d}`, i)), Patch)
				case 1:
					_, err = svc.Create(ctx, "things", As(""), json.RawMessage(fmt.Sprintf(`{"name": "w%d-%d"}`, w, i)))
				default:
					_, err = svc.Write(ctx, "things", As(""), pk, json.RawMessage(fmt.Sprintf(`{"name": "w%d-%d"}`, w, i)), Update)
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.got) != 201 {
		t.Fatalf("%d events", len(ev.got))
	}
	inSeqOrder(t, ev.got, false)
}

// inSeqOrder fails t unless the events' seqs increase (consecutive: by
// exactly one each).
func inSeqOrder(t *testing.T, got []Event, consecutive bool) {
	t.Helper()
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq || consecutive && got[i].Seq != got[i-1].Seq+1 {
			t.Fatalf("event %d has seq %d after %d", i, got[i].Seq, got[i-1].Seq)
		}
	}
}

// A hook may write to its own resource: the write queues behind the event
// being emitted instead of waiting for it.
func TestHookWritesToItsOwnResource(t *testing.T) {
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "h.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ev := &events{}
	var svc *Service
	svc, err = NewService(context.Background(), ServiceConfig{Store: db, OnChange: ev.add,
		Resources: []config.Resource{{Name: "things", PKField: "pk", Fields: []config.Field{{Name: "name", Type: config.FieldString}}}},
		Hooks: map[string]Hooks{"things": {AfterWrite: func(ctx context.Context, e Event) {
			if e.Op == store.OpCreate && e.PK == 1 {
				if _, err := svc.Create(ctx, "things", As(""), json.RawMessage(`{"name": "audit"}`)); err != nil {
					t.Error(err)
				}
			}
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(context.Background(), "things", As(""), json.RawMessage(`{"name": "first"}`)); err != nil {
		t.Fatal(err)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.got) != 2 || ev.got[0].PK != 1 || ev.got[1].PK != 2 {
		t.Fatalf("events %+v", ev.got)
	}
}

// Hooks of two resources that write to each other, under racing writers,
// neither deadlock nor reorder: each resource's events stay in commit
// order.
func TestHooksWritingAcrossResources(t *testing.T) {
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "x.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ev := &events{}
	var svc *Service
	mirror := func(to string) Hooks {
		return Hooks{AfterWrite: func(ctx context.Context, e Event) {
			if e.Op == store.OpCreate && strings.Contains(string(e.Data), `"top"`) {
				if _, err := svc.Create(ctx, to, As(""), json.RawMessage(`{"name": "mirrored"}`)); err != nil {
					t.Error(err)
				}
			}
		}}
	}
	fields := []config.Field{{Name: "name", Type: config.FieldString}}
	svc, err = NewService(context.Background(), ServiceConfig{Store: db, OnChange: ev.add,
		Resources: []config.Resource{{Name: "a", PKField: "pk", Fields: fields}, {Name: "b", PKField: "pk", Fields: fields}},
		Hooks:     map[string]Hooks{"a": mirror("b"), "b": mirror("a")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for range 25 {
				if _, err := svc.Create(context.Background(), []string{"a", "b"}[w%2], As(""), json.RawMessage(`{"name": "top"}`)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.got) != 200 {
		t.Fatalf("%d events, want 200", len(ev.got))
	}
	last := map[string]int64{}
	for _, e := range ev.got {
		if e.Seq <= last[e.Resource] {
			t.Fatalf("%s: seq %d after %d", e.Resource, e.Seq, last[e.Resource])
		}
		last[e.Resource] = e.Seq
	}
}

// A hook that panics fails its write but does not stop the resource's
// later events.
func TestPanickingHookReleasesTheTurn(t *testing.T) {
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "p.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ev := &events{}
	svc, err := NewService(context.Background(), ServiceConfig{Store: db, OnChange: ev.add,
		Resources: []config.Resource{{Name: "things", PKField: "pk", Fields: []config.Field{{Name: "name", Type: config.FieldString}}}},
		Hooks: map[string]Hooks{"things": {AfterWrite: func(ctx context.Context, e Event) {
			if strings.Contains(string(e.Data), "boom") {
				panic("boom")
			}
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the hook's panic did not reach the write")
			}
		}()
		svc.Create(context.Background(), "things", As(""), json.RawMessage(`{"name": "boom"}`))
	}()
	done := make(chan error, 1)
	go func() {
		_, err := svc.Create(context.Background(), "things", As(""), json.RawMessage(`{"name": "fine"}`))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the write after a panicking hook is stuck")
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.got) != 1 || !strings.Contains(string(ev.got[0].Data), "fine") {
		t.Fatalf("events %+v", ev.got)
	}
}
