package rediswindows

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/internal/testenv"
	"github.com/switchyardhq/switchyard/signal"
)

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	prefix := testenv.RedisPrefix(t)
	s, err := New(testenv.RedisClient(t), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return s, prefix
}

func addTopic(topic string) func(signal.StoredWindow) signal.StoredWindow {
	return func(w signal.StoredWindow) signal.StoredWindow {
		if !slices.Contains(w.Topics, topic) {
			w.Topics = append(w.Topics, topic)
			slices.Sort(w.Topics)
		}
		return w
	}
}

// A key is kept with its TTL, in Redis, under the prefix; it is gone when
// the TTL passes.
func TestStoreKeepsWithTTL(t *testing.T) {
	s, prefix := newStore(t)
	ctx := context.Background()
	if _, ok, err := s.Get(ctx, "page"); ok || err != nil {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	user := "alice"
	err := s.Update(ctx, "page", time.Hour, func(w signal.StoredWindow) signal.StoredWindow {
		w.Topics, w.User = []string{"a", "b"}, &user
		return w
	})
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Get(ctx, "page")
	if err != nil || !ok || !slices.Equal(got.Topics, []string{"a", "b"}) || got.User == nil || *got.User != "alice" {
		t.Fatalf("%+v %v %v", got, ok, err)
	}
	c := testenv.RedisClient(t)
	pttl, err := c.Do(ctx, c.B().Pttl().Key(prefix+":win:page").Build()).AsInt64()
	if err != nil || pttl <= 0 || pttl > time.Hour.Milliseconds() {
		t.Fatalf("PTTL of %s:win:page = %d %v, want the hour", prefix, pttl, err)
	}
	if err := s.Update(ctx, "short", 50*time.Millisecond, addTopic("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok, _ := s.Get(ctx, "short"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a key past its TTL is still kept")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Concurrent updates of one key from many callers (several processes in
// a cluster) all apply: none is lost to another's write.
func TestStoreConcurrentUpdates(t *testing.T) {
	s, _ := newStore(t)
	// Two stores on the same prefix act as two processes.
	other, err := New(s.client, s.prefix[:len(s.prefix)-len(":win:")])
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		st := s
		if i%2 == 1 {
			st = other
		}
		wg.Go(func() { errs <- st.Update(ctx, "busy", time.Hour, addTopic(fmt.Sprint("t", i))) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := s.Get(ctx, "busy")
	if err != nil || len(got.Topics) != 20 {
		t.Fatalf("%d topics after 20 concurrent adds: %v %v", len(got.Topics), got.Topics, err)
	}
}

// An unreachable Redis is an error of code unavailable, not a hang or a
// panic.
func TestStoreUnavailable(t *testing.T) {
	p := testenv.NewProxy(t, testenv.Redis(t))
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{p.Addr()}, DisableCache: true, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s, err := New(c, testenv.RedisPrefix(t))
	if err != nil {
		t.Fatal(err)
	}
	p.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := s.Get(ctx, "k"); switchyard.ErrorCode(err) != switchyard.CodeUnavailable {
		t.Fatalf("Get with Redis cut: %v, want unavailable", err)
	}
	if err := s.Update(ctx, "k", time.Hour, addTopic("x")); switchyard.ErrorCode(err) != switchyard.CodeUnavailable {
		t.Fatalf("Update with Redis cut: %v, want unavailable", err)
	}
}
