//go:build unix

package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/config"
)

// Tests that need Unix: a low open-file limit, a small socket receive
// buffer.

// fdChildEnv runs TestDescriptorsRunShort's server side in a child
// process with a low open-file limit.
const fdChildEnv = "SWITCHYARD_TEST_FD_CHILD"

// The reproduction of the outside test: hundreds of clients trickling
// request bodies on a process with few descriptors. With the default
// (automatic) limit the process never runs out: /healthz keeps answering,
// the excess is refused with 503, valid upgrades work again once
// limits.read_timeout has cut the trickling clients, and SIGTERM still
// exits 0. With a limit configured above the descriptors, accept runs out
// (EMFILE) and the waiting connections are refused cleanly instead of
// timing out in the backlog.
func TestDescriptorsRunShort(t *testing.T) {
	if mode := os.Getenv(fdChildEnv); mode != "" {
		fdChild(t, mode)
		return
	}
	if openFileLimit() == 0 {
		t.Skip("no open-file limit on this platform")
	}
	for _, mode := range []string{"auto", "above"} {
		t.Run(mode, func(t *testing.T) { fdParent(t, mode) })
	}
}

func fdParent(t *testing.T, mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDescriptorsRunShort$", "-test.v")
	cmd.Env = append(os.Environ(), fdChildEnv+"="+mode, "SWITCHYARD_TEST_FD_DIR="+t.TempDir())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = logWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	base := ""
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			base = "http://" + strings.Fields(rest)[0]
			t.Log("child:", sc.Text())
			break
		}
		t.Log("child:", sc.Text())
	}
	if base == "" {
		t.Fatal("the child did not start")
	}
	go func() {
		for sc.Scan() {
			t.Log("child:", sc.Text())
		}
	}()

	// 400 clients trickling bodies, more than the child has descriptors.
	began := time.Now()
	for range 400 {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 2*time.Second)
		if err != nil {
			continue // a full backlog may refuse some: they are the excess
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			if _, err := io.WriteString(c, "POST /api/server/publish HTTP/1.1\r\nHost: x\r\nAuthorization: apikey test-api-key-0123456789\r\nContent-Length: 100000\r\n\r\n{"); err != nil {
				return
			}
			for {
				time.Sleep(200 * time.Millisecond)
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}()
	}
	statuses := map[int]int{}
	for range 10 {
		st, _, err := freshGet(base, "/healthz")
		if err != nil {
			if mode == "auto" {
				t.Fatalf("/healthz with 400 trickling clients: %v", err)
			}
			statuses[0]++
			continue
		}
		statuses[st]++
	}
	t.Logf("/healthz under load (%s): %v", mode, statuses)
	if mode == "auto" && statuses[200] != 10 {
		t.Fatalf("/healthz under load: %v", statuses)
	}
	if mode == "above" && statuses[503] == 0 {
		t.Fatalf("no clean refusal while out of descriptors: %v", statuses)
	}
	// Once limits.read_timeout (1 s in the child) has cut the trickling
	// clients, a valid upgrade and /healthz work again.
	eventually(t, 20*time.Second, func() error {
		c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/live", nil)
		if err != nil {
			if resp != nil {
				return fmt.Errorf("upgrade: %s", resp.Status)
			}
			return err
		}
		c.Close()
		return nil
	})
	if st, _, err := freshGet(base, "/healthz"); err != nil || st != 200 {
		t.Fatalf("/healthz after the load: %d %v", st, err)
	}
	t.Logf("served again %v after the load began", time.Since(began).Round(100*time.Millisecond))
	stdin.Close() // the child's SIGTERM
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the child did not exit 0: %v", err)
	}
}

// fdChild lowers its open-file limit and serves until its stdin closes.
func fdChild(t *testing.T, mode string) {
	rl := syscall.Rlimit{Cur: 256, Max: 256}
	var cur syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur)
	rl.Max = cur.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = os.Getenv("SWITCHYARD_TEST_FD_DIR")
	cfg.APIKeys = []config.Secret{testAPIKey}
	cfg.Limits.ReadTimeout = config.Duration(time.Second)
	cfg.Limits.ShutdownTimeout = config.Duration(3 * time.Second)
	if mode == "above" {
		cfg.Limits.MaxConnections = 100000
	}
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ADDR " + srv.Addr().String() + " max_connections=" + strconv.Itoa(srv.gate.max))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := srv.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// The reproduction of the long-poll leak: /listen polls whose answers
// are never read. Each answer's write is cut at limits.write_timeout, so
// the handlers end, Channelstream's GC collects the connections, and the
// goroutines and the answers' memory go with them. Before, every handler
// stayed blocked in its write, holding its answer, forever.
func TestUnreadLongPollsReleaseMemory(t *testing.T) {
	srv, base, _ := startServer(t, func(c *config.Config) {
		channelstreamConfig(false)(c)
		c.Limits.WriteTimeout = config.Duration(time.Second)
		c.Limits.MaxQueuedBytes = 8 << 20 // one poll's answer grows to 8 MiB
		c.Channelstream.ConnectionGC = config.Duration(time.Second)
		c.Channelstream.HeartbeatInterval = config.Duration(5 * time.Second)
	}, Options{})
	const polls = 5
	var ids []string
	for i := range polls {
		ids = append(ids, csConnect(t, base, map[string]any{"username": fmt.Sprint("u", i), "channels": []string{"room"}}))
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := ownGoroutines()

	// Clients with a 4 KiB receive window that never read.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
		return nil
	}}
	for _, id := range ids {
		c, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		io.WriteString(c, "GET /listen?conn_id="+id+" HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	eventually(t, 5*time.Second, func() error {
		if n := srv.channelstream.Stats().Polls; n != polls {
			return fmt.Errorf("%d polls parked", n)
		}
		return nil
	})
	text := strings.Repeat("x", 100<<10)
	for range 80 { // 8 MB to every poll
		if st, out := csCall(t, base, "POST", "/message", []map[string]any{{"user": "s", "channel": "room", "message": map[string]string{"text": text}}}); st != 200 {
			t.Fatalf("message: %d %s", st, out)
		}
	}
	eventually(t, 10*time.Second, func() error {
		if n := srv.active.Load(); n != 0 {
			return fmt.Errorf("%d /listen handlers still writing", n)
		}
		if n := srv.channelstream.Stats().Connections; n != 0 {
			return fmt.Errorf("%d connections not collected", n)
		}
		if n := ownGoroutines(); n > goroutines+5 {
			return fmt.Errorf("%d goroutines, %d before the polls", n, goroutines)
		}
		return nil
	})
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("heap %d MiB before the polls, %d MiB after", before.HeapAlloc>>20, after.HeapAlloc>>20)
	if after.HeapAlloc > before.HeapAlloc+16<<20 {
		t.Fatalf("heap grew from %d to %d MiB", before.HeapAlloc>>20, after.HeapAlloc>>20)
	}
}

// ownGoroutines counts the goroutines except River's: the queue's leader
// starts its maintenance services a moment after start, whenever it is
// elected, which says nothing about the polls.
func ownGoroutines() int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if !strings.Contains(g, "github.com/riverqueue/") {
			n++
		}
	}
	return n
}
