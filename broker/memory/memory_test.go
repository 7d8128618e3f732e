package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
	"github.com/switchyardhq/switchyard/broker/brokertest"
)

func TestBroker(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) broker.Broker { return New(Config{}) })
}

func TestPresence(t *testing.T) {
	brokertest.RunPresence(t, func(t *testing.T) broker.PresenceManager {
		return start(t, Config{}, nopHandler{})
	})
}

// nopHandler drops every delivery.
type nopHandler struct{}

func (nopHandler) HandlePublication(string, switchyard.Publication, switchyard.StreamPosition) {}
func (nopHandler) HandleJoin(string, switchyard.ClientInfo)                                    {}
func (nopHandler) HandleLeave(string, switchyard.ClientInfo)                                   {}

// countHandler counts publications.
type countHandler struct {
	mu   sync.Mutex
	pubs int
}

func (h *countHandler) HandlePublication(string, switchyard.Publication, switchyard.StreamPosition) {
	h.mu.Lock()
	h.pubs++
	h.mu.Unlock()
}
func (h *countHandler) HandleJoin(string, switchyard.ClientInfo)  {}
func (h *countHandler) HandleLeave(string, switchyard.ClientInfo) {}

func (h *countHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pubs
}

// start returns a running broker closed at the end of the test.
func start(tb testing.TB, cfg Config, h broker.Handler) *Broker {
	tb.Helper()
	b := New(cfg)
	if err := b.Run(h); err != nil {
		tb.Fatalf("Run: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return b
}

// fakeClock is a Config.Now that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// entries counts the channels that hold a map entry.
func (b *Broker) entries() int {
	n := 0
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		n += len(s.channels)
		s.mu.Unlock()
	}
	return n
}

// sweepAll runs the cleaner's work on every shard at once.
func (b *Broker) sweepAll() {
	for i := range b.shards {
		b.sweep(&b.shards[i])
	}
}

func mustPublish(tb testing.TB, b *Broker, ch string, opts broker.PublishOptions) switchyard.StreamPosition {
	tb.Helper()
	sp, err := b.Publish(context.Background(), ch, []byte(`{}`), opts)
	if err != nil {
		tb.Fatalf("Publish(%s): %v", ch, err)
	}
	return sp
}

func mustHistory(tb testing.TB, b *Broker, ch string, opts broker.HistoryOptions) ([]switchyard.Publication, switchyard.StreamPosition) {
	tb.Helper()
	pubs, sp, err := b.History(context.Background(), ch, opts)
	if err != nil {
		tb.Fatalf("History(%s): %v", ch, err)
	}
	return pubs, sp
}

// TestEmptyEntriesDropped: one-off channels that end up holding nothing
// leave no map entry, whatever was done to them.
func TestEmptyEntriesDropped(t *testing.T) {
	b := start(t, Config{}, nopHandler{})
	ctx := context.Background()
	info := switchyard.ClientInfo{ClientID: "c1", User: "u1"}
	const n = 20000
	for i := range n {
		ch := fmt.Sprintf("one-off:%d", i)
		steps := []func() error{
			func() error { return b.Subscribe(ctx, ch) },
			func() error { _, err := b.Publish(ctx, ch, []byte(`1`), broker.PublishOptions{}); return err },
			func() error { return b.PublishJoin(ctx, ch, info) },
			func() error { return b.AddPresence(ctx, ch, "c1", info, time.Minute) },
			func() error { _, err := b.Presence(ctx, ch); return err },
			func() error { _, err := b.PresenceStats(ctx, ch); return err },
			func() error { return b.RemovePresence(ctx, ch, "c1") },
			func() error { return b.Unsubscribe(ctx, ch) },
			func() error { return b.Unsubscribe(ctx, ch) },
			func() error { _, _, err := b.History(ctx, ch, broker.HistoryOptions{Limit: -1}); return err },
			func() error { return b.PublishLeave(ctx, ch, info) },
			func() error { return b.RemovePresence(ctx, ch, "c2") },
		}
		for j, step := range steps {
			if err := step(); err != nil {
				t.Fatalf("channel %s, step %d: %v", ch, j, err)
			}
		}
	}
	if got := b.entries(); got != 0 {
		t.Fatalf("%d map entries left by %d one-off channels, want 0", got, n)
	}
}

// TestHistoryLifecycle follows one channel from no history to history,
// expiry, tombstone and back, on a fake clock.
func TestHistoryLifecycle(t *testing.T) {
	clock := newFakeClock()
	b := start(t, Config{Now: clock.Now}, nopHandler{})
	const ch = "chat"
	opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute}

	_, empty := mustHistory(t, b, ch, broker.HistoryOptions{})
	if b.entries() != 0 {
		t.Fatal("History created an entry")
	}
	sp := mustPublish(t, b, ch, opts)
	if want := (switchyard.StreamPosition{Offset: 1, Epoch: empty.Epoch}); sp != want {
		t.Fatalf("first publication at %+v, want %+v (the empty channel's epoch)", sp, want)
	}
	pubs, _ := mustHistory(t, b, ch, broker.HistoryOptions{Since: &empty, Limit: -1})
	if len(pubs) != 1 {
		t.Fatalf("since the empty position: %d publications, want 1", len(pubs))
	}

	// Expired within the hour it began: a tombstone keeps a new epoch.
	clock.Advance(2 * time.Minute)
	b.sweepAll()
	if got := b.entries(); got != 1 {
		t.Fatalf("%d entries after expiry, want the tombstone", got)
	}
	_, lost := mustHistory(t, b, ch, broker.HistoryOptions{})
	if lost.Offset != 0 || lost.Epoch == empty.Epoch {
		t.Fatalf("after expiry at %+v, want offset 0 in an epoch other than %q", lost, empty.Epoch)
	}

	// Once that hour is over the channel forgets it, and its derived
	// epoch is one nobody has seen.
	clock.Advance(epochPeriod)
	if _, sp := mustHistory(t, b, ch, broker.HistoryOptions{}); sp.Epoch == lost.Epoch || sp.Epoch == empty.Epoch {
		t.Fatalf("after the hour, epoch %q, want other than %q and %q", sp.Epoch, lost.Epoch, empty.Epoch)
	}
	if got := b.entries(); got != 0 {
		t.Fatalf("%d entries after the hour, want 0", got)
	}

	// History that began in an earlier hour is forgotten at once.
	long := broker.PublishOptions{HistorySize: 10, HistoryTTL: epochPeriod + epochPeriod/2}
	mustPublish(t, b, ch, long)
	clock.Advance(epochPeriod)
	_, before := mustHistory(t, b, ch, broker.HistoryOptions{})
	if before.Offset != 1 {
		t.Fatalf("history lost too early: %+v", before)
	}
	clock.Advance(epochPeriod)
	b.sweepAll()
	if got := b.entries(); got != 0 {
		t.Fatalf("%d entries after expiry of an older history, want 0", got)
	}
	if _, sp := mustHistory(t, b, ch, broker.HistoryOptions{}); sp.Offset != 0 || sp.Epoch == before.Epoch {
		t.Fatalf("after expiry at %+v, want offset 0 in an epoch other than %q", sp, before.Epoch)
	}
}

