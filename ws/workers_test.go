package ws

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Work dispatched one piece after another reuses one parked worker, and
// Shutdown ends the parked workers.
func TestDispatchReusesWorkers(t *testing.T) {
	e := newEngine(EngineConfig{})
	done := make(chan struct{})
	for range 20 {
		e.dispatch(func() { done <- struct{}{} })
		<-done
		// Wait for the worker to park again.
		for deadline := time.Now().Add(5 * time.Second); ; {
			e.wmu.Lock()
			n := len(e.parked)
			e.wmu.Unlock()
			if n == 1 {
				break
			}
			if n > 1 || time.Now().After(deadline) {
				t.Fatalf("%d parked workers after sequential work, want 1", n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Concurrent work starts as many workers as it needs.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 4 {
		wg.Add(1)
		e.dispatch(func() { wg.Done(); <-release })
	}
	wg.Wait()
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if len(e.parked) != 0 {
		t.Fatalf("%d workers still parked after Shutdown", len(e.parked))
	}
}

// deep uses about n KB of stack.
//
//go:noinline
func deep(n int) int {
	var pad [1024]byte
	pad[n%1024] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[n%1024])
}

// A handler that goes 32 KB deep, run on a new goroutine per message (as
// before) and through dispatch (a reused worker).
func BenchmarkDispatchDeepStack(b *testing.B) {
	run := map[string]func(e *Engine, fn func()){
		"goroutine": func(e *Engine, fn func()) { e.goTracked(fn) },
		"dispatch":  func(e *Engine, fn func()) { e.dispatch(fn) },
	}
	for _, name := range []string{"goroutine", "dispatch"} {
		b.Run(name, func(b *testing.B) {
			e := newEngine(EngineConfig{})
			defer e.Shutdown(context.Background())
			done := make(chan struct{}, 1)
			fn := func() { deep(32); done <- struct{}{} }
			b.ReportAllocs()
			for b.Loop() {
				run[name](e, fn)
				<-done
			}
		})
	}
}
