package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
)

// countWriter is a transport that only counts frames.
type countWriter struct{ frames atomic.Int64 }

func (w *countWriter) WriteFrames(ctx context.Context, frames [][]byte) error {
	w.frames.Add(int64(len(frames)))
	return nil
}
func (w *countWriter) Close(int, string) error { return nil }

// TryWriteFrames makes countWriter a TryWriter, as the WebSocket
// transports are: its sessions are written by the hub's writer pool.
func (w *countWriter) TryWriteFrames(frames [][]byte) (bool, error) {
	w.frames.Add(int64(len(frames)))
	return true, nil
}

// jsonEncoder encodes like a protocol would (one JSON object per event).
type jsonEncoder struct{ encodes atomic.Int64 }

func (e *jsonEncoder) EncodePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) []byte {
	e.encodes.Add(1)
	b, _ := json.Marshal(map[string]any{"channel": ch, "offset": pub.Offset, "epoch": sp.Epoch, "data": pub.Data})
	return b
}
func (e *jsonEncoder) EncodeJoin(ch string, info switchyard.ClientInfo) []byte { return []byte("join") }
func (e *jsonEncoder) EncodeLeave(ch string, info switchyard.ClientInfo) []byte {
	return []byte("leave")
}
func (e *jsonEncoder) EncodeSubscribed(res SubscribeResult) []byte { return []byte("subscribed") }
func (e *jsonEncoder) EncodeUnsubscribed(ch string) []byte         { return []byte("unsubscribed") }

func benchHub(tb testing.TB, opts config.ChannelOptions) *Hub {
	tb.Helper()
	return benchHubChunk(tb, opts, 0)
}

// benchHubChunk is benchHub with Config.BroadcastChunk.
func benchHubChunk(tb testing.TB, opts config.ChannelOptions, chunk int) *Hub {
	tb.Helper()
	b := memory.New(memory.Config{})
	h, err := New(Config{Broker: b, Presence: b, BroadcastChunk: chunk, Channels: config.Channels{Default: opts, Namespaces: []config.Namespace{{Name: "ns", ChannelOptions: opts}}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close(); b.Close(context.Background()) })
	return h
}

func noReply(SubscribeResult) []byte { return []byte("ok") }

// BenchmarkBroadcast publishes to one channel with N subscribers: the
// encoding happens once per publication, the frames are queued to N
// outboxes and written by their writers. allocs/delivery counts every
// allocation of the run, the writers' included (they may finish after the
// timer stops), divided by the deliveries: it should stay near 0 whatever
// N, the per-publication allocations (encoding, the broker) spread over
// the subscribers.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) { benchBroadcast(b, n, 0) })
	}
}

// BenchmarkBroadcastSplit is BenchmarkBroadcast at 10,000 subscribers
// with the broadcast serial on the publisher (chunk=-1) and split across
// the writer pool in chunks of 256 and 1,024 (the default). ns/op is how
// long Publish takes: until every outbox holds the publication (the
// writes go on behind it).
func BenchmarkBroadcastSplit(b *testing.B) {
	for _, chunk := range []int{-1, 256, 1024} {
		b.Run(fmt.Sprintf("subscribers=10000/chunk=%d", chunk), func(b *testing.B) { benchBroadcast(b, 10000, chunk) })
	}
}

func benchBroadcast(b *testing.B, n, chunk int) {
	h := benchHubChunk(b, config.DefaultChannelOptions(), chunk)
	w := &countWriter{}
	enc := &jsonEncoder{}
	ctx := context.Background()
	for i := range n {
		s := h.Connect(fmt.Sprint(i), Principal{}, w, enc)
		if err := h.Subscribe(ctx, s, "ns:room", nil, noReply); err != nil {
			b.Fatal(err)
		}
	}
	data := json.RawMessage(`{"text":"hello, world","n":12345}`)
	h.writers.Wait() // the subscribe replies written
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h.Publish(ctx, nil, "ns:room", data); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	h.writers.Wait() // writers drained
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/(float64(n)*float64(b.N)), "allocs/delivery")
	if enc.encodes.Load() != int64(b.N) {
		b.Fatalf("encoded %d times for %d publications", enc.encodes.Load(), b.N)
	}
	if got, want := w.frames.Load(), int64(n)*int64(b.N); got < want {
		b.Fatalf("%d frames written for %d deliveries", got, want)
	}
}

// BenchmarkSubscribeUnsubscribe measures joining and leaving a channel
// that has other subscribers.
func BenchmarkSubscribeUnsubscribe(b *testing.B) {
	h := benchHub(b, config.DefaultChannelOptions())
	ctx := context.Background()
	w, enc := &countWriter{}, &jsonEncoder{}
	for i := range 1000 {
		s := h.Connect(fmt.Sprint(i), Principal{}, w, enc)
		h.Subscribe(ctx, s, "ns:room", nil, noReply)
	}
	s := h.Connect("bench", Principal{}, w, enc)
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Subscribe(ctx, s, "ns:room", nil, noReply); err != nil {
			b.Fatal(err)
		}
		if err := h.Unsubscribe(ctx, s, "ns:room"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBroadcastAllocationsDoNotGrowWithSubscribers guards issue 20: once
// the outboxes have their slices, a broadcast allocates for the
// publication (encoding, the broker), not for each subscriber: queueing a
// frame and starting the session's writer allocate nothing.
func TestBroadcastAllocationsDoNotGrowWithSubscribers(t *testing.T) {
	h := benchHub(t, config.DefaultChannelOptions())
	w, enc := &countWriter{}, &jsonEncoder{}
	ctx := context.Background()
	const n = 1000
	for i := range n {
		s := h.Connect(fmt.Sprint(i), Principal{}, w, enc)
		if err := h.Subscribe(ctx, s, "ns:room", nil, noReply); err != nil {
			t.Fatal(err)
		}
	}
	data := json.RawMessage(`{"text":"hello, world"}`)
	publish := func() {
		if _, err := h.Publish(ctx, nil, "ns:room", data); err != nil {
			t.Fatal(err)
		}
		h.writers.Wait()
	}
	publish() // the outboxes' two slices
	publish()
	if allocs := testing.AllocsPerRun(10, publish); allocs > n/10 {
		t.Fatalf("a publication to %d subscribers allocates %.0f times; want a small constant (the publication's own)", n, allocs)
	}
}
