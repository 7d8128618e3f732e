package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
	"github.com/switchyardhq/switchyard/broker/brokertest"
	"github.com/switchyardhq/switchyard/internal/testenv"
)

// newTestBroker returns a broker under a prefix of its own (or the one
// given); its keys are deleted when the test ends (never anything else).
func newTestBroker(t testing.TB, prefix string) *Broker {
	t.Helper()
	if prefix == "" {
		prefix = testenv.RedisPrefix(t)
	}
	b, err := New(context.Background(), Config{URL: testenv.RedisURL(t), Prefix: prefix, PubSubShards: 2})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestContract(t *testing.T) {
	testenv.Redis(t)
	brokertest.Run(t, func(t *testing.T) broker.Broker { return newTestBroker(t, "") })
}

func TestPresenceContract(t *testing.T) {
	testenv.Redis(t)
	brokertest.RunPresence(t, func(t *testing.T) broker.PresenceManager {
		b := newTestBroker(t, "")
		t.Cleanup(func() { b.Close(context.Background()) })
		return b
	})
}

// recorder collects deliveries.
type recorder struct {
	mu   sync.Mutex
	pubs map[string][]switchyard.Publication
	sps  map[string][]switchyard.StreamPosition
}

func newRecorder() *recorder {
	return &recorder{pubs: map[string][]switchyard.Publication{}, sps: map[string][]switchyard.StreamPosition{}}
}

func (r *recorder) HandlePublication(ch string, p switchyard.Publication, sp switchyard.StreamPosition) {
	r.mu.Lock()
	r.pubs[ch] = append(r.pubs[ch], p)
	r.sps[ch] = append(r.sps[ch], sp)
	r.mu.Unlock()
}
func (r *recorder) HandleJoin(string, switchyard.ClientInfo)  {}
func (r *recorder) HandleLeave(string, switchyard.ClientInfo) {}

func (r *recorder) count(ch string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pubs[ch])
}