// TestRemoveHistoryTombstone: RemoveHistory of a channel without history
// keeps a tombstone for the rest of the hour only.
func TestRemoveHistoryTombstone(t *testing.T) {
	clock := newFakeClock()
	b := start(t, Config{Now: clock.Now}, nopHandler{})
	_, before := mustHistory(t, b, "a", broker.HistoryOptions{})
	if err := b.RemoveHistory(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	_, after := mustHistory(t, b, "a", broker.HistoryOptions{})
	if after.Epoch == before.Epoch {
		t.Fatal("RemoveHistory kept the epoch")
	}
	if sp := mustPublish(t, b, "a", broker.PublishOptions{HistorySize: 1}); sp != (switchyard.StreamPosition{Offset: 1, Epoch: after.Epoch}) {
		t.Fatalf("publication after RemoveHistory at %+v, want offset 1 in %q", sp, after.Epoch)
	}
	if err := b.RemoveHistory(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(epochPeriod)
	b.sweepAll()
	if got := b.entries(); got != 0 {
		t.Fatalf("%d entries an hour after RemoveHistory, want 0", got)
	}
}

// TestPresenceSwept: expired presence is dropped by the sweep without
// anyone asking.
func TestPresenceSwept(t *testing.T) {
	clock := newFakeClock()
	b := start(t, Config{Now: clock.Now}, nopHandler{})
	ctx := context.Background()
	for i := range 100 {
		ch := fmt.Sprint("room", i)
		if err := b.AddPresence(ctx, ch, "c1", switchyard.ClientInfo{ClientID: "c1"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := b.AddPresence(ctx, ch, "c2", switchyard.ClientInfo{ClientID: "c2"}, 0); err != nil {
			t.Fatal(err)
		}
		if err := b.RemovePresence(ctx, ch, "c2"); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Minute)
	b.sweepAll()
	if got := b.entries(); got != 0 {
		t.Fatalf("%d entries after presence expired, want 0", got)
	}
}

// TestCleaner: the background cleaner drops expired entries by itself and
// stops on Close.
func TestCleaner(t *testing.T) {
	clock := newFakeClock()
	b := New(Config{Now: clock.Now})
	b.sweepEvery = numShards * time.Millisecond
	if err := b.Run(nopHandler{}); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		mustPublish(t, b, fmt.Sprint("ch", i), broker.PublishOptions{HistorySize: 5, HistoryTTL: time.Second})
	}
	clock.Advance(epochPeriod + time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for b.entries() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries left by the cleaner", b.entries())
		}
		time.Sleep(time.Millisecond)
	}
	done := b.done
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-done:
	default:
		t.Fatal("Close returned before the cleaner stopped")
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestLifecycleErrors(t *testing.T) {
	b := New(Config{})
	if err := b.Run(nil); err == nil {
		t.Fatal("Run(nil) succeeded")
	}
	if err := b.Run(nopHandler{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Run(nopHandler{}); err == nil {
		t.Fatal("second Run succeeded")
	}
	h := &countHandler{}
	closed := New(Config{})
	if err := closed.Close(context.Background()); err != nil {
		t.Fatalf("Close before Run: %v", err)
	}
	if err := closed.Run(h); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
	if err := b.Subscribe(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, err := range map[string]error{
		"Subscribe":      b.Subscribe(ctx, "a"),
		"Unsubscribe":    b.Unsubscribe(ctx, "a"),
		"PublishJoin":    b.PublishJoin(ctx, "a", switchyard.ClientInfo{}),
		"RemoveHistory":  b.RemoveHistory(ctx, "a"),
		"AddPresence":    b.AddPresence(ctx, "a", "c", switchyard.ClientInfo{}, 0),
		"RemovePresence": b.RemovePresence(ctx, "a", "c"),
	} {
		if !errors.Is(err, broker.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if _, _, err := b.History(ctx, "a", broker.HistoryOptions{}); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("History after Close: %v", err)
	}
	if b.entries() != 0 {
		t.Errorf("Close left %d entries", b.entries())
	}
}

func TestBadOptions(t *testing.T) {
	b := start(t, Config{}, nopHandler{})
	for _, opts := range []broker.PublishOptions{{HistorySize: -1}, {HistorySize: 1, HistoryTTL: -time.Second}} {
		if _, err := b.Publish(context.Background(), "a", nil, opts); err == nil {
			t.Errorf("Publish with %+v succeeded", opts)
		}
	}
}

// TestPublishAfterCloseDeliversNothing: publishers racing Close either
// deliver before Close returns or fail with ErrClosed.
func TestPublishAfterCloseDeliversNothing(t *testing.T) {
	h := &countHandler{}
	b := New(Config{})
	if err := b.Run(h); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 8 {
		if err := b.Subscribe(ctx, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := b.Publish(ctx, fmt.Sprint(i), nil, broker.PublishOptions{HistorySize: 4}); errors.Is(err, broker.ErrClosed) {
					return
				}
			}
		})
	}
	for h.count() < 100 {
		time.Sleep(time.Millisecond)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	atClose := h.count()
	close(stop)
	wg.Wait()
	if got := h.count(); got != atClose {
		t.Fatalf("%d deliveries after Close returned", got-atClose)
	}
}

// TestHistoryRing checks the ring against a plain slice over random
// sizes, including HistorySize changes between publications.
func TestHistoryRing(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var h history
		var model []switchyard.Publication
		for range r.IntN(60) {
			size := 1 + r.IntN(12)
			if r.IntN(10) != 0 && h.size != 0 {
				size = h.size
			}
			h.top++
			pub := switchyard.Publication{Offset: h.top}
			h.add(pub, size)
			model = append(model, pub)
			if len(model) > size {
				model = model[len(model)-size:]
			}
			since := uint64(r.IntN(int(h.top) + 2))
			limit := r.IntN(15) - 2
			got := h.after(since, limit)
			var want []switchyard.Publication
			for _, p := range model {
				if p.Offset > since && (limit < 0 || len(want) < limit) {
					want = append(want, p)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("round %d: after(%d, %d) = %v, want %v", round, since, limit, got, want)
			}
			if len(h.pubs) > size || cap(h.pubs) > max(size, 4) {
				t.Fatalf("round %d: %d kept with capacity %d for size %d", round, len(h.pubs), cap(h.pubs), size)
			}
		}
	}
}

// TestDoneContextClose: Close with a done context still closes.
func TestDoneContextClose(t *testing.T) {
	b := New(Config{})
	if err := b.Run(nopHandler{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = b.Close(ctx) // ctx.Err() if the cleaner was not yet done
	if _, err := b.Publish(context.Background(), "a", nil, broker.PublishOptions{}); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	<-b.done
}
