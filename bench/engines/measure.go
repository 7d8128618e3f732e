package main

// One measurement: start the candidate's server as a child process, read
// its baseline memory, open N idle WebSocket connections to it from this
// process, read its memory again, check liveness, tear everything down.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// config is what one measurement needs from the command line.
type config struct {
	conns          int
	concurrency    int
	timeout        time.Duration // hard limit for one candidate run
	baselineSettle time.Duration // wait before the baseline reading
	settle         time.Duration // wait after the last connection
	echoChecks     int
	dialTimeout    time.Duration
	verbose        bool
}

// result is one run of one candidate. Per-connection figures are
// (after - before) / conns.
type result struct {
	Candidate   string  `json:"candidate"`
	Round       int     `json:"round"`
	Conns       int     `json:"conns"`
	ConnectSecs float64 `json:"connect_seconds"`
	ConnectRate float64 `json:"connect_rate"` // conns/s, dial + upgrade + hello

	RSSBefore      uint64 `json:"rss_before"`       // VmRSS after runtime.GC, bytes
	RSSAfter       uint64 `json:"rss_after"`        // VmRSS after runtime.GC, bytes
	RSSBeforeFreed uint64 `json:"rss_before_freed"` // VmRSS after debug.FreeOSMemory
	RSSAfterFreed  uint64 `json:"rss_after_freed"`

	RSSPerConn        float64 `json:"rss_per_conn"`
	RSSFreedPerConn   float64 `json:"rss_freed_per_conn"`
	HeapPerConn       float64 `json:"heap_per_conn"` // HeapInuse
	StackPerConn      float64 `json:"stack_per_conn"`
	SysPerConn        float64 `json:"sys_per_conn"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`

	Before stats `json:"stats_before"`
	After  stats `json:"stats_after"`

	EchoChecked  int    `json:"echo_checked"`
	EchoOK       int    `json:"echo_ok"`
	ConnectedEnd int64  `json:"connected_end"` // the child's count after the echo check
	Err          string `json:"error,omitempty"`
}

// child is a running server subprocess.
type child struct {
	cmd  *exec.Cmd
	addr string
	hc   *http.Client
	done chan struct{} // closed when the process has exited
	werr error
}

func startChild(ctx context.Context, name string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.Command(exe, "serve", name, "-listen", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	setChildAttrs(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{
		cmd:  cmd,
		done: make(chan struct{}),
		hc: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true},
		},
	}
	addrc := make(chan string, 1)
	go func() {
		// Find the announce line, then keep draining stdout so the child
		// never blocks on a full pipe.
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), announcePrefix); ok {
				select {
				case addrc <- strings.TrimSpace(a):
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		c.werr = cmd.Wait()
		close(c.done)
	}()
	select {
	case c.addr = <-addrc:
	case <-c.done:
		return nil, fmt.Errorf("server exited before listening: %v", c.werr)
	case <-time.After(15 * time.Second):
		c.kill()
		return nil, errors.New("server did not announce its address within 15s")
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	}
	if err := checkLoopback(c.addr); err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stats asks the child for its runtime figures; query is "", "gc=1" or
// "free=1". A request that fails at the transport level is retried twice
// (every query is idempotent), and the retry is reported on stderr: nbio
// v1.6.8 was seen to close about 1 in 100 fresh `Connection: close`
// connections without answering (see README.md).
func (c *child) stats(ctx context.Context, query string) (s stats, err error) {
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			fmt.Fprintf(os.Stderr, "  (GET /stats?%s to pid %d failed: %v; retrying)\n", query, c.pid(), err)
			if e := sleepCtx(ctx, 100*time.Millisecond); e != nil {
				return s, err
			}
		}
		var retry bool
		s, retry, err = c.statsOnce(ctx, query)
		if err == nil || !retry {
			return s, err
		}
	}
	return s, err
}

// statsOnce makes one /stats request; retry tells whether the error was at
// the transport level.
func (c *child) statsOnce(ctx context.Context, query string) (s stats, retry bool, err error) {
	u := "http://" + c.addr + "/stats"
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return s, false, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return s, ctx.Err() == nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, false, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&s)
	return s, false, err
}

