package memory

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
)

func publishSized(t *testing.T, b *Broker, ch string, size int, opts broker.PublishOptions) switchyard.StreamPosition {
	t.Helper()
	sp, err := b.Publish(context.Background(), ch, []byte(`"`+strings.Repeat("x", size-2)+`"`), opts)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// The reproduction: one user published 2,000 × 60 KiB to 2,000 channels
// and the process held 180 MiB more for the TTL. With MaxHistoryBytes the
// total stays within the bound; the channels published to least recently
// lose their history first, and their epoch changes, so a client that
// recovers from them is told it cannot instead of being given a gap.
func TestHistoryBytesBound(t *testing.T) {
	const max = 1 << 20
	b := start(t, Config{MaxHistoryBytes: max}, nopHandler{})
	opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: time.Hour, Namespace: "ns"}
	first := publishSized(t, b, "ns:0", 60<<10, opts)
	for i := 1; i < 200; i++ {
		publishSized(t, b, fmt.Sprint("ns:", i), 60<<10, opts)
		if n, _ := b.HistoryBytes(); n > max {
			t.Fatalf("after %d channels: %d bytes kept, over %d", i+1, n, max)
		}
	}
	n, dropped := b.HistoryBytes()
	if dropped < 180 || n < max/2 {
		t.Fatalf("%d bytes kept, %d histories dropped", n, dropped)
	}
	// The oldest channel lost its history and its epoch: recovering from
	// where its subscriber was gives nothing, in another epoch.
	pubs, pos := mustHistory(t, b, "ns:0", broker.HistoryOptions{Since: &first, Limit: -1})
	if len(pubs) != 0 || pos.Epoch == first.Epoch {
		t.Fatalf("the oldest channel: %d publications at %+v, first at %+v", len(pubs), pos, first)
	}
	// The newest kept theirs.
	if pubs, _ := mustHistory(t, b, "ns:199", broker.HistoryOptions{Limit: -1}); len(pubs) != 1 {
		t.Fatalf("the newest channel kept %d publications", len(pubs))
	}
	// A publication to an old channel makes it the newest: the next
	// channel in line goes instead.
	publishSized(t, b, "ns:190", 60<<10, opts)
	if pubs, _ := mustHistory(t, b, "ns:190", broker.HistoryOptions{Limit: -1}); len(pubs) == 0 {
		t.Fatal("the channel just published to lost its history")
	}
}

// Ring overwrites, resizes, expiry and RemoveHistory all keep the count
// right: back to zero once nothing is kept.
func TestHistoryBytesAccounting(t *testing.T) {
	clock := newFakeClock()
	b := start(t, Config{Now: clock.Now, MaxHistoryBytes: 1 << 30}, nopHandler{})
	opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute}
	for range 100 {
		publishSized(t, b, "a", 1000, opts)
	}
	n, _ := b.HistoryBytes()
	if want := int64(10*(1000+publicationOverhead) + channelOverhead + 1); n != want {
		t.Fatalf("a ring of 10 counts %d bytes, want %d", n, want)
	}
	publishSized(t, b, "a", 1000, broker.PublishOptions{HistorySize: 3, HistoryTTL: time.Minute})
	if n, _ := b.HistoryBytes(); n != int64(3*(1000+publicationOverhead)+channelOverhead+1) {
		t.Fatalf("after a resize to 3: %d", n)
	}
	publishSized(t, b, "b", 500, opts)
	if err := b.RemoveHistory(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	b.sweepAll()
	if n, dropped := b.HistoryBytes(); n != 0 || dropped != 0 {
		t.Fatalf("after expiry and removal: %d bytes, %d dropped", n, dropped)
	}
}

// MaxChannelsPerNamespace bounds the channels keeping history in one
// namespace; other namespaces are not touched.
func TestChannelsPerNamespaceBound(t *testing.T) {
	b := start(t, Config{MaxChannelsPerNamespace: 3}, nopHandler{})
	ns := broker.PublishOptions{HistorySize: 5, Namespace: "ns"}
	other := broker.PublishOptions{HistorySize: 5, Namespace: "other"}
	mustPublish(t, b, "other:x", other)
	var first switchyard.StreamPosition
	for i := range 4 {
		sp := mustPublish(t, b, fmt.Sprint("ns:", i), ns)
		if i == 0 {
			first = sp
		}
	}
	if pubs, pos := mustHistory(t, b, "ns:0", broker.HistoryOptions{Limit: -1}); len(pubs) != 0 || pos.Epoch == first.Epoch {
		t.Fatalf("ns:0 kept %d publications at %+v", len(pubs), pos)
	}
	for _, ch := range []string{"ns:1", "ns:2", "ns:3", "other:x"} {
		if pubs, _ := mustHistory(t, b, ch, broker.HistoryOptions{Limit: -1}); len(pubs) != 1 {
			t.Fatalf("%s kept %d publications", ch, len(pubs))
		}
	}
}
