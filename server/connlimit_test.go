package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/config"
)

// freshGet makes one request on a new connection (no keep-alive pool, so
// the test's own idle connections do not count against the limit).
func freshGet(base, path string) (int, string, error) {
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := cl.Get(base + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// limits.max_connections counts every client connection, HTTP ones and
// WebSockets alike. At the limit /healthz still answers, and everything
// else is refused at once with 503 naming the key; below it again, the
// server serves normally.
func TestConnectionLimitCountsEveryConnection(t *testing.T) {
	srv, base, _ := startServer(t, func(c *config.Config) {
		c.Limits.MaxConnections = 12
		c.Limits.ReadTimeout = config.Duration(time.Minute)
	}, Options{})
	// Idle HTTP connections that never send a request, and WebSockets.
	// start's own probe connection goes away first.
	eventually(t, 5*time.Second, func() error {
		if n := srv.gate.open(); n != 0 {
			return fmt.Errorf("%d connections open before the test", n)
		}
		return nil
	})
	var idle []net.Conn
	for range 6 {
		idle = append(idle, rawDial(t, base))
	}
	for range 6 {
		dialLive(t, base)
	}
	eventually(t, 5*time.Second, func() error {
		if n := srv.gate.open(); n != 12 {
			return fmt.Errorf("%d connections open", n)
		}
		return nil
	})
	for range 3 {
		if st, body, err := freshGet(base, "/healthz"); err != nil || st != 200 {
			t.Fatalf("/healthz at the limit: %d %s %v", st, body, err)
		}
	}
	st, body, err := freshGet(base, "/readyz")
	if err != nil || st != 503 || !strings.Contains(body, "limits.max_connections") {
		t.Fatalf("/readyz at the limit: %d %s %v", st, body, err)
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/live", nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("an upgrade at the limit: %v %v", resp, err)
	}
	for _, c := range idle[:3] {
		c.Close()
	}
	eventually(t, 5*time.Second, func() error {
		if st, body, err := freshGet(base, "/readyz"); err != nil || st != 200 {
			return fmt.Errorf("/readyz below the limit: %d %s %v", st, body, err)
		}
		return nil
	})
	dialLive(t, base)
}

// The automatic limit is the open-file limit minus a reserve, and a
// configured one is used as it is.
func TestMaxConnectionsFromTheOpenFileLimit(t *testing.T) {
	if got := maxConnections(500); got != 500 {
		t.Fatalf("configured: %d", got)
	}
	n := openFileLimit()
	if n == 0 {
		t.Skip("no open-file limit on this platform")
	}
	if got := maxConnections(0); got != n-descriptorReserve && !(n < 2*descriptorReserve && got == n/2) {
		t.Fatalf("automatic: %d for an open-file limit of %d", got, n)
	}
}
