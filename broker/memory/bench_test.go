package memory

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
)

// BenchmarkPublishHistory publishes to one subscribed channel that keeps
// 100 publications.
func BenchmarkPublishHistory(b *testing.B) {
	br := start(b, Config{}, nopHandler{})
	ctx := context.Background()
	if err := br.Subscribe(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"text":"hello"}`)
	opts := broker.PublishOptions{HistorySize: 100, HistoryTTL: 60e9}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Publish(ctx, "bench", data, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishNoHistory publishes without history to one subscribed
// channel: the lookup and delivery alone.
func BenchmarkPublishNoHistory(b *testing.B) {
	br := start(b, Config{}, nopHandler{})
	ctx := context.Background()
	if err := br.Subscribe(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"text":"hello"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Publish(ctx, "bench", data, broker.PublishOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel publishes from GOMAXPROCS goroutines to 1000
// subscribed channels with history.
func BenchmarkPublishParallel(b *testing.B) {
	br := start(b, Config{}, nopHandler{})
	ctx := context.Background()
	const channels = 1000
	names := make([]string, channels)
	for i := range names {
		names[i] = fmt.Sprint("bench:", i)
		if err := br.Subscribe(ctx, names[i]); err != nil {
			b.Fatal(err)
		}
	}
	data := []byte(`{"text":"hello"}`)
	opts := broker.PublishOptions{HistorySize: 100, HistoryTTL: 60e9}
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 997 // each goroutine starts elsewhere
		for pb.Next() {
			i++
			if _, err := br.Publish(ctx, names[i%channels], data, opts); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHistorySince reads the last 10 of 100 kept publications, as a
// recovering client does.
func BenchmarkHistorySince(b *testing.B) {
	br := start(b, Config{}, nopHandler{})
	ctx := context.Background()
	var sp switchyard.StreamPosition
	for range 100 {
		var err error
		sp, err = br.Publish(ctx, "bench", []byte(`{}`), broker.PublishOptions{HistorySize: 100})
		if err != nil {
			b.Fatal(err)
		}
	}
	since := broker.HistoryOptions{Since: &switchyard.StreamPosition{Offset: sp.Offset - 10, Epoch: sp.Epoch}, Limit: -1}
	b.ReportAllocs()
	for b.Loop() {
		pubs, _, err := br.History(ctx, "bench", since)
		if err != nil || len(pubs) != 10 {
			b.Fatal(len(pubs), err)
		}
	}
}

// BenchmarkHistoryNeverPublished reads the position of a channel without
// history: the derived epoch.
func BenchmarkHistoryNeverPublished(b *testing.B) {
	br := start(b, Config{}, nopHandler{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := br.History(ctx, "quiet", broker.HistoryOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSweep sweeps one shard of 100000 live channels (about 1560
// per shard), the cleaner's work per tick.
func BenchmarkSweep(b *testing.B) {
	br := New(Config{})
	b.Cleanup(func() { _ = br.Close(context.Background()) })
	ctx := context.Background()
	for i := range 100000 {
		if _, err := br.Publish(ctx, fmt.Sprint("ch", i), []byte(`{}`), broker.PublishOptions{HistorySize: 1, HistoryTTL: 60e9}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		br.sweep(&br.shards[0])
	}
}
