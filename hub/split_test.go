package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
)

// countingEncoder is offsetEncoder counting its publication encodes.
type countingEncoder struct {
	offsetEncoder
	n atomic.Int64
}

func (e *countingEncoder) EncodePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) []byte {
	e.n.Add(1)
	return e.offsetEncoder.EncodePublication(ch, pub, sp)
}

func splitHub(t *testing.T, writers, chunk int) *Hub {
	t.Helper()
	b := memory.New(memory.Config{})
	opts := config.DefaultChannelOptions()
	opts.HistorySize, opts.HistoryTTL = 10_000, config.Duration(time.Hour) // offsets, to check the order
	h, err := New(Config{Broker: b, Presence: b, Writers: writers, BroadcastChunk: chunk, Channels: config.Channels{Default: opts},
		Reserved: map[string]config.ChannelOptions{"$srv": opts}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); b.Close(context.Background()) })
	return h
}

// isSplit reports whether a broadcast to ch would be split.
func isSplit(h *Hub, ch string) bool {
	sh := h.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	c := sh.channels[ch]
	return c != nil && h.splits(ch, c)
}

// A split broadcast reaches every subscriber exactly once, in the order
// of publication, encodes once per protocol that receives it (two here) and
// counts its deliveries; an audience still limits who receives.
func TestSplitBroadcast(t *testing.T) {
	for _, writers := range []int{1, 2, 8} {
		t.Run(fmt.Sprintf("writers=%d", writers), func(t *testing.T) {
			h := splitHub(t, writers, 8)
			ctx := context.Background()
			encs := []*countingEncoder{{}, {}}
			const subs = 203 // 26 chunks, the last one short
			ws := make([]*tryWriter, subs)
			for i := range ws {
				ws[i] = &tryWriter{}
				user := ""
				if i%2 == 0 {
					user = "even"
				}
				s := h.Connect(fmt.Sprint(i), Principal{User: user}, ws[i], encs[i%2])
				if err := h.Subscribe(ctx, s, "news", nil, func(SubscribeResult) []byte { return []byte("ok") }); err != nil {
					t.Fatal(err)
				}
			}
			if !isSplit(h, "news") {
				t.Fatal("a broadcast to 203 subscribers with chunks of 8 is not split")
			}
			const n = 300
			for i := range n {
				aud := switchyard.Audience{}
				if i%10 == 9 {
					aud.Users = []string{"even"}
				}
				if _, err := h.PublishAudience(ctx, "news", json.RawMessage(`"x"`), aud); err != nil {
					t.Fatal(err)
				}
			}
			h.writers.Wait()
			// Protocol 1's sessions are not in the audience of every tenth.
			for i, want := range []int64{n, n - n/10} {
				if got := encs[i].n.Load(); got != want {
					t.Errorf("protocol %d encoded %d times, want %d", i, got, want)
				}
			}
			var deliveries uint64
			for i, w := range ws {
				want := []string{"ok"}
				for off := 1; off <= n; off++ {
					if off%10 != 0 || i%2 == 0 {
						want = append(want, fmt.Sprintf("pub:%d", off))
					}
				}
				deliveries += uint64(len(want) - 1)
				if got := w.snapshot(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("subscriber %d got %d frames %.200v…, want %d", i, len(got), got, len(want))
				}
			}
			if got := h.Stats().Deliveries; got != deliveries {
				t.Errorf("Stats().Deliveries = %d, want %d", got, deliveries)
			}
		})
	}
}

// Small channels, channels of the "$" namespaces and hubs configured
// not to split (or without a writer pool) broadcast on the publisher.
func TestSplitOnlyLargeChannels(t *testing.T) {
	ctx := context.Background()
	subscribe := func(h *Hub, ch string, n int) {
		t.Helper()
		for i := range n {
			s := h.Connect(fmt.Sprint(ch, i), Principal{}, &tryWriter{}, offsetEncoder{})
			if err := h.SubscribeSilent(ctx, s, ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	h := splitHub(t, 2, 8)
	subscribe(h, "small", 15)
	subscribe(h, "large", 16)
	subscribe(h, "$srv:large", 100)
	if isSplit(h, "small") || !isSplit(h, "large") || isSplit(h, "$srv:large") {
		t.Errorf("split: small %v, large %v, $srv:large %v; want false, true, false", isSplit(h, "small"), isSplit(h, "large"), isSplit(h, "$srv:large"))
	}
	for _, c := range []struct{ writers, chunk int }{{2, -1}, {-1, 8}} {
		h := splitHub(t, c.writers, c.chunk)
		subscribe(h, "large", 100)
		if isSplit(h, "large") {
			t.Errorf("Writers %d, BroadcastChunk %d: split", c.writers, c.chunk)
		}
	}
	b := memory.New(memory.Config{})
	defer b.Close(context.Background())
	for _, n := range []int{-2, MaxBroadcastChunk + 1} {
		if _, err := New(Config{Broker: b, Presence: b, BroadcastChunk: n}); err == nil {
			t.Errorf("BroadcastChunk %d accepted", n)
		}
	}
}

// A split broadcast allocates per publication, not per subscriber (its
// list of subscribers is reused).
func TestSplitBroadcastAllocationsDoNotGrowWithSubscribers(t *testing.T) {
	h := benchHubChunk(t, config.DefaultChannelOptions(), 64)
	w, enc := &countWriter{}, &jsonEncoder{}
	ctx := context.Background()
	const n = 4096
	for i := range n {
		s := h.Connect(fmt.Sprint(i), Principal{}, w, enc)
		if err := h.Subscribe(ctx, s, "ns:room", nil, noReply); err != nil {
			t.Fatal(err)
		}
	}
	if !isSplit(h, "ns:room") {
		t.Fatal("not split")
	}
	data := json.RawMessage(`{"text":"hello, world"}`)
	publish := func() {
		if _, err := h.Publish(ctx, nil, "ns:room", data); err != nil {
			t.Fatal(err)
		}
		h.writers.Wait()
	}
	publish()
	publish()
	if allocs := testing.AllocsPerRun(10, publish); allocs > n/20 {
		t.Fatalf("a split publication to %d subscribers allocates %.0f times; want a small constant", n, allocs)
	}
}
