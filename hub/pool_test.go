package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
)

// tryWriter is a TryWriter that records frames. While stuck is open, a
// try leaves the batch pending (as a full socket would) and WriteFrames
// waits until release closes, then writes the pending batch first.
type tryWriter struct {
	recordWriter
	stuck   bool
	release chan struct{}
	pmu     sync.Mutex
	pending [][]byte
	tries   int
}

func (w *tryWriter) TryWriteFrames(frames [][]byte) (bool, error) {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	w.tries++
	if w.pending != nil {
		return false, fmt.Errorf("TryWriteFrames with a batch pending")
	}
	if w.stuck {
		w.pending = append([][]byte{}, frames...)
		return false, nil
	}
	return true, w.recordWriter.WriteFrames(context.Background(), frames)
}

func (w *tryWriter) WriteFrames(ctx context.Context, frames [][]byte) error {
	if w.stuck {
		<-w.release
	}
	w.pmu.Lock()
	pending := w.pending
	w.pending = nil
	w.pmu.Unlock()
	w.recordWriter.WriteFrames(ctx, pending)
	return w.recordWriter.WriteFrames(ctx, frames)
}

func poolHub(t *testing.T, writers int, maxQueued int64) *Hub {
	t.Helper()
	b := memory.New(memory.Config{})
	opts := config.DefaultChannelOptions()
	opts.HistorySize, opts.HistoryTTL = 10_000, config.Duration(time.Hour) // offsets, to check the order
	h, err := New(Config{Broker: b, Presence: b, Writers: writers, MaxQueuedBytes: maxQueued, Channels: config.Channels{Default: opts}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); b.Close(context.Background()) })
	return h
}

// With one worker, a client that takes nothing does not delay the others:
// its session moves to a goroutine of its own, and every session gets its
// frames in order.
func TestWriterPoolSlowClientDoesNotHoldAWorker(t *testing.T) {
	h := poolHub(t, 1, 1<<30)
	ctx := context.Background()
	slow := &tryWriter{stuck: true, release: make(chan struct{})}
	fast := make([]*tryWriter, 10)
	sessions := []*Session{h.Connect("slow", Principal{}, slow, offsetEncoder{})}
	for i := range fast {
		fast[i] = &tryWriter{}
		sessions = append(sessions, h.Connect(fmt.Sprint(i), Principal{}, fast[i], offsetEncoder{}))
	}
	for _, s := range sessions {
		if err := h.Subscribe(ctx, s, "news", nil, func(SubscribeResult) []byte { return []byte("ok") }); err != nil {
			t.Fatal(err)
		}
	}
	const n = 1000
	for range n {
		if _, err := h.Publish(ctx, nil, "news", json.RawMessage(`"x"`)); err != nil {
			t.Fatal(err)
		}
	}
	waitAllFrames(t, n+1, fast...)
	close(slow.release)
	h.writers.Wait()
	for _, w := range append(fast, slow) {
		wantInOrder(t, w.snapshot(), n)
	}
}

// waitAllFrames waits until each writer has want frames: a session that is
// stuck must not hold them back.
func waitAllFrames(t *testing.T, want int, ws ...*tryWriter) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range ws {
		for w.count() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if w.count() != want {
			t.Fatalf("a session got %d of %d frames while another was stuck", w.count(), want)
		}
	}
}

// wantInOrder checks a session's frames: "ok" (its subscribe reply),
// then publications 1 to n in order.
func wantInOrder(t *testing.T, got []string, n int) {
	t.Helper()
	if len(got) != n+1 || got[0] != "ok" {
		t.Fatalf("got %d frames, want %d", len(got), n+1)
	}
	for i, f := range got[1:] {
		if want := fmt.Sprintf("pub:%d", i+1); f != want {
			t.Fatalf("frame %d is %q, want %q", i+1, f, want)
		}
	}
}

// A pooled session whose client stops reading is still closed with 4008
// when its outbox overflows.
func TestWriterPoolSlowConsumerClosed(t *testing.T) {
	h := poolHub(t, 2, 4096)
	ctx := context.Background()
	stuck := &tryWriter{stuck: true, release: make(chan struct{})}
	s := h.Connect("slow", Principal{}, stuck, offsetEncoder{})
	if err := h.Subscribe(ctx, s, "news", nil, func(SubscribeResult) []byte { return []byte("ok") }); err != nil {
		t.Fatal(err)
	}
	for range 5000 {
		if _, err := h.Publish(ctx, nil, "news", json.RawMessage(`"abcdefghijklmnopqrstuvwxyz"`)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		stuck.mu.Lock()
		code := stuck.closed
		stuck.mu.Unlock()
		if code == CloseSlowConsumer {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("closed with %d, want %d", code, CloseSlowConsumer)
		}
		time.Sleep(time.Millisecond)
	}
	close(stuck.release)
	h.Disconnect(s)
}

// Close stops the workers; a session that becomes ready afterwards is
// still written (by a goroutine of its own).
func TestWriterPoolClose(t *testing.T) {
	h := poolHub(t, 2, 1<<20)
	w := &tryWriter{}
	s := h.Connect("a", Principal{}, w, offsetEncoder{})
	s.Send([]byte("before"))
	h.Close()
	s.Send([]byte("after"))
	h.writers.Wait()
	if got := w.snapshot(); len(got) != 2 || got[1] != "after" {
		t.Fatalf("got %q", got)
	}
}

func TestWritersValidated(t *testing.T) {
	b := memory.New(memory.Config{})
	defer b.Close(context.Background())
	for _, n := range []int{-2, MaxWriters + 1} {
		if _, err := New(Config{Broker: b, Presence: b, Writers: n}); err == nil {
			t.Errorf("Writers %d accepted", n)
		}
	}
	h := poolHub(t, -1, 1<<20)
	w := &tryWriter{}
	s := h.Connect("a", Principal{}, w, offsetEncoder{})
	s.Send([]byte("x"))
	h.writers.Wait()
	if w.tries != 0 || w.count() != 1 {
		t.Fatalf("without a pool: %d tries, %d frames", w.tries, w.count())
	}
}
