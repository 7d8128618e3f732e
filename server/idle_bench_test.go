package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
)

// BenchmarkIdleConnections measures what an idle /live connection costs a
// server built as `switchyard serve` builds it (embedded default store,
// signals, resources): the live heap after a GC, per connection, with
// the connections held open by a child process so the clients' memory is
// not counted. It is the in-process twin of `switchyard bench idle`
// (which reads RSS, garbage and GC headroom included) and runs once per
// size whatever b.N:
//
//	go test -run '^$' -bench BenchmarkIdleConnections -benchtime 1x ./server/
//
// SWITCHYARD_IDLE_HEAPPROFILE=path writes a heap profile taken while the
// connections are open (go tool pprof -sample_index=inuse_space).
func BenchmarkIdleConnections(b *testing.B) {
	for _, n := range []int{2000, 5000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			heap, inuse := idleCost(b, n)
			b.ReportMetric(heap, "heap-B/conn")
			b.ReportMetric(inuse, "inuse-B/conn")
		})
	}
}

// idleBudget is what the idle test allows an idle /live connection of
// live heap: docs/BENCHMARKS.md's goal for RSS is 3 KB, of which about
// half is GC headroom and handshake garbage (limits.idle_release returns
// most of that). Measured 1,106-1,133 B after issue 20's second round.
const idleBudget = 1300

// TestIdleConnectionCost fails when an idle /live connection holds more
// live heap than idleBudget, or when it holds a goroutine.
func TestIdleConnectionCost(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures memory: not in -short or -race runs")
	}
	heap, _ := idleCost(t, 1000)
	t.Logf("%.0f B of live heap per idle connection", heap)
	if heap > idleBudget {
		t.Errorf("an idle /live connection holds %.0f B of live heap, over the %d B budget", heap, idleBudget)
	}
}

// idleCost starts a server, opens n idle /live connections from a child
// process and returns the growth of the live heap (HeapAlloc after a
// GC) and of the in-use heap spans, per connection.
func idleCost(tb testing.TB, n int) (heap, inuse float64) {
	tb.Helper()
	if os.Getenv("SWITCHYARD_IDLE_HEAPPROFILE") != "" {
		// Sample every allocation of 64 B or more on average, not one per
		// 512 KiB: the profile is then per connection, not per chance.
		runtime.MemProfileRate = 64
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = tb.TempDir()
	srv, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			tb.Error(err)
		}
	}()
	// One connection first, so that what every connection shares (the
	// engine's poll loop and sweeper, pools, the first map buckets) is in
	// the baseline.
	warm, err := dialIdle(srv.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	defer warm.Close()
	waitConns(tb, srv, 1)
	before := liveHeap()

	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClients$")
	cmd.Env = append(os.Environ(), "SWITCHYARD_IDLE_CLIENTS="+srv.Addr().String()+","+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child closes its connections and exits
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		tb.Fatalf("idle clients: %q, %v", line, err)
	}
	waitConns(tb, srv, n+1)
	after := liveHeap()
	if path := os.Getenv("SWITCHYARD_IDLE_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			tb.Fatal(err)
		}
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	if g := runtime.NumGoroutine(); g > 1000 {
		tb.Errorf("%d goroutines with %d idle connections: an idle connection must hold none", g, n)
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n), float64(after.HeapInuse-before.HeapInuse) / float64(n)
}

// liveHeap returns the memory statistics after two GCs (the second
// collects what the first's finalizers freed).
func liveHeap() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// waitConns waits until the server's engine holds n connections.
func waitConns(tb testing.TB, srv *Server, n int) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for srv.engine.Len() != n {
		if time.Now().After(deadline) {
			tb.Fatalf("the engine holds %d connections, want %d", srv.engine.Len(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleClients is the child process of idleCost (it does nothing
// without SWITCHYARD_IDLE_CLIENTS=addr,n): it opens n /live
// connections, checks each received its $session connected frame,
// prints "ready" and holds them until its stdin closes.
func TestIdleClients(t *testing.T) {
	spec := os.Getenv("SWITCHYARD_IDLE_CLIENTS")
	if spec == "" {
		t.Skip("the child process of BenchmarkIdleConnections")
	}
	addr, count, _ := strings.Cut(spec, ",")
	n, err := strconv.Atoi(count)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := dialIdle(addr)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

// dialIdle opens a /live connection and waits for its connected frame.
func dialIdle(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(c, "GET /live HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: idle-bench\r\n\r\n",
		addr, base64.StdEncoding.EncodeToString(key))
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(got, []byte(`"connected"`)) {
		n, err := c.Read(buf)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("waiting for connected (got %q): %w", got, err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 101 ")) {
		c.Close()
		return nil, fmt.Errorf("not upgraded: %q", got)
	}
	c.SetReadDeadline(time.Time{})
	return c, nil
}
