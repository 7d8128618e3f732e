//go:build linux

package ws

import (
	"context"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// blockedOn returns the threads of this process blocked in epoll_wait or
// epoll_pwait on epfd, read from /proc/self/task/*/syscall (the call's
// number, then its arguments).
func blockedOn(t *testing.T, epfd int) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatalf("no /proc/self/task on Linux: %v", err)
	}
	var out []string
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue // running
		}
		nr, err1 := strconv.Atoi(f[0])
		fd, err2 := strconv.ParseInt(strings.TrimPrefix(f[1], "0x"), 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		wait := nr == unix.SYS_EPOLL_PWAIT || nr == unix.SYS_EPOLL_PWAIT2 ||
			runtime.GOARCH == "amd64" && nr == 232 // epoll_wait, amd64 only
		if wait && int(fd) == epfd {
			out = append(out, task.Name())
		}
	}
	return out
}

// An idle engine's loops wait as parked goroutines in the runtime's
// netpoller, not as threads blocked in epoll_wait on their own epoll
// descriptors (which the runtime's monitor takes the P of every 10 ms,
// then polls every 20 µs: BenchmarkSparseWakes); and they still wake for
// a connection's events and for Close.
func TestPollLoopParksInNetpoller(t *testing.T) {
	e, err := NewEngine(EngineConfig{Pollers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.pollers) != 2 {
		t.Fatalf("%d pollers", len(e.pollers))
	}
	for i, p := range e.pollers {
		if !p.parks {
			t.Fatalf("poller %d is not in the netpoller", i)
		}
	}
	// Watch a socket: a byte from its peer wakes the loop.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	woke := make(chan struct{}, 1)
	watch, err := e.Watch(r, func() {
		select {
		case woke <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	time.Sleep(50 * time.Millisecond) // the loops are waiting by now
	for i, p := range e.pollers {
		if th := blockedOn(t, p.epfd); len(th) > 0 {
			t.Fatalf("poller %d: threads %v blocked in epoll_wait on its descriptor %d", i, th, p.epfd)
		}
	}
	w.Write([]byte{1})
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not wake for a watched descriptor")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
