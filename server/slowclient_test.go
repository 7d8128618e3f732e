package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/config"
)

// rawDial opens a plain TCP connection to the server, closed when the
// test ends.
func rawDial(t testing.TB, base string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// trickle writes head, then one byte of body every interval until the
// connection fails or the test ends: a slow-loris client.
func trickle(t testing.TB, c net.Conn, head string, interval time.Duration) {
	t.Helper()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	})
	t.Cleanup(func() { close(stop); c.Close(); wg.Wait() })
}

// answerWithin reads one HTTP answer from c, failing the test if none
// comes within d.
func answerWithin(t testing.TB, c net.Conn, d time.Duration) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", d, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func slowConfig(c *config.Config) {
	channelstreamConfig(false)(c)
	resourcesConfig(c)
	c.Auth.Anonymous = false
	c.Auth.JWT.HMACSecret = testSecret
	c.Channelstream.AdminSecret = "admin-password"
	c.Limits.ReadTimeout = config.Duration(700 * time.Millisecond)
}

// A client that sends its headers and then trickles its body gets an
// answer: at once when the endpoint refuses it before reading the body
// (net/http no longer drains the body first), after limits.read_timeout
// when the body is needed. Before, none of these answered while the body
// trickled.
func TestTricklingBodiesGetAnswered(t *testing.T) {
	base, _ := start(t, slowConfig, Options{})
	for _, tc := range []struct {
		name, head string
		status     int
		within     time.Duration
	}{
		{"unauthenticated server API", "POST /api/server/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", 401, 500 * time.Millisecond},
		{"unauthenticated REST", "POST /api/resources/things/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", 401, 500 * time.Millisecond},
		{"unsigned Channelstream", "POST /connect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", 403, 500 * time.Millisecond},
		{"authenticated server API", "POST /api/server/publish HTTP/1.1\r\nHost: x\r\nAuthorization: apikey test-api-key-000001\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", 400, 3 * time.Second},
		{"admin sign-in form", "POST /admin/sign_in HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nu", 400, 3 * time.Second},
		{"chunked body", "POST /api/server/publish HTTP/1.1\r\nHost: x\r\nAuthorization: apikey test-api-key-000001\r\nTransfer-Encoding: chunked\r\n\r\n186A0\r\n{", 400, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, base)
			began := time.Now()
			trickle(t, c, tc.head, 100*time.Millisecond)
			resp, body := answerWithin(t, c, tc.within)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			t.Logf("%d after %v: %s", resp.StatusCode, time.Since(began).Round(time.Millisecond), strings.TrimSpace(body))
			// The connection is closed after the answer: what is left of the
			// body is never read.
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				t.Fatalf("connection still open after the answer (%d, %v)", n, err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Headers that trickle are cut off at limits.read_timeout, and an idle
// keep-alive connection at limits.idle_timeout.
func TestSlowHeadersAndIdleConnectionsAreClosed(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		c.Limits.ReadTimeout = config.Duration(500 * time.Millisecond)
		c.Limits.IdleTimeout = config.Duration(700 * time.Millisecond)
	}, Options{})

	c := rawDial(t, base)
	began := time.Now()
	trickle(t, c, "GET /healthz HTTP/1.1\r\nX-Slow: ", 100*time.Millisecond)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c) // closed without an answer
	if waited := time.Since(began); waited > 3*time.Second {
		t.Fatalf("slow headers kept the connection for %v", waited)
	}

	idle := rawDial(t, base)
	io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := answerWithin(t, idle, 2*time.Second); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	began = time.Now()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle keep-alive connection: %v, want EOF", err)
	}
	if waited := time.Since(began); waited < 500*time.Millisecond || waited > 3*time.Second {
		t.Fatalf("idle connection closed after %v, want about 700ms", waited)
	}
}

// An answer that its client does not read is bounded by
// limits.write_timeout: the handler's write fails and the connection is
// closed, instead of the handler (and the answer's memory) waiting for
// the client forever. Before, a client that came back later still got
// the whole answer.
func TestUnreadAnswerIsCutAtWriteTimeout(t *testing.T) {
	srv, base, _ := startServer(t, func(c *config.Config) {
		c.Resources = []config.Resource{{Name: "blobs", Fields: []config.Field{{Name: "body", Type: "text"}}}}
		c.Limits.WriteTimeout = config.Duration(time.Second)
		c.Limits.MaxRequestBody = 2 << 20
	}, Options{})
	row := `{"body": "` + strings.Repeat("x", 1<<20) + `"}`
	const rows = 24 // 24 MiB: more than the kernel's socket buffers hold
	for range rows {
		restWrite(t, "POST", base+"/api/resources/blobs/", row)
	}
	c := rawDial(t, base)
	io.WriteString(c, "GET /api/resources/blobs/?page_size=100 HTTP/1.1\r\nHost: x\r\n\r\n")
	// The handler starts writing, blocks, and gives up at the write
	// timeout: the request is no longer in flight although its client has
	// read nothing.
	eventually(t, 5*time.Second, func() error {
		if srv.active.Load() == 0 {
			return errors.New("the request has not reached its handler")
		}
		return nil
	})
	// Building the 24 MiB answer takes seconds under the race detector on
	// a loaded machine, before its first byte starts the write timeout;
	// without the timeout the handler would never return.
	eventually(t, 30*time.Second, func() error {
		if n := srv.active.Load(); n != 0 {
			return fmt.Errorf("%d requests in flight", n)
		}
		return nil
	})
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if isTimeout(err) {
		t.Fatalf("the connection stayed open after the write timeout (%d bytes read)", n)
	}
	if n >= rows<<20 {
		t.Fatalf("the whole answer (%d bytes) was still delivered after the write timeout", n)
	}
	t.Logf("read %d bytes of the %d MiB answer, then %v", n, rows, err)
}

// SIGTERM (Run's context ending) always ends Run with nil within
// limits.shutdown_timeout, whatever the clients do: trickling bodies,
// trickling headers, sockets that never answer their close frame.
func TestShutdownWithSlowClientsSucceedsInTime(t *testing.T) {
	srv, base, stop := startServer(t, func(c *config.Config) {
		slowConfig(c)
		c.Limits.ReadTimeout = config.Duration(time.Minute)
		c.Limits.ShutdownTimeout = config.Duration(2 * time.Second)
	}, Options{})
	for range 20 {
		trickle(t, rawDial(t, base), "POST /api/server/publish HTTP/1.1\r\nHost: x\r\nAuthorization: apikey test-api-key-000001\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", 200*time.Millisecond)
		trickle(t, rawDial(t, base), "GET /healthz HTTP/1.1\r\nX-Slow: ", 200*time.Millisecond)
	}
	// A WebSocket whose client never reads again: its close handshake
	// never completes.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws?conn_id="+csConnect(t, base, map[string]any{"username": "u"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// Wait until the server holds them all.
	eventually(t, 5*time.Second, func() error {
		if n := srv.gate.http.Load(); n < 40 {
			return fmt.Errorf("%d HTTP connections open", n)
		}
		return nil
	})
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after a shutdown with slow clients; the process would exit 1", err)
	}
	// Within the timeout, give or take the scheduling of a loaded machine.
	if took := time.Since(began); took > 2250*time.Millisecond {
		t.Fatalf("shutdown took %v, over limits.shutdown_timeout (2s)", took)
	}
	t.Logf("shut down in %v", time.Since(began).Round(time.Millisecond))
}
