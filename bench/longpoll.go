package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/switchyardhq/switchyard/protocol/channelstream"
)

// LongpollConfig configures the longpoll scenario.
type LongpollConfig struct {
	Target *url.URL
	// Secret is the server's channelstream.secret (the scenario signs its
	// /connect and /message calls as an application does).
	Secret   string
	Conns    int           // Channelstream connections, each with a poll parked
	Channels int           // connection i joins channel i % Channels
	Rate     int           // /message publications per second, over all channels
	Duration time.Duration // how long to publish
	Size     int           // payload bytes
	Progress io.Writer
}

// LongpollResult is what the longpoll scenario measured.
type LongpollResult struct {
	Scenario     string  `json:"scenario"`
	Conns        int     `json:"conns"`
	Channels     int     `json:"channels"`
	Rate         int     `json:"rate"`
	Size         int     `json:"size"`
	Parked       float64 `json:"parked_polls"` // the server's gauge once every poll was sent
	RSSBefore    float64 `json:"rss_before_bytes"`
	RSSParked    float64 `json:"rss_parked_bytes"`
	BytesPerPoll float64 `json:"bytes_per_parked_poll"` // connection and parked poll, server side
	// The Go runtime's view of the same delta (heap in use, stacks in
	// use, goroutines), from the server's /metrics: RSS also keeps what
	// the connect phase's garbage made the heap grow to.
	HeapPerPoll        float64 `json:"heap_bytes_per_parked_poll"`
	StackPerPoll       float64 `json:"stack_bytes_per_parked_poll"`
	GoroutinesPerPoll  float64 `json:"goroutines_per_parked_poll"`
	Seconds            float64 `json:"seconds"`
	Publications       int64   `json:"publications"`
	PublicationsPerSec float64 `json:"publications_per_sec"`
	Deliveries         int64   `json:"deliveries"`
	Expected           int64   `json:"expected_deliveries"`
	DeliveriesPerSec   float64 `json:"deliveries_per_sec"`
	Polls              int64   `json:"polls"`
	PollErrors         int64   `json:"poll_errors"`
	PublishErrors      int64   `json:"publish_errors"`
	LatencyMS          Latency `json:"latency_ms"`
}