func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two brokers on one prefix are two processes: a publication through one
// reaches both, once each, with the same position, and history and
// presence are shared.
func TestTwoProcesses(t *testing.T) {
	prefix := testenv.RedisPrefix(t)
	a, b := newTestBroker(t, prefix), newTestBroker(t, prefix)
	ra, rb := newRecorder(), newRecorder()
	if err := a.Run(ra); err != nil {
		t.Fatal(err)
	}
	if err := b.Run(rb); err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	defer b.Close(context.Background())
	ctx := context.Background()
	ch := "chat:room"
	for _, x := range []*Broker{a, b} {
		if err := x.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	aud := switchyard.Audience{Users: []string{"ann"}}
	for i := 1; i <= 10; i++ {
		pub := a
		if i%2 == 0 {
			pub = b
		}
		sp, err := pub.Publish(ctx, ch, []byte(fmt.Sprint(i)), broker.PublishOptions{HistorySize: 5, Audience: aud})
		if err != nil || sp.Offset != uint64(i) {
			t.Fatalf("publish %d: %+v %v", i, sp, err)
		}
	}
	for _, r := range []*recorder{ra, rb} {
		eventually(t, 5*time.Second, func() error {
			if n := r.count(ch); n != 10 {
				return fmt.Errorf("%d deliveries, want 10", n)
			}
			return nil
		})
		for i, p := range r.pubs[ch] {
			if p.Offset != uint64(i+1) || string(p.Data) != fmt.Sprint(i+1) || !p.Audience.Includes("ann") || p.Audience.Includes("bob") {
				t.Fatalf("delivery %d: %+v", i, p)
			}
		}
	}
	pubs, sp, err := b.History(ctx, ch, broker.HistoryOptions{Limit: -1})
	if err != nil || len(pubs) != 5 || pubs[0].Offset != 6 || sp.Offset != 10 || pubs[0].Audience.Users[0] != "ann" {
		t.Fatalf("history through the other process: %v %+v %v", pubs, sp, err)
	}
	if err := a.AddPresence(ctx, ch, "c1", switchyard.ClientInfo{ClientID: "c1", User: "ann"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if p, err := b.Presence(ctx, ch); err != nil || p["c1"].User != "ann" {
		t.Fatalf("presence through the other process: %v %v", p, err)
	}
}

func adminClient(t testing.TB) rueidis.Client { return testenv.RedisClient(t) }

// After Redis kills the broker's connections, its subscriptions are
// restored and deliveries resume; the publications made while they were
// down are in history.
func TestResubscribeAfterClientKill(t *testing.T) {
	b := newTestBroker(t, "")
	rec := newRecorder()
	if err := b.Run(rec); err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	ctx := context.Background()
	chans := []string{"a", "b", "c", "d", "e"}
	for _, ch := range chans {
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	admin := adminClient(t)
	// Kill every connection of this broker: they are the ones whose
	// client list entry shows a subscription to its channels, or its
	// command connection (found by its address).
	killed := killBrokerConns(t, admin, b)
	if killed == 0 {
		t.Fatal("no connection killed")
	}
	eventually(t, 10*time.Second, func() error {
		for _, ch := range chans {
			if _, err := b.Publish(ctx, ch, []byte(`"x"`), broker.PublishOptions{HistorySize: 10}); err != nil {
				return err
			}
		}
		for _, ch := range chans {
			if rec.count(ch) == 0 {
				return fmt.Errorf("nothing delivered on %s after reconnecting", ch)
			}
		}
		return nil
	})
}

// killBrokerConns kills the connections of b (pub/sub and commands) with
// CLIENT KILL, identified by their subscriptions or their client names.
func killBrokerConns(t testing.TB, admin rueidis.Client, b *Broker) int {
	t.Helper()
	ctx := context.Background()
	list, err := admin.Do(ctx, admin.B().ClientList().Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	me, err := admin.Do(ctx, admin.B().ClientId().Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	ids := b.clientIDs(ctx)
	n := 0
	for _, line := range strings.Split(list, "\n") {
		var id string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
		}
		if id == "" || id == fmt.Sprint(me) || !ids[id] {
			continue
		}
		if err := admin.Do(ctx, admin.B().ClientKill().Id(mustInt(id)).Build()).Error(); err == nil {
			n++
		}
	}
	return n
}

func mustInt(s string) int64 {
	var n int64
	fmt.Sscan(s, &n)
	return n
}

// The epoch changes when the stream is lost behind the broker's back
// (evicted alone): no recovery over the gap.
func TestEpochChangesWhenStreamLost(t *testing.T) {
	b := newTestBroker(t, "")
	if err := b.Run(newRecorder()); err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	ctx := context.Background()
	var last switchyard.StreamPosition
	for i := 0; i < 3; i++ {
		var err error
		if last, err = b.Publish(ctx, "lost", []byte(`1`), broker.PublishOptions{HistorySize: 10}); err != nil {
			t.Fatal(err)
		}
	}
	admin := adminClient(t)
	if err := admin.Do(ctx, admin.B().Del().Key(b.key("s", "lost")).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	pubs, sp, err := b.History(ctx, "lost", broker.HistoryOptions{Since: &switchyard.StreamPosition{Offset: 1, Epoch: last.Epoch}, Limit: -1})
	if err != nil || len(pubs) != 0 || sp.Epoch == last.Epoch || sp.Offset != 0 {
		t.Fatalf("after losing the stream: %v %+v %v (was %+v)", pubs, sp, err, last)
	}
	next, err := b.Publish(ctx, "lost", []byte(`1`), broker.PublishOptions{HistorySize: 10})
	if err != nil || next.Offset != 1 || next.Epoch != sp.Epoch {
		t.Fatalf("first publication after the loss: %+v %v, want offset 1 in %s", next, err, sp.Epoch)
	}
}

// With Redis unreachable, New fails after ConnectTimeout naming the
// address.
func TestUnreachableAtStart(t *testing.T) {
	start := time.Now()
	_, err := New(context.Background(), Config{URL: "redis://127.0.0.1:1/0", ConnectTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("New against a closed port: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}

// An unreachable Redis at runtime is CodeUnavailable.
func TestUnavailableError(t *testing.T) {
	b := newTestBroker(t, "")
	if err := b.Run(newRecorder()); err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	err := b.fail(context.Background(), "publish", errors.New("dial tcp: connection refused"))
	if switchyard.ErrorCode(err) != switchyard.CodeUnavailable {
		t.Fatalf("network error: %v", err)
	}
}

// AddPresenceBatch refreshes entries of several channels in one call.
func TestPresenceBatch(t *testing.T) {
	b := newTestBroker(t, "")
	if err := b.Run(newRecorder()); err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	ctx := context.Background()
	var entries []broker.PresenceEntry
	for _, ch := range []string{"a", "b", "c"} {
		for _, c := range []string{"c1", "c2"} {
			entries = append(entries, broker.PresenceEntry{Channel: ch, ClientID: c, Info: switchyard.ClientInfo{ClientID: c, User: "u-" + c}})
		}
	}
	if err := b.AddPresenceBatch(ctx, entries, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"a", "b", "c"} {
		p, err := b.Presence(ctx, ch)
		if err != nil || len(p) != 2 || p["c2"].User != "u-c2" {
			t.Fatalf("presence of %s: %v %v", ch, p, err)
		}
	}
}
