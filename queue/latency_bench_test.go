package queue

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/testenv"
)

// benchQueue opens a started queue of one queue ("default", concurrency
// 16, as `switchyard bench signals`) on driver, with handler fn for kind
// "bench".
func benchQueue(b *testing.B, driver string, fn HandlerFunc) *Queue {
	b.Helper()
	qc := config.DefaultQueueConfig("default")
	qc.Concurrency = 16
	cfg := Config{Driver: driver, Queues: []config.Queue{qc}}
	if driver == DriverSQLite {
		cfg.Path = filepath.Join(b.TempDir(), "queue.db")
	} else {
		cfg.Pool = testPool(b, testenv.PostgresSchema(b))
	}
	q, err := Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := q.Handle("bench", fn); err != nil {
		b.Fatal(err)
	}
	if err := q.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		q.Stop(ctx)
	})
	return q
}

// BenchmarkEnqueueToRun measures what a durable signal call costs in the
// queue: the time from Enqueue's call to its handler's start, with jobs
// enqueued at 1,000/s (the issue 15 rate) from a goroutine each, as
// concurrent signal calls are. It reports the p50, p99 and max latency.
//
//	go test -run '^$' -bench EnqueueToRun -benchtime 5000x ./queue
func BenchmarkEnqueueToRun(b *testing.B) {
	for _, driver := range []string{DriverSQLite, DriverPostgres} {
		b.Run(driver, func(b *testing.B) {
			const rate = 1000
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			var ran sync.WaitGroup
			q := benchQueue(b, driver, func(_ context.Context, j Job) error {
				t, _ := strconv.ParseInt(string(j.Payload), 10, 64)
				mu.Lock()
				lat = append(lat, time.Since(time.Unix(0, t)))
				mu.Unlock()
				ran.Done()
				return nil
			})
			ctx := context.Background()
			ran.Add(b.N)
			var callers sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
					time.Sleep(d)
				}
				callers.Go(func() {
					p := json.RawMessage(strconv.FormatInt(time.Now().UnixNano(), 10))
					if _, err := q.Enqueue(ctx, Params{Queue: "default", Kind: "bench", Payload: p}); err != nil {
						b.Error(err)
						ran.Done()
					}
				})
			}
			callers.Wait()
			ran.Wait()
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
				b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
				b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
			}
		})
	}
}

// BenchmarkThroughput enqueues b.N no-op jobs from 8 goroutines and
// waits until all ran: jobs/s of the queue alone.
func BenchmarkThroughput(b *testing.B) {
	for _, driver := range []string{DriverSQLite, DriverPostgres} {
		b.Run(driver, func(b *testing.B) {
			var ran sync.WaitGroup
			q := benchQueue(b, driver, func(context.Context, Job) error { ran.Done(); return nil })
			ctx := context.Background()
			ran.Add(b.N)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := w; i < b.N; i += 8 {
						if _, err := q.Enqueue(ctx, Params{Queue: "default", Kind: "bench"}); err != nil {
							b.Error(err)
							ran.Done()
						}
					}
				})
			}
			wg.Wait()
			ran.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
