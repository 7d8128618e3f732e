package signal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
	redisbroker "github.com/switchyardhq/switchyard/broker/redis"
	"github.com/switchyardhq/switchyard/cluster"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/testenv"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/signal/rediswindows"
)

// window records the pushes a window receives.
type window struct {
	mu     sync.Mutex
	pushes []signal.Push
}

func (w *window) Send(frame []byte) {
	var p signal.Push
	if err := json.Unmarshal(frame, &p); err != nil {
		panic(err)
	}
	w.mu.Lock()
	w.pushes = append(w.pushes, p)
	w.mu.Unlock()
}

// count returns how many pushes of signal_id the window received.
func (w *window) count(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, p := range w.pushes {
		if p.SignalID == id {
			n++
		}
	}
	return n
}

type jsonWire struct{}

func (jsonWire) EncodeSignal(p signal.Push) []byte {
	b, _ := json.Marshal(p)
	return b
}

// noHub stands for the hub: the test's nodes carry nothing else.
type noHub struct{}

func (noHub) HandlePublication(string, switchyard.Publication, switchyard.StreamPosition) {}
func (noHub) HandleJoin(string, switchyard.ClientInfo)                                    {}
func (noHub) HandleLeave(string, switchyard.ClientInfo)                                   {}

var _ broker.Handler = noHub{}

// process is one in-process service of a two-process cluster on the real
// Redis: a broker, a cluster node, a topic as the signal bus, the Redis
// window store, and a signal service.
func process(t *testing.T, prefix string) *signal.Service {
	t.Helper()
	ctx := context.Background()
	b, err := redisbroker.New(ctx, redisbroker.Config{URL: testenv.RedisURL(t), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	node, err := cluster.New(cluster.Config{Broker: b, Presence: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Run(noHub{}); err != nil {
		t.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(ctx, queue.Config{Path: filepath.Join(t.TempDir(), "queue.db"), Queues: []config.Queue{config.DefaultQueueConfig("default")}})
	if err != nil {
		t.Fatal(err)
	}
	windows, err := rediswindows.New(b.Client(), b.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	var svc *signal.Service
	var ready sync.WaitGroup
	ready.Add(1)
	topic, err := node.Topic(ctx, "signals", func(msg []byte) {
		ready.Wait()
		svc.Receive(msg)
	})
	if err != nil {
		t.Fatal(err)
	}
	svc, err = signal.New(signal.Config{Queue: q, Bus: topic, Windows: windows})
	if err != nil {
		t.Fatal(err)
	}
	ready.Done()
	t.Cleanup(func() {
		q.Close()
		node.Stop(ctx)
		b.Close(ctx)
	})
	return svc
}

func attach(t *testing.T, s *signal.Service, id, key, user string, topics ...string) *window {
	t.Helper()
	w := &window{}
	if err := s.Attach(context.Background(), signal.Window{ID: id, Key: key, User: user, Topics: topics, Sender: w, Encoder: jsonWire{}}); err != nil {
		t.Fatal(err)
	}
	return w
}

// waitFor waits until every window received the signal once.
func waitFor(t *testing.T, id string, wins ...*window) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range wins {
		for w.count(id) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("signal %s not received", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// Two services on the real Redis act as one: a trigger made on either
// reaches the matching windows on both, each window once however many of
// its targets match it, and no window that does not match; what is set
// for a window key on one is what a window connecting to the other with
// that key gets, and window changes apply where the window is.
func TestTwoProcessesOnRedis(t *testing.T) {
	prefix := testenv.RedisPrefix(t)
	a, b := process(t, prefix), process(t, prefix)
	ctx := context.Background()

	alice1 := attach(t, a, "alice-on-a", "", "alice")
	alice2 := attach(t, b, "alice-on-b", "", "alice", "room")
	bob := attach(t, b, "bob-on-b", "", "bob", "room")
	carol := attach(t, b, "carol-on-b", "", "carol")

	// alice's window on b is chosen by user, topic and id: once. bob's by
	// topic only. carol's not at all.
	res, err := a.Trigger(ctx, signal.Trigger{Signal: "t.one", To: signal.Target{Users: []string{"alice"}, Topics: []string{"room"}, Windows: []string{"alice-on-b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != 1 {
		t.Errorf("delivered on a: %d, want 1 (alice's window there)", res.Delivered)
	}
	waitFor(t, res.SignalID, alice1, alice2, bob)
	// A broadcast from a after it proves that its trigger was delivered
	// in full before: a duplicate would have arrived by now.
	barrier, err := a.Trigger(ctx, signal.Trigger{Signal: "t.barrier", To: signal.Target{Broadcast: true}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, barrier.SignalID, alice1, alice2, bob, carol)
	for name, w := range map[string]*window{"alice on a": alice1, "alice on b": alice2, "bob": bob} {
		if n := w.count(res.SignalID); n != 1 {
			t.Errorf("%s received the trigger %d times, want once", name, n)
		}
	}
	if n := carol.count(res.SignalID); n != 0 {
		t.Errorf("carol received a trigger for alice and the room (%d times)", n)
	}

	// A page bootstrapped on a (its key's topics and user set before it
	// connects) connects to b with them.
	user := "dave"
	if _, err := a.SetWindow(ctx, signal.WindowUpdate{Window: "page-key", Topics: []string{"news"}, User: &user}); err != nil {
		t.Fatal(err)
	}
	page := attach(t, b, "page-conn", "page-key", "")
	if got := b.Windows("page-conn", 1); len(got) != 1 || fmt.Sprint(got[0].Topics) != "[news]" || got[0].User != "dave" {
		t.Fatalf("the page's window on b: %+v", got)
	}
	res, err = a.Trigger(ctx, signal.Trigger{Signal: "t.news", To: signal.Target{Topics: []string{"news"}, Users: []string{"dave"}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, res.SignalID, page)

	// A change made on a of a window connected to b applies on b.
	if _, err := a.SetWindow(ctx, signal.WindowUpdate{Window: "carol-on-b", Add: []string{"vip"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := b.Windows("carol-on-b", 1); len(got) == 1 && fmt.Sprint(got[0].Topics) == "[vip]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol's topics on b: %+v", b.Windows("carol-on-b", 1))
		}
		time.Sleep(5 * time.Millisecond)
	}
	res, err = b.Trigger(ctx, signal.Trigger{Signal: "t.vip", To: signal.Target{Topics: []string{"vip"}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, res.SignalID, carol)
	barrier, err = b.Trigger(ctx, signal.Trigger{Signal: "t.barrier", To: signal.Target{Broadcast: true}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, barrier.SignalID, alice1, alice2, bob, carol)
	for name, w := range map[string]*window{"alice on a": alice1, "alice on b": alice2, "bob": bob} {
		if n := w.count(res.SignalID); n != 0 {
			t.Errorf("%s is not in vip but received its trigger", name)
		}
	}
}
