// Command redisclients measures the two Redis clients considered for
// broker/redis, go-redis v9 and rueidis, on the broker's hot path: many
// goroutines each publishing a 128-byte publication through the same Lua
// script shape the broker uses (offset increment, XADD with MAXLEN,
// expiry, PUBLISH), against the Redis at -addr. It prints publications
// per second and the p50/p99 latency of one publish for each client.
//
// It is its own module so that the client that lost does not become a
// dependency of Switchyard. Run: go run . -addr 127.0.0.1:6379
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// script is the shape of the broker's publish: one round trip that
// increments the offset, appends to the stream, sets expiries and
// publishes.
const script = `
local top = redis.call("hincrby", KEYS[2], "s", 1)
redis.call("xadd", KEYS[1], "MAXLEN", ARGV[2], top, "d", ARGV[1])
redis.call("pexpire", KEYS[1], ARGV[3])
redis.call("pexpire", KEYS[2], ARGV[3])
redis.call("publish", ARGV[4], "p" .. top .. ":" .. ARGV[1])
return top
`

type result struct {
	name     string
	ops      int64
	elapsed  time.Duration
	p50, p99 time.Duration
}

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "Redis address")
	workers := flag.Int("workers", 128, "concurrent publishers")
	dur := flag.Duration("duration", 3*time.Second, "measuring time per client")
	channels := flag.Int("channels", 1000, "channels published to, round robin")
	flag.Parse()
	prefix := "redisclients:" + rand.Text()[:8] + ":"
	payload := make([]byte, 128)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	ctx := context.Background()

	gr := redis.NewClient(&redis.Options{Addr: *addr, PoolSize: *workers})
	grScript := redis.NewScript(script)
	rd, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{*addr}, DisableCache: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rdScript := rueidis.NewLuaScript(script)

	args := func(i int) ([]string, []string) {
		ch := prefix + strconv.Itoa(i%*channels)
		return []string{ch + ":s", ch + ":m"}, []string{string(payload), "100", "60000", ch}
	}
	var results []result
	results = append(results, run("go-redis v9 (pool of "+strconv.Itoa(*workers)+")", *workers, *dur, func(i int) error {
		keys, argv := args(i)
		a := make([]any, len(argv))
		for j, v := range argv {
			a[j] = v
		}
		return grScript.Run(ctx, gr, keys, a...).Err()
	}))
	results = append(results, run("rueidis (auto-pipelining)", *workers, *dur, func(i int) error {
		keys, argv := args(i)
		return rdScript.Exec(ctx, rd, keys, argv).Error()
	}))
	// go-redis with explicit pipelines: each worker sends batches of 16,
	// the best a caller that can batch its own publishes gets.
	results = append(results, runBatch("go-redis v9 (explicit pipelines of 16)", *workers/16, *dur, 16, func(base int) error {
		p := gr.Pipeline()
		for j := range 16 {
			keys, argv := args(base + j)
			a := make([]any, len(argv))
			for k, v := range argv {
				a[k] = v
			}
			grScript.EvalSha(ctx, p, keys, a...)
		}
		_, err := p.Exec(ctx)
		return err
	}))
	for _, r := range results {
		fmt.Printf("%-42s %9.0f publications/s   p50 %8s   p99 %8s\n", r.name, float64(r.ops)/r.elapsed.Seconds(), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
	}
	// Clean up only what this run created.
	for i := range *channels {
		ch := prefix + strconv.Itoa(i)
		gr.Del(ctx, ch+":s", ch+":m")
	}
	gr.Close()
	rd.Close()
}

func run(name string, workers int, dur time.Duration, op func(i int) error) result {
	return runBatch(name, workers, dur, 1, op)
}

// runBatch runs workers goroutines calling op until dur passes; each call
// publishes batch publications.
func runBatch(name string, workers int, dur time.Duration, batch int, op func(i int) error) result {
	// Warm up (scripts loaded, connections open).
	for i := range 100 {
		if err := op(i * batch); err != nil {
			fmt.Fprintln(os.Stderr, name, err)
			os.Exit(1)
		}
	}
	var (
		wg    sync.WaitGroup
		ops   atomic.Int64
		mu    sync.Mutex
		lats  []time.Duration
		errs  atomic.Int64
		start = time.Now()
		end   = start.Add(dur)
	)
	for w := range workers {
		wg.Go(func() {
			var mine []time.Duration
			for i := w; time.Now().Before(end); i += workers {
				t := time.Now()
				if err := op(i * batch); err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(t))
				ops.Add(int64(batch))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if errs.Load() > 0 {
		fmt.Fprintf(os.Stderr, "%s: %d errors\n", name, errs.Load())
	}
	slices.Sort(lats)
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[int(float64(len(lats)-1)*p)]
	}
	return result{name: name, ops: ops.Load(), elapsed: elapsed, p50: pct(0.50), p99: pct(0.99)}
}