// Longpoll connects Conns Channelstream users, parks a /listen poll for
// each (re-polling at once after every answer, as the JS client does),
// publishes through the signed /message at Rate for Duration with the
// send time in each message, and measures publish → receive latency on
// one clock. A poll answers 0.25 s after its last message (Channelstream's
// batching window), so that is the latency's floor by design.
func Longpoll(ctx context.Context, cfg LongpollConfig) (*LongpollResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	sign := func() string { return channelstream.Sign(cfg.Secret, "channelstream", time.Now()) }
	api := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	defer api.CloseIdleConnections()
	call := func(ctx context.Context, method, path string, body []byte) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, method, cfg.Target.JoinPath(path).String(), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Channelstream-Secret", sign())
		resp, err := api.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, out)
		}
		return out, nil
	}
	before, err := scrape(ctx, cfg.Target)
	if err != nil {
		return nil, err
	}

	// One poller per connection, each on its own TCP connection, started
	// as soon as its connection exists (as the JS client polls right after
	// connect: a connection without a poll for 15 s is collected).
	hist := newHistogram()
	var deliveries, polls, pollErrors atomic.Int64
	pctx, stopPolls := context.WithCancel(ctx)
	var pollers sync.WaitGroup
	defer func() { stopPolls(); pollers.Wait() }()
	var reported atomic.Bool
	report := func(err error) {
		if reported.CompareAndSwap(false, true) {
			fmt.Fprintf(progress, "longpoll: a poll failed: %v\n", err)
		}
	}

	// Connect everyone, 64 at a time.
	var firstErr error
	var mu sync.Mutex
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := range jobs {
				body := fmt.Appendf(nil, `{"username":"bench%d","channels":["bench%d"]}`, i, i%cfg.Channels)
				out, err := call(ctx, "POST", "/connect", body)
				var res struct {
					ConnID string `json:"conn_id"`
				}
				if err == nil {
					err = json.Unmarshal(out, &res)
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if err == nil {
					pollers.Go(func() { poll(pctx, cfg.Target, res.ConnID, hist, &deliveries, &polls, &pollErrors, report) })
				}
			}
		})
	}
	for i := 0; i < cfg.Conns && ctx.Err() == nil; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("connecting: %w", firstErr)
	}

	// Wait until the server holds them all (or they stop coming).
	var parked float64
	var last float64 = -1
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		m, err := scrape(ctx, cfg.Target)
		if err != nil {
			return nil, err
		}
		parked = m["switchyard_channelstream_polls"]
		if parked >= float64(cfg.Conns) {
			break
		}
		if parked == last && parked > 0 && time.Until(deadline) < 50*time.Second {
			break
		}
		last = parked
		fmt.Fprintf(progress, "longpoll: %.0f of %d polls parked\n", parked, cfg.Conns)
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}
	after, err := scrape(ctx, cfg.Target)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "longpoll: %.0f polls parked; publishing %d/s for %v\n", parked, cfg.Rate, cfg.Duration)

	// Publish at the rate, round-robin over the channels.
	pad := strings.Repeat("x", max(cfg.Size-40, 0))
	published, pubErrors, elapsed := pace(ctx, cfg.Rate, cfg.Duration, progress, "longpoll", &deliveries, func(n int) error {
		body := fmt.Appendf(nil, `[{"user":"bench","channel":"bench%d","message":{"t":%d,"p":%q}}]`, n%cfg.Channels, time.Now().UnixNano(), pad)
		_, err := call(ctx, "POST", "/message", body)
		return err
	})
	expected := published * int64(cfg.Conns) / int64(cfg.Channels)
	drain(&deliveries, expected, 10*time.Second)
	secs := elapsed.Seconds()
	r := &LongpollResult{
		Scenario: "longpoll", Conns: cfg.Conns, Channels: cfg.Channels, Rate: cfg.Rate, Size: cfg.Size,
		Parked:    parked,
		RSSBefore: before["process_resident_memory_bytes"], RSSParked: after["process_resident_memory_bytes"],
		Seconds: secs, Publications: published, PublicationsPerSec: float64(published) / secs,
		Deliveries: deliveries.Load(), Expected: expected, DeliveriesPerSec: float64(deliveries.Load()) / secs,
		Polls: polls.Load(), PollErrors: pollErrors.Load(), PublishErrors: pubErrors,
		LatencyMS: hist.latency(),
	}
	if cfg.Conns > 0 {
		per := func(k string) float64 { return (after[k] - before[k]) / float64(cfg.Conns) }
		r.BytesPerPoll = per("process_resident_memory_bytes")
		r.HeapPerPoll = per("go_memstats_heap_inuse_bytes")
		r.StackPerPoll = per("go_memstats_stack_inuse_bytes")
		r.GoroutinesPerPoll = per("go_goroutines")
	}
	return r, nil
}

// poll keeps one /listen parked until ctx ends, recording each message's
// latency.
func poll(ctx context.Context, base *url.URL, id string, h *histogram, deliveries, polls, errs *atomic.Int64, report func(error)) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DialContext: (&net.Dialer{KeepAlive: -1}).DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	u := base.JoinPath("/listen").String() + "?conn_id=" + id
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				errs.Add(1)
				report(err)
				sleep(ctx, 100*time.Millisecond)
			}
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		polls.Add(1)
		if resp.StatusCode != 200 {
			errs.Add(1)
			report(fmt.Errorf("status %d: %s", resp.StatusCode, body))
			return // the JS client stops polling on an error too
		}
		now := time.Now().UnixNano()
		sentTimes(body, func(sent int64) {
			h.add(time.Duration(now - sent))
			deliveries.Add(1)
		})
	}
}

// WriteTable prints the result for people.
func (r *LongpollResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconns\tparked\tKB/poll\theap KB/poll\tstack KB/poll\tgoroutines/poll\tpub/s\tdeliveries/s\tdelivered/expected\tpoll errors\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\t")
	fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.2f\t%.0f\t%.0f\t%d/%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", r.Scenario, r.Conns, r.Parked, r.BytesPerPoll/1024, r.HeapPerPoll/1024, r.StackPerPoll/1024, r.GoroutinesPerPoll,
		r.PublicationsPerSec, r.DeliveriesPerSec, r.Deliveries, r.Expected, r.PollErrors,
		r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.LatencyMS.P999, r.LatencyMS.Max)
	tw.Flush()
}
