package signal

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/queue"
)

func TestMemoryWindowsExpire(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewMemoryWindows(func() time.Time { return now })
	ctx := context.Background()
	u := "7"
	s.Update(ctx, "k", time.Hour, WindowUpdate{Window: "k", Topics: []string{"b", "a"}, User: &u}.applyTo)
	got, ok, err := s.Get(ctx, "k")
	if err != nil || !ok || !slices.Equal(got.Topics, []string{"a", "b"}) || *got.User != "7" {
		t.Fatalf("%+v %v %v", got, ok, err)
	}
	// What Get returns is a copy.
	got.Topics[0] = "changed"
	if again, _, _ := s.Get(ctx, "k"); again.Topics[0] != "a" {
		t.Error("Get returned the stored slice")
	}
	// Add and Remove edit; the TTL restarts.
	now = now.Add(59 * time.Minute)
	s.Update(ctx, "k", time.Hour, WindowUpdate{Window: "k", Add: []string{"c"}, Remove: []string{"a"}}.applyTo)
	now = now.Add(59 * time.Minute)
	if got, ok, _ := s.Get(ctx, "k"); !ok || !slices.Equal(got.Topics, []string{"b", "c"}) || *got.User != "7" {
		t.Fatalf("after edit: %+v %v", got, ok)
	}
	// Expired: gone, and an edit starts from nothing.
	now = now.Add(time.Hour)
	if _, ok, _ := s.Get(ctx, "k"); ok {
		t.Fatal("expired key still there")
	}
	s.Update(ctx, "k", time.Hour, WindowUpdate{Window: "k", Add: []string{"z"}}.applyTo)
	if got, _, _ := s.Get(ctx, "k"); !slices.Equal(got.Topics, []string{"z"}) || got.User != nil {
		t.Fatalf("after expiry: %+v", got)
	}
	// Expired keys are trimmed.
	s.Update(ctx, "old", time.Second, func(w StoredWindow) StoredWindow { return w })
	now = now.Add(2 * time.Minute)
	s.Update(ctx, "new", time.Hour, func(w StoredWindow) StoredWindow { return w })
	if s.Len() != 2 { // k and new
		t.Errorf("%d keys kept, want 2", s.Len())
	}
}

// hookStore is a WindowStore that runs a hook after its first read, and
// can fail.
type hookStore struct {
	*MemoryWindows
	gets  atomic.Int32
	after func()
	fail  error
}

func (s *hookStore) Get(ctx context.Context, key string) (StoredWindow, bool, error) {
	if s.fail != nil {
		return StoredWindow{}, false, s.fail
	}
	w, ok, err := s.MemoryWindows.Get(ctx, key)
	if s.gets.Add(1) == 1 && s.after != nil {
		s.after() // what was read is now stale
	}
	return w, ok, err
}

func newStoreService(t *testing.T, store WindowStore) *Service {
	t.Helper()
	q, err := queue.Open(context.Background(), queue.Config{Path: filepath.Join(t.TempDir(), "queue.db"), Queues: []config.Queue{config.DefaultQueueConfig("default")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	svc, err := New(Config{Queue: q, Signals: config.Default().Signals, Windows: store})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// A window update that lands while Attach reads the store (which may be
// remote) is not lost: Attach reads again.
func TestAttachRereadsAnUpdateMadeMeanwhile(t *testing.T) {
	store := &hookStore{MemoryWindows: NewMemoryWindows(nil)}
	svc := newStoreService(t, store)
	ctx := context.Background()
	if _, err := svc.SetWindow(ctx, WindowUpdate{Window: "k", Topics: []string{"old"}}); err != nil {
		t.Fatal(err)
	}
	store.after = func() {
		if _, err := svc.SetWindow(ctx, WindowUpdate{Window: "k", Topics: []string{"new"}}); err != nil {
			t.Error(err)
		}
	}
	in := &inbox{}
	if err := svc.Attach(ctx, Window{ID: "c", Key: "k", Sender: in, Encoder: jsonEncoder{n: &atomic.Int32{}}}); err != nil {
		t.Fatal(err)
	}
	if store.gets.Load() != 2 {
		t.Errorf("%d reads of the store, want 2", store.gets.Load())
	}
	ws := svc.Windows("k", 1)
	if len(ws) != 1 || !slices.Equal(ws[0].Topics, []string{"new"}) {
		t.Errorf("windows %+v", ws)
	}
}

// A store that fails refuses the window: the protocol closes it (the
// client comes back), rather than serving it without its topics.
func TestAttachStoreError(t *testing.T) {
	down := errors.New("store down")
	svc := newStoreService(t, &hookStore{MemoryWindows: NewMemoryWindows(nil), fail: down})
	err := svc.Attach(context.Background(), Window{ID: "c", Key: "k", Sender: &inbox{}, Encoder: jsonEncoder{n: &atomic.Int32{}}})
	if !errors.Is(err, down) {
		t.Fatalf("Attach: %v", err)
	}
	if svc.NumWindows() != 0 {
		t.Error("window attached")
	}
}
