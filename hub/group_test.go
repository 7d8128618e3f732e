package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
)

// fakeGroup is a WriteGroup that writes each added batch with its
// writer's TryWriteFrames when flushed, and checks that one worker alone
// uses it and never adds more than a flush's worth.
type fakeGroup struct {
	busy    atomic.Bool
	added   []groupAdd
	flushes *atomic.Int64
	closed  *atomic.Int64
	t       *testing.T
}

type groupAdd struct {
	w      *groupTryWriter
	frames [][]byte
}

func (g *fakeGroup) Flush(result func(i int, done bool, err error)) {
	if !g.busy.CompareAndSwap(false, true) {
		g.t.Error("a group flushed by two goroutines at once")
	}
	defer g.busy.Store(false)
	if len(g.added) > readyChunk {
		g.t.Errorf("%d batches in one flush", len(g.added))
	}
	g.flushes.Add(1)
	for i, a := range g.added {
		done, err := a.w.TryWriteFrames(a.frames)
		result(i, done, err)
	}
	g.added = g.added[:0]
}

func (g *fakeGroup) Close() error { g.closed.Add(1); return nil }

// groupTryWriter is a tryWriter that joins a fakeGroup; fail makes its
// writes fail.
type groupTryWriter struct {
	tryWriter
	fail bool
}

func (w *groupTryWriter) TryWriteFrames(frames [][]byte) (bool, error) {
	if w.fail {
		return false, errors.New("connection reset")
	}
	return w.tryWriter.TryWriteFrames(frames)
}

func (w *groupTryWriter) AddToGroup(g WriteGroup, frames [][]byte) bool {
	fg := g.(*fakeGroup)
	fg.added = append(fg.added, groupAdd{w, frames})
	return true
}

// Writers with a WriteGroup write every session's frames in order
// through it: a session whose batch is left pending moves to a goroutine
// of its own without holding the others, a session whose write fails is
// closed and written no more, and a writer that cannot join a group is
// written one at a time. Stats count the workers and their writes.
func TestWriterPoolWritesThroughGroups(t *testing.T) {
	var flushes, closed atomic.Int64
	var mu sync.Mutex
	made := 0
	b := memory.New(memory.Config{})
	opts := config.DefaultChannelOptions()
	opts.HistorySize, opts.HistoryTTL = 10_000, config.Duration(time.Hour) // offsets, to check the order
	h, err := New(Config{Broker: b, Presence: b, Writers: 2, MaxQueuedBytes: 1 << 30, Channels: config.Channels{Default: opts},
		NewWriteGroup: func(size int) (WriteGroup, error) {
			if size != readyChunk {
				t.Errorf("group of %d", size)
			}
			mu.Lock()
			defer mu.Unlock()
			made++
			if made == 2 {
				return nil, errors.New("no io_uring here") // this worker writes one at a time
			}
			return &fakeGroup{flushes: &flushes, closed: &closed, t: t}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if st := h.Stats(); st.GroupWriters != 1 {
		t.Fatalf("%d group writers, want 1 (one of the two failed)", st.GroupWriters)
	}
	ctx := context.Background()
	fast := make([]*groupTryWriter, 100)
	stuck := &groupTryWriter{tryWriter: tryWriter{stuck: true, release: make(chan struct{})}}
	failing := &groupTryWriter{fail: true}
	plain := &tryWriter{} // not a GroupWriter
	sub := func(id string, w Writer) {
		s := h.Connect(id, Principal{}, w, offsetEncoder{})
		if err := h.Subscribe(ctx, s, "news", nil, func(SubscribeResult) []byte { return []byte("ok") }); err != nil {
			t.Fatal(err)
		}
	}
	for i := range fast {
		fast[i] = &groupTryWriter{}
		sub(fmt.Sprint(i), fast[i])
	}
	sub("stuck", stuck)
	sub("failing", failing)
	sub("plain", plain)
	const n = 500
	for range n {
		if _, err := h.Publish(ctx, nil, "news", json.RawMessage(`"x"`)); err != nil {
			t.Fatal(err)
		}
	}
	waiting := []*tryWriter{plain}
	for _, f := range fast {
		waiting = append(waiting, &f.tryWriter)
	}
	waitAllFrames(t, n+1, waiting...)
	close(stuck.release)
	h.writers.Wait()
	for _, w := range append(fast, stuck) {
		wantInOrder(t, w.snapshot(), n)
	}
	if got := failing.count(); got != 0 {
		t.Errorf("the failing session recorded %d frames", got)
	}
	st := h.Stats()
	if st.GroupWrites == 0 || st.GroupFlushes == 0 || flushes.Load() != int64(st.GroupFlushes) {
		t.Errorf("stats: %d writes in %d flushes (the group saw %d flushes)", st.GroupWrites, st.GroupFlushes, flushes.Load())
	}
	h.Close()
	if closed.Load() != 1 {
		t.Errorf("%d groups closed, want 1", closed.Load())
	}
}
