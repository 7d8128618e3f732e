package channelstream

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawHTTP is an HTTP/1.1 client on one TCP connection that sees the
// answer's bytes as they are on the wire.
type rawHTTP struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t testing.TB, url string) *rawHTTP {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawHTTP{t: t, nc: nc, r: bufio.NewReaderSize(nc, 256)} // small: TestParkedCost counts it
}

// get sends GET path with the extra header lines.
func (c *rawHTTP) get(path string, hdr ...string) {
	c.t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: test\r\nOrigin: http://app.example.com\r\n" + strings.Join(hdr, "") + "\r\n"
	if _, err := io.WriteString(c.nc, req); err != nil {
		c.t.Fatal(err)
	}
}

// answer reads one answer: its status line and header lines as sent,
// and its body (by Content-Length).
func (c *rawHTTP) answer(timeout time.Duration) (head []string, body string, err error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	defer c.nc.SetReadDeadline(time.Time{})
	n := -1
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return head, "", err
		}
		if line == "\r\n" {
			break
		}
		head = append(head, line)
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if n < 0 {
		return head, "", fmt.Errorf("no Content-Length in %q", head)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(c.r, b)
	return head, string(b), err
}

func (c *rawHTTP) mustAnswer(timeout time.Duration) ([]string, string) {
	c.t.Helper()
	head, body, err := c.answer(timeout)
	if err != nil {
		c.t.Fatalf("reading the answer: %v (head %q)", err, head)
	}
	return head, body
}

func waitPolls(t *testing.T, ts *testServer, polls, parked int) {
	t.Helper()
	eventually(t, 30*time.Second, func() error { // generous: a loaded machine is slow to accept 200 polls
		if p, k := ts.srv.Stats().Polls, ts.srv.Parked(); p != polls || k != parked {
			return fmt.Errorf("%d polls, %d parked; want %d, %d", p, k, polls, parked)
		}
		return nil
	})
}

var (
	dateLine  = regexp.MustCompile(`^Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n$`)
	volatiles = regexp.MustCompile(`"(uuid|timestamp)": ?"[^"]*"`)
)

// A parked poll answers as net/http's path does, byte for byte but for
// the date and the message's own uuid and timestamp (JSON and JSONP),
// and the next poll on the same keep-alive connection works (and is
// parked again).
func TestParkedAnswerMatchesNetHTTP(t *testing.T) {
	type exchange struct {
		head []string
		body string
	}
	run := func(goroutines bool) []exchange {
		ts := newTestServer(t, func(c *Config) { c.PollGoroutines = goroutines })
		id := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}})
		cl := dialRaw(t, ts.url)
		parked := 1
		if goroutines {
			parked = 0
		}
		var out []exchange
		for i, query := range []string{"", "&callback=app.cb_1", ""} {
			cl.get("/listen?conn_id=" + id + query)
			waitPolls(t, ts, 1, parked)
			ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "room", "message": map[string]any{"n": i}}}, 200)
			head, body := cl.mustAnswer(5 * time.Second)
			out = append(out, exchange{head, body})
			waitPolls(t, ts, 0, 0)
		}
		return out
	}
	parked, plain := run(false), run(true)
	for i := range plain {
		p, g := parked[i], plain[i]
		if len(p.head) != len(g.head) {
			t.Fatalf("exchange %d: header lines\nparked:   %q\nnet/http: %q", i, p.head, g.head)
		}
		for j := range g.head {
			if dateLine.MatchString(g.head[j]) && dateLine.MatchString(p.head[j]) {
				continue
			}
			if p.head[j] != g.head[j] {
				t.Errorf("exchange %d, line %d: parked %q, net/http %q", i, j, p.head[j], g.head[j])
			}
		}
		pb, gb := volatiles.ReplaceAllString(p.body, `"$1":""`), volatiles.ReplaceAllString(g.body, `"$1":""`)
		if pb != gb || !strings.Contains(pb, fmt.Sprintf(`"n":%d`, i)) {
			t.Errorf("exchange %d: bodies\nparked:   %s\nnet/http: %s", i, p.body, g.body)
		}
		if strings.Contains(strings.Join(p.head, ""), "Connection: close") {
			t.Errorf("exchange %d: a parked answer closes the connection: %q", i, p.head)
		}
	}
	if !strings.HasPrefix(parked[1].body, "app.cb_1([") {
		t.Errorf("JSONP answer %q", parked[1].body)
	}
}