// readRSS returns VmRSS of pid in bytes, from /proc/<pid>/status.
func readRSS(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmRSS line %q", line)
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

// snapshot forces a GC in the child and reads its stats and RSS, then
// forces FreeOSMemory and reads RSS again.
func (c *child) snapshot(ctx context.Context) (s stats, rss, rssFreed uint64, err error) {
	if s, err = c.stats(ctx, "gc=1"); err != nil {
		return
	}
	if rss, err = readRSS(c.pid()); err != nil {
		return
	}
	if _, err = c.stats(ctx, "free=1"); err != nil {
		return
	}
	rssFreed, err = readRSS(c.pid())
	return
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runOne measures one candidate once. It always returns a result; Err is
// set when the run failed.
func runOne(parent context.Context, cfg config, name string, round int) (res result) {
	res = result{Candidate: name, Round: round, Conns: cfg.conns}
	ctx, cancel := context.WithTimeout(parent, cfg.timeout)
	defer cancel()
	logf := func(format string, args ...any) {
		if cfg.verbose {
			fmt.Fprintf(os.Stderr, "  [%s #%d] "+format+"\n", append([]any{name, round}, args...)...)
		}
	}
	fail := func(err error) result {
		res.Err = err.Error()
		return res
	}

	ch, err := startChild(ctx, name)
	if err != nil {
		return fail(err)
	}
	defer ch.kill()
	logf("server pid %d on %s", ch.pid(), ch.addr)

	// Baseline: wait for the server to settle, then GC and read.
	if err := sleepCtx(ctx, cfg.baselineSettle); err != nil {
		return fail(err)
	}
	before, rssBefore, rssBeforeFreed, err := ch.snapshot(ctx)
	if err != nil {
		return fail(fmt.Errorf("baseline: %w", err))
	}
	res.Before, res.RSSBefore, res.RSSBeforeFreed = before, rssBefore, rssBeforeFreed
	logf("baseline rss %d (freed %d), heap %d, goroutines %d", rssBefore, rssBeforeFreed, before.HeapInuse, before.NumGoroutine)

	// Connect.
	conns := make([]net.Conn, cfg.conns)
	defer closeAll(conns)
	start := time.Now()
	if err := connectAll(ctx, cfg, ch.addr, conns); err != nil {
		return fail(fmt.Errorf("connect: %w", err))
	}
	res.ConnectSecs = time.Since(start).Seconds()
	res.ConnectRate = float64(cfg.conns) / res.ConnectSecs
	logf("%d connections in %.2fs (%.0f/s)", cfg.conns, res.ConnectSecs, res.ConnectRate)

	// Wait until the child counts them all.
	for {
		s, err := ch.stats(ctx, "")
		if err != nil {
			return fail(fmt.Errorf("poll stats: %w", err))
		}
		if s.Connected == int64(cfg.conns) {
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return fail(fmt.Errorf("server reports %d of %d connected: %w", s.Connected, cfg.conns, err))
		}
	}

	// Settle, then GC and read.
	if err := sleepCtx(ctx, cfg.settle); err != nil {
		return fail(err)
	}
	after, rssAfter, rssAfterFreed, err := ch.snapshot(ctx)
	if err != nil {
		return fail(fmt.Errorf("after: %w", err))
	}
	res.After, res.RSSAfter, res.RSSAfterFreed = after, rssAfter, rssAfterFreed
	n := float64(cfg.conns)
	res.RSSPerConn = (float64(rssAfter) - float64(rssBefore)) / n
	res.RSSFreedPerConn = (float64(rssAfterFreed) - float64(rssBeforeFreed)) / n
	res.HeapPerConn = (float64(after.HeapInuse) - float64(before.HeapInuse)) / n
	res.StackPerConn = (float64(after.StackInuse) - float64(before.StackInuse)) / n
	res.SysPerConn = (float64(after.Sys) - float64(before.Sys)) / n
	res.GoroutinesPerConn = (float64(after.NumGoroutine) - float64(before.NumGoroutine)) / n
	logf("after rss %d (freed %d), heap %d, goroutines %d", rssAfter, rssAfterFreed, after.HeapInuse, after.NumGoroutine)

	// Liveness: echo on a sample of connections.
	res.EchoChecked, res.EchoOK, err = echoSample(ctx, conns, cfg.echoChecks)
	if err != nil {
		return fail(fmt.Errorf("echo check: %d of %d answered: %w", res.EchoOK, res.EchoChecked, err))
	}
	end, err := ch.stats(ctx, "")
	if err != nil {
		return fail(fmt.Errorf("final stats: %w", err))
	}
	res.ConnectedEnd = end.Connected
	if end.Connected != int64(cfg.conns) {
		return fail(fmt.Errorf("server holds %d connections at the end, want %d", end.Connected, cfg.conns))
	}
	return res
}

// connectAll fills conns, dialing with bounded concurrency so the listen
// backlog is not overrun. A failed dial is retried a few times.
func connectAll(ctx context.Context, cfg config, addr string, conns []net.Conn) error {
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		failed   atomic.Int64
		firstErr error
		errOnce  sync.Once
	)
	workers := min(cfg.concurrency, len(conns))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var err error
				for attempt := 0; attempt < 3; attempt++ {
					if attempt > 0 {
						if sleepCtx(ctx, time.Duration(attempt)*200*time.Millisecond) != nil {
							break
						}
					}
					var c net.Conn
					if c, err = dialWS(ctx, addr, cfg.dialTimeout); err == nil {
						conns[i] = c
						break
					}
				}
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
feed:
	for i := range conns {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d connections failed, first: %v", n, len(conns), firstErr)
	}
	return ctx.Err()
}

// echoSample sends a text message on up to k distinct random connections,
// one at a time, and expects each to come back within 5 s (and before ctx
// ends).
func echoSample(ctx context.Context, conns []net.Conn, k int) (checked, ok int, err error) {
	idx := rand.Perm(len(conns))
	for _, i := range idx[:min(k, len(idx))] {
		if e := ctx.Err(); e != nil {
			if err == nil {
				err = e
			}
			break
		}
		checked++
		timeout := 5 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		if e := echoCheck(conns[i], fmt.Sprintf("echo %d", i), timeout); e != nil {
			if err == nil {
				err = fmt.Errorf("conn %d: %w", i, e)
			}
			continue
		}
		ok++
	}
	return checked, ok, err
}

// closeAll closes the client connections with SO_LINGER 0 (a reset, no
// TIME_WAIT left behind across rounds).
func closeAll(conns []net.Conn) {
	for i, c := range conns {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		conns[i] = nil
	}
}
