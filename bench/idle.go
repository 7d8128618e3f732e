package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// IdleConfig configures the idle scenario.
type IdleConfig struct {
	Target *url.URL
	// TargetPID, when not zero, is the server's process id: its resident
	// memory is then read from /proc/PID/status instead of the server's
	// /metrics (for servers other than Switchyard), the Go runtime figures
	// are left at zero and the connection count is the number of
	// $session connected frames received.
	TargetPID int
	Conns     int
	Settle    time.Duration // wait before reading memory figures
	Progress  io.Writer     // progress lines; nil for none
}

// IdleResult is what the idle scenario measured. Memory figures come from
// the server's /metrics (or, with TargetPID, its /proc/PID/status), so
// they are the server's alone.
type IdleResult struct {
	Scenario          string  `json:"scenario"`
	RSSSource         string  `json:"rss_source"` // "metrics" or "proc"
	Conns             int     `json:"conns"`
	ConnectSeconds    float64 `json:"connect_seconds"`
	ConnectsPerSec    float64 `json:"connects_per_sec"`
	RSSBefore         float64 `json:"rss_before_bytes"`
	RSSAfter          float64 `json:"rss_after_bytes"`
	BytesPerConn      float64 `json:"bytes_per_conn"`
	HeapPerConn       float64 `json:"heap_bytes_per_conn"`
	StackPerConn      float64 `json:"stack_bytes_per_conn"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
}

// Idle opens Conns WebSocket connections to /live, checks each received
// its $session connected frame, leaves them idle, and reports the
// server's resident memory per connection.
func Idle(ctx context.Context, cfg IdleConfig) (*IdleResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	if err := sleep(ctx, cfg.Settle/2); err != nil {
		return nil, err
	}
	before, err := cfg.figures(ctx)
	if err != nil {
		return nil, err
	}
	conns := make([]net.Conn, 0, cfg.Conns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range jobs {
				c, err := dialLive(ctx, cfg.Target)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
feed:
	for i := 0; i < cfg.Conns; i++ {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		select {
		case jobs <- struct{}{}:
		case <-ctx.Done():
			break feed
		case <-ticker.C:
			mu.Lock()
			fmt.Fprintf(progress, "idle: %d/%d connected\n", len(conns), cfg.Conns)
			mu.Unlock()
			i--
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("after %d connections: %w", len(conns), firstErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	fmt.Fprintf(progress, "idle: %d connected in %.1fs; settling %v\n", len(conns), elapsed.Seconds(), cfg.Settle)
	if err := sleep(ctx, cfg.Settle); err != nil {
		return nil, err
	}
	after, err := cfg.figures(ctx)
	if err != nil {
		return nil, err
	}
	source := "metrics"
	if cfg.TargetPID != 0 {
		// No server-side count: every connection kept has delivered its
		// connected frame (dialLive checks it), so count those.
		source = "proc"
		if len(conns) != cfg.Conns {
			return nil, fmt.Errorf("%d connected frames received, want %d", len(conns), cfg.Conns)
		}
	} else if got := after["switchyard_connections"] - before["switchyard_connections"]; int(got) != cfg.Conns {
		return nil, fmt.Errorf("the server reports %v new connections, want %d", got, cfg.Conns)
	}
	n := float64(cfg.Conns)
	per := func(name string) float64 { return (after[name] - before[name]) / n }
	return &IdleResult{
		Scenario:          "idle",
		RSSSource:         source,
		Conns:             cfg.Conns,
		ConnectSeconds:    elapsed.Seconds(),
		ConnectsPerSec:    n / elapsed.Seconds(),
		RSSBefore:         before["process_resident_memory_bytes"],
		RSSAfter:          after["process_resident_memory_bytes"],
		BytesPerConn:      per("process_resident_memory_bytes"),
		HeapPerConn:       per("go_memstats_heap_inuse_bytes"),
		StackPerConn:      per("go_memstats_stack_inuse_bytes"),
		GoroutinesPerConn: per("go_goroutines"),
	}, nil
}

// figures reads the memory figures: the server's /metrics, or with
// TargetPID only process_resident_memory_bytes, from /proc/PID/status.
func (cfg IdleConfig) figures(ctx context.Context) (map[string]float64, error) {
	if cfg.TargetPID == 0 {
		return scrape(ctx, cfg.Target)
	}
	rss, err := procRSS(cfg.TargetPID)
	if err != nil {
		return nil, fmt.Errorf("target pid %d: %w", cfg.TargetPID, err)
	}
	return map[string]float64{"process_resident_memory_bytes": rss}, nil
}

// WriteTable prints the result for people.
func (r *IdleResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconns\tconnect/s\tRSS before\tRSS after\tRSS/conn\theap/conn\tstack/conn\tgoroutines/conn\t")
	heap, stack, gs := fmt.Sprintf("%.0f B", r.HeapPerConn), fmt.Sprintf("%.0f B", r.StackPerConn), fmt.Sprintf("%.2f", r.GoroutinesPerConn)
	if r.RSSSource == "proc" { // not a Go server's /metrics: no runtime figures
		heap, stack, gs = "-", "-", "-"
	}
	fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f MB\t%.1f MB\t%.0f B\t%s\t%s\t%s\t\n",
		r.Scenario, r.Conns, r.ConnectsPerSec, r.RSSBefore/1e6, r.RSSAfter/1e6, r.BytesPerConn, heap, stack, gs)
	tw.Flush()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dialLive opens a WebSocket to /live with a minimal client (so the
// client's own memory stays small) and reads the connected frame.
func dialLive(ctx context.Context, base *url.URL) (net.Conn, error) {
	c, br, err := handshake(ctx, base)
	if err != nil {
		return nil, err
	}
	payload, err := readFrame(br)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("first frame: %w", err)
	}
	if !strings.Contains(string(payload), `"connected"`) {
		c.Close()
		return nil, fmt.Errorf("first frame is not $session connected: %q", payload)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// handshake dials /live and completes the WebSocket handshake; the
// deadline it sets (10 s) is the caller's to clear.
func handshake(ctx context.Context, base *url.URL) (net.Conn, *bufio.Reader, error) {
	return handshakeWith(ctx, base, false)
}

// deflateOffer is the permessage-deflate offer of a compressing client
// (--compress): no context takeover either way, as the server compresses.
const deflateOffer = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"

// handshakeWith is handshake, offering permessage-deflate when compress
// is set (and failing when the server does not accept it).
func handshakeWith(ctx context.Context, base *url.URL, compress bool) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", base.Host)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var key [16]byte
	rand.Read(key[:])
	path := "/live"
	if base.RawQuery != "" {
		path += "?" + base.RawQuery
	}
	ext := ""
	if compress {
		ext = "Sec-WebSocket-Extensions: " + deflateOffer + "\r\n"
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n%s\r\n",
		path, base.Host, base64.StdEncoding.EncodeToString(key[:]), ext)
	br := bufio.NewReaderSize(c, 512)
	status, err := br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("handshake: %w", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 101") {
		c.Close()
		return nil, nil, fmt.Errorf("handshake: %s", strings.TrimSpace(status))
	}
	deflate := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("handshake: %w", err)
		}
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Sec-WebSocket-Extensions") && strings.Contains(value, "permessage-deflate") {
			deflate = true
		}
		if line == "\r\n" {
			if compress && !deflate {
				c.Close()
				return nil, nil, errors.New("handshake: the server did not accept permessage-deflate (websocket.compression is off)")
			}
			return c, br, nil
		}
	}
}