// The heartbeat answers an idle parked poll with [] on time, and not
// before.
func TestParkedHeartbeat(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Heartbeat = 300 * time.Millisecond })
	id := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}})
	cl := dialRaw(t, ts.url)
	for range 2 {
		start := time.Now()
		cl.get("/listen?conn_id=" + id)
		head, body := cl.mustAnswer(5 * time.Second)
		took := time.Since(start)
		if head[0] != "HTTP/1.1 200 OK\r\n" || body != "[]" || took < 250*time.Millisecond || took > 3*time.Second {
			t.Fatalf("heartbeat answer %q %q after %v", head, body, took)
		}
	}
	waitPolls(t, ts, 0, 0)
}

// A client that hangs up while parked releases its record at once (no
// goroutine, no count left), and its connection lives on for its next
// poll.
func TestParkedClientGone(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Heartbeat = time.Minute })
	id := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}})
	before := runtime.NumGoroutine()
	cl := dialRaw(t, ts.url)
	cl.get("/listen?conn_id=" + id)
	waitPolls(t, ts, 1, 1)
	cl.nc.Close()
	waitPolls(t, ts, 0, 0)
	eventually(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
	if ts.srv.Stats().Connections != 1 {
		t.Fatalf("the connection went with its poll: %+v", ts.srv.Stats())
	}
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "room", "message": map[string]any{"n": 7}}}, 200)
	ts.waitKept(t, id, `"n":7`)
	cl = dialRaw(t, ts.url)
	cl.get("/listen?conn_id=" + id)
	_, body := cl.mustAnswer(5 * time.Second)
	if !strings.Contains(body, `"n":7`) || !strings.Contains(body, `"catchup":true`) {
		t.Fatalf("next poll %s", body)
	}
}

// Bytes sent while a poll is parked (pipelining after the fact, or
// garbage) close that socket without an answer; nothing else breaks.
func TestParkedGarbage(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Heartbeat = time.Minute })
	id := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}})
	cl := dialRaw(t, ts.url)
	cl.get("/listen?conn_id=" + id)
	waitPolls(t, ts, 1, 1)
	io.WriteString(cl.nc, "\x00\x01garbage\r\n\r\n")
	if head, body, err := cl.answer(5 * time.Second); err == nil || len(head) > 0 {
		t.Fatalf("a garbled parked poll got an answer: %q %q", head, body)
	}
	waitPolls(t, ts, 0, 0)
	cl = dialRaw(t, ts.url)
	cl.get("/listen?conn_id=" + id)
	waitPolls(t, ts, 1, 1)
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "room", "message": map[string]any{"n": 1}}}, 200)
	if _, body := cl.mustAnswer(5 * time.Second); !strings.Contains(body, `"n":1`) {
		t.Fatalf("the next poll %s", body)
	}
}

// Requests pipelined behind a poll before it was parked are kept and
// served, in order, once it has answered.
func TestParkedPipelined(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Heartbeat = time.Minute })
	id := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}})
	cl := dialRaw(t, ts.url)
	req := "GET /listen?conn_id=" + id + " HTTP/1.1\r\nHost: test\r\n\r\n"
	io.WriteString(cl.nc, req+"GET /info HTTP/1.1\r\nHost: test\r\n\r\n")
	waitPolls(t, ts, 1, 1)
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "room", "message": map[string]any{"n": 1}}}, 200)
	if _, body := cl.mustAnswer(5 * time.Second); !strings.Contains(body, `"n":1`) {
		t.Fatalf("the poll %s", body)
	}
	head, body := cl.mustAnswer(5 * time.Second)
	if head[0] != "HTTP/1.1 403 Forbidden\r\n" || !strings.Contains(body, "Access was denied") {
		t.Fatalf("the pipelined request: %q %s", head, body)
	}
}

