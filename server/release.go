package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"

	"github.com/switchyardhq/switchyard/ws"
)

// releaseBurst is how many WebSocket connections must have been accepted
// since the last release for the next one (limits.idle_release).
const releaseBurst = 1000

// releaseCPUShare bounds the time releases take: the next one waits at
// least this many times as long as the last one took (about 5 % of a
// core at most).
const releaseCPUShare = 20

// releaseAfterBursts runs limits.idle_release until ctx ends: once at
// least burst (releaseBurst) connections came since the last release (at
// first: since e's Accepted count was since, read by the caller before it
// starts the goroutine, so that no connection slips in unseen) and none for
// quiet, it collects garbage and returns the free heap to the OS. Without
// it an idle server keeps about twice its live heap (GOGC's headroom, and
// the scavenger keeps what the heap goal allows), and idle connections
// pay for that headroom in RSS (docs/BENCHMARKS.md, "Issue 20: idle,
// second round"). A server whose connections then exchange messages grows
// back towards the headroom as garbage accumulates.
func releaseAfterBursts(ctx context.Context, quiet time.Duration, burst, since uint64, e *ws.Engine, log *slog.Logger) {
	t := time.NewTicker(quiet)
	defer t.Stop()
	last := since // Accepted at the last release
	prev := e.Stats().Accepted
	var next time.Time
	sample := []rtmetrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
		acc := e.Stats().Accepted
		settled := acc == prev
		prev = acc
		if !settled || acc-last < burst || now.Before(next) {
			continue
		}
		rtmetrics.Read(sample)
		before := sample[0].Value.Uint64()
		start := time.Now()
		debug.FreeOSMemory()
		took := time.Since(start)
		rtmetrics.Read(sample)
		last = acc
		next = time.Now().Add(releaseCPUShare * took)
		log.Info("memory released after a connection burst (limits.idle_release)", "connections", e.Len(), "took", took,
			"released_bytes", int64(sample[0].Value.Uint64())-int64(before))
	}
}
