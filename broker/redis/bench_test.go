package redis

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/switchyardhq/switchyard/broker"
	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/internal/testenv"
)

// BenchmarkPublish measures the publications per second one process
// pushes through the broker: 128-byte publications with history (100
// kept) from 64 concurrent publishers over 1,000 channels, on Redis
// (rueidis pipelines the concurrent scripts) and, side by side, on the
// memory broker. Reported as pubs/s.
func BenchmarkPublish(b *testing.B) {
	data := make([]byte, 128)
	for i := range data {
		data[i] = 'a'
	}
	opts := broker.PublishOptions{HistorySize: 100}
	run := func(b *testing.B, br broker.Broker) {
		if err := br.Run(newRecorder()); err != nil {
			b.Fatal(err)
		}
		defer br.Close(context.Background())
		var n atomic.Int64
		b.SetParallelism(64) // 128 publishers on 2 cores, as bench/redisclients
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				ch := "bench:" + strconv.Itoa(int(n.Add(1)%1000))
				if _, err := br.Publish(ctx, ch, data, opts); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
	}
	b.Run("redis", func(b *testing.B) { run(b, newTestBroker(b, testenv.RedisPrefix(b))) })
	b.Run("memory", func(b *testing.B) { run(b, memory.New(memory.Config{})) })
}
