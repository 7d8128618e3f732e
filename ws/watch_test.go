package ws

import (
	"errors"
	"net"
	"runtime"
	"testing"
	"time"
)

// Watch calls back once per arming when a plain socket has bytes or its
// peer hangs up, never after Stop, and refuses what it cannot watch.
func TestWatch(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("epoll only")
	}
	e, err := NewEngine(EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	fired := make(chan struct{}, 4)
	w, err := e.Watch(server, func() { fired <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	wait := func(want bool) {
		t.Helper()
		select {
		case <-fired:
			if !want {
				t.Fatal("the watch fired")
			}
		case <-time.After(300 * time.Millisecond):
			if want {
				t.Fatal("the watch did not fire")
			}
		}
	}
	wait(false) // nothing to read yet
	client.Write([]byte("x"))
	wait(true)
	wait(false) // one-shot: the byte is still there, but not re-armed
	w.Rearm()
	wait(true) // level-triggered: still readable
	w.Stop()
	w.Rearm() // after Stop: nothing
	client.Close()
	wait(false)
	w.Stop() // twice is fine

	if _, err := e.Watch(&wrapped{server}, func() {}); !errors.Is(err, ErrNoPoller) {
		t.Fatalf("a wrapped conn: %v, want ErrNoPoller", err)
	}
	g, err := NewEngine(EngineConfig{Goroutines: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Watch(server, func() {}); !errors.Is(err, ErrNoPoller) {
		t.Fatalf("a goroutine engine: %v, want ErrNoPoller", err)
	}
	e.Close()
	if _, err := e.Watch(server, func() {}); !errors.Is(err, ErrEngineClosed) {
		t.Fatalf("a closed engine: %v, want ErrEngineClosed", err)
	}
}

type wrapped struct{ net.Conn }