// Close answers every parked poll at once with Connection: close, and
// then closes their sockets.
func TestParkedShutdown(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Heartbeat = time.Minute })
	const n = 50
	clients := make([]*rawHTTP, n)
	for i := range clients {
		id := ts.connect(map[string]any{"username": fmt.Sprint("u", i), "channels": []string{"room"}})
		clients[i] = dialRaw(t, ts.url)
		clients[i].get("/listen?conn_id=" + id)
	}
	waitPolls(t, ts, n, n)
	start := time.Now()
	ts.srv.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Close took %v", took)
	}
	if ts.srv.Parked() != 0 || ts.srv.Stats().Polls != 0 {
		t.Fatalf("after Close: %d parked, %+v", ts.srv.Parked(), ts.srv.Stats())
	}
	for i, cl := range clients {
		head, body := cl.mustAnswer(5 * time.Second)
		if head[0] != "HTTP/1.1 200 OK\r\n" || head[len(head)-1] != "Connection: close\r\n" || body != "[]" {
			t.Fatalf("client %d: %q %q", i, head, body)
		}
		if _, err := cl.r.ReadByte(); err != io.EOF {
			t.Fatalf("client %d: socket left open (%v)", i, err)
		}
	}
}

// Parked polls hold no goroutine and little memory; net/http's path
// holds a goroutine each (the assertion's other side, so it can fail).
// Both figures include the test's client side of each connection (a
// net.Conn and a 256-byte reader).
func TestParkedCost(t *testing.T) {
	const n = 200
	measure := func(goroutines bool) (int, float64) {
		ts := newTestServer(t, func(c *Config) { c.PollGoroutines = goroutines; c.Heartbeat = time.Minute })
		ids := make([]string, n)
		for i := range ids {
			ids[i] = ts.connect(map[string]any{"username": fmt.Sprint("u", i), "channels": []string{"room"}})
		}
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		g0 := runtime.NumGoroutine()
		clients := make([]*rawHTTP, n)
		for i := range clients {
			clients[i] = dialRaw(t, ts.url)
		}
		for i, cl := range clients {
			cl.get("/listen?conn_id=" + ids[i])
		}
		parked := n
		if goroutines {
			parked = 0
		}
		waitPolls(t, ts, n, parked)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		g1 := runtime.NumGoroutine()
		mem := float64(m1.HeapInuse+m1.StackInuse) - float64(m0.HeapInuse+m0.StackInuse)
		ts.srv.Close()
		return g1 - g0, mem / n
	}
	pg, pm := measure(false)
	gg, gm := measure(true)
	t.Logf("per poll: parked %d goroutines in all, %.0f B; net/http %d goroutines in all, %.0f B", pg, pm, gg, gm)
	if pg > 10 {
		t.Errorf("%d parked polls added %d goroutines", n, pg)
	}
	if gg < n {
		t.Errorf("net/http's path added only %d goroutines for %d polls: the measure is broken", gg, n)
	}
	if (pm > 8<<10 && !raceEnabled) || pm > gm/2 {
		t.Errorf("a parked poll costs %.0f B of heap and stacks (net/http's path %.0f B)", pm, gm)
	}
}

// BenchmarkPollCycle is one long-poll's round on a keep-alive
// connection: the request, the poll parked, a message delivered through
// the connection's transport (MaxQueued of 1 byte answers at once,
// without the batching gap), the answer written, the connection back to
// HTTP. "parked" is the epoll path, "net-http" the goroutine path.
func BenchmarkPollCycle(b *testing.B) {
	for _, tc := range []struct {
		name       string
		goroutines bool
	}{{"parked", false}, {"net-http", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ts := newTestServer(b, func(c *Config) { c.PollGoroutines = tc.goroutines; c.MaxQueued = 1; c.Heartbeat = time.Minute })
			id := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}})
			ts.srv.mu.Lock()
			c := ts.srv.conns[id]
			ts.srv.mu.Unlock()
			cl := dialRaw(b, ts.url)
			frame := [][]byte{[]byte(`[{"catchup":false,"type":"message","uuid":"u","channel":"room","message":{"n":1}}]`)}
			b.ReportAllocs()
			for b.Loop() {
				cl.get("/listen?conn_id=" + id)
				for ts.srv.polls.Load() == 0 {
					runtime.Gosched()
				}
				c.WriteFrames(b.Context(), frame)
				if _, body, err := cl.answer(5 * time.Second); err != nil || !strings.Contains(body, `"n":1`) {
					b.Fatalf("answer %q: %v", body, err)
				}
				for ts.srv.polls.Load() != 0 {
					runtime.Gosched()
				}
			}
		})
	}
}
