package bench

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// FanoutConfig configures the fanout scenario.
type FanoutConfig struct {
	// Target is the server publications are made on (the server API).
	Target *url.URL
	// Subscribe, when set, spreads the subscribers over these servers
	// (subscriber i on Subscribe[i % len]): processes of one cluster, so
	// deliveries cross the broker. Empty: all on Target.
	Subscribe []*url.URL
	APIKey    string
	Conns     int           // subscribers
	Channels  int           // channels; subscriber i joins channel i % Channels
	Rate      int           // publications per second, over all channels
	Duration  time.Duration // how long to publish
	Size      int           // payload bytes
	// TargetPID, when not zero, is the server's process id: its CPU time
	// (/proc/PID/stat) is read before publishing and after the last
	// delivery, for the CPU per delivery (bench floor compares it).
	TargetPID int
	// Compress offers permessage-deflate (the server must have
	// websocket.compression on); each client counts every compressed
	// message and inflates one in inflateEvery for the latency.
	Compress bool
	Progress io.Writer
}

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// FanoutResult is what the fanout scenario measured.
type FanoutResult struct {
	Scenario           string  `json:"scenario"`
	Conns              int     `json:"conns"`
	Channels           int     `json:"channels"`
	Rate               int     `json:"rate"`
	Size               int     `json:"size"`
	Compress           bool    `json:"compress,omitempty"`
	Seconds            float64 `json:"seconds"`
	Publications       int64   `json:"publications"`
	PublicationsPerSec float64 `json:"publications_per_sec"`
	Deliveries         int64   `json:"deliveries"`
	Expected           int64   `json:"expected_deliveries"`
	DeliveriesPerSec   float64 `json:"deliveries_per_sec"`
	Disconnects        int64   `json:"disconnects"`
	PublishErrors      int64   `json:"publish_errors"`
	LatencyMS          Latency `json:"latency_ms"`
	// With TargetPID: the server's CPU time over publishing and the
	// drain, and per 1,000 deliveries.
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
	CPUPer1000Deliv  float64 `json:"server_cpu_us_per_1000_deliveries,omitempty"`
}

// Fanout subscribes Conns clients to Channels channels on /live, publishes
// through the server API at Rate for Duration with the send time inside
// each payload, and measures publish → receive latency on one clock.
func Fanout(ctx context.Context, cfg FanoutConfig) (*FanoutResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	hist := newHistogram()
	var deliveries, disconnects atomic.Int64
	var inf inflater // the clients' decompressors, shared (one each would be ~45 KB a client)
	subs := make([]net.Conn, 0, cfg.Conns)
	var wg sync.WaitGroup // the readers
	stopReaders := make(chan struct{})
	defer func() {
		close(stopReaders) // what the readers see next is our own close
		for _, c := range subs {
			c.Close()
		}
		wg.Wait()
	}()

	// Subscribe everyone, 64 at a time.
	var mu sync.Mutex
	var firstErr error
	jobs := make(chan int)
	var dialers sync.WaitGroup
	for range 64 {
		dialers.Go(func() {
			for i := range jobs {
				target := cfg.Target
				if len(cfg.Subscribe) > 0 {
					target = cfg.Subscribe[i%len(cfg.Subscribe)]
				}
				c, br, err := subscribeLiveWith(ctx, target, fmt.Sprintf("bench%d", i%cfg.Channels), cfg.Compress)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				subs = append(subs, c)
				mu.Unlock()
				wg.Go(func() { readDeliveriesWith(c, br, hist, &deliveries, &disconnects, stopReaders, &inf) })
			}
		})
	}
	for i := 0; i < cfg.Conns && ctx.Err() == nil; i++ {
		jobs <- i
	}
	close(jobs)
	dialers.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("subscribing: %w", firstErr)
	}
	fmt.Fprintf(progress, "fanout: %d subscribers on %d channels; publishing %d/s for %v\n", len(subs), cfg.Channels, cfg.Rate, cfg.Duration)

	// Publish at the rate, round-robin over the channels, through a pool
	// of HTTP clients so one slow request does not hold the pace.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 10 * time.Second}
	pad := strings.Repeat("x", max(cfg.Size-40, 0))
	var cpu0 float64
	if cfg.TargetPID != 0 {
		var err error
		if cpu0, err = procCPU(cfg.TargetPID); err != nil {
			return nil, err
		}
	}
	published, pubErrors, elapsed := pace(ctx, cfg.Rate, cfg.Duration, progress, "fanout", &deliveries, func(n int) error {
		body := fmt.Sprintf(`{"channel":"bench%d","data":{"t":%d,"p":%q}}`, n%cfg.Channels, time.Now().UnixNano(), pad)
		return apiPublish(ctx, client, cfg.Target, cfg.APIKey, body)
	})
	expected := published * int64(cfg.Conns) / int64(cfg.Channels)
	drain(&deliveries, expected, 5*time.Second)
	var cpu float64
	if cfg.TargetPID != 0 {
		cpu1, err := procCPU(cfg.TargetPID)
		if err != nil {
			return nil, err
		}
		cpu = cpu1 - cpu0
	}
	secs := elapsed.Seconds()
	r := &FanoutResult{
		Scenario:           "fanout",
		Conns:              cfg.Conns,
		Channels:           cfg.Channels,
		Rate:               cfg.Rate,
		Size:               cfg.Size,
		Compress:           cfg.Compress,
		Seconds:            secs,
		Publications:       published,
		PublicationsPerSec: float64(published) / secs,
		Deliveries:         deliveries.Load(),
		Expected:           expected,
		DeliveriesPerSec:   float64(deliveries.Load()) / secs,
		Disconnects:        disconnects.Load(),
		PublishErrors:      pubErrors,
		LatencyMS:          hist.latency(),
		ServerCPUSeconds:   cpu,
	}
	if r.Deliveries > 0 {
		r.CPUPer1000Deliv = cpu * 1e9 / float64(r.Deliveries)
	}
	return r, nil
}

// WriteTable prints the result for people.
func (r *FanoutResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsubs\tchannels\tpub/s\tdeliveries/s\tdelivered/expected\tdisconnects\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\t")
	fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%d/%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", r.Scenario, r.Conns, r.Channels, r.PublicationsPerSec, r.DeliveriesPerSec,
		r.Deliveries, r.Expected, r.Disconnects, r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.LatencyMS.P999, r.LatencyMS.Max)
	tw.Flush()
	if r.ServerCPUSeconds > 0 {
		fmt.Fprintf(w, "server CPU: %.2f s, %.0f µs per 1,000 deliveries\n", r.ServerCPUSeconds, r.CPUPer1000Deliv)
	}
}

func apiPublish(ctx context.Context, client *http.Client, base *url.URL, key, body string) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", base.JoinPath("/api/server/publish").String(), strings.NewReader(body))
	req.Header.Set("Authorization", "apikey "+key)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// subscribeLive connects to /live and subscribes to a channel.
func subscribeLive(ctx context.Context, base *url.URL, ch string) (net.Conn, *bufio.Reader, error) {
	return subscribeLiveWith(ctx, base, ch, false)
}

// subscribeLiveWith is subscribeLive, offering permessage-deflate when
// compress is set.
func subscribeLiveWith(ctx context.Context, base *url.URL, ch string, compress bool) (net.Conn, *bufio.Reader, error) {
	c, br, err := handshakeWith(ctx, base, compress)
	if err != nil {
		return nil, nil, err
	}
	if _, err := readFrame(br); err != nil { // $session connected
		c.Close()
		return nil, nil, err
	}
	req := fmt.Appendf(nil, `{"stream":"$channels","payload":{"action":"subscribe","request_id":1,"channel":%q}}`, ch)
	if _, err := c.Write(maskedFrame(req)); err != nil {
		c.Close()
		return nil, nil, err
	}
	reply, err := readFrame(br)
	if err != nil || !bytes.Contains(reply, []byte(`"response_status":200`)) {
		c.Close()
		return nil, nil, fmt.Errorf("subscribe %s: %q %v", ch, reply, err)
	}
	c.SetDeadline(time.Time{})
	return c, br, nil
}

// readDeliveries reads pushed messages until the connection ends.
func readDeliveries(c net.Conn, br *bufio.Reader, h *histogram, n, disconnects *atomic.Int64, stop <-chan struct{}) {
	readDeliveriesWith(c, br, h, n, disconnects, stop, nil)
}

// readDeliveriesWith is readDeliveries for clients that may receive
// compressed messages (inf not nil): a compressed message counts as one
// delivery, and only every inflateEvery-th of a client's is inflated for
// its latency, so the clients' decompression (the server compresses a
// broadcast once; every client inflates it) does not starve the server
// they share the machine with.
func readDeliveriesWith(c net.Conn, br *bufio.Reader, h *histogram, n, disconnects *atomic.Int64, stop <-chan struct{}, inf *inflater) {
	compressed := 0
	for {
		p, deflated, err := readRawFrame(br)
		if err == nil && deflated {
			compressed++
			if compressed%inflateEvery != 1 {
				n.Add(1)
				continue
			}
			p, err = inf.inflate(p)
		}
		if err != nil {
			select {
			case <-stop:
			default:
				disconnects.Add(1)
			}
			return
		}
		sentTimes(p, func(sent int64) {
			h.add(time.Duration(time.Now().UnixNano() - sent))
			n.Add(1)
		})
	}
}

// inflateEvery: a compressing client inflates one message in this many
// for the latency histogram (the first, then every 8th).
const inflateEvery = 8

// sentTimes calls fn with the send time (Unix ns) of each message in p:
// the numbers after "t": that the scenarios put in their payloads.
func sentTimes(p []byte, fn func(sent int64)) {
	for {
		i := bytes.Index(p, []byte(`"t":`))
		if i < 0 {
			return
		}
		j := i + 4
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			j++
		}
		if sent, err := strconv.ParseInt(string(p[i+4:j]), 10, 64); err == nil {
			fn(sent)
		}
		p = p[j:]
	}
}

// pace calls publish(n) for n = 0, 1, … at rate per second for d, at most
// 32 at once, with a progress line a second; it returns the calls that
// succeeded and failed and how long publishing took.
func pace(ctx context.Context, rate int, d time.Duration, progress io.Writer, scenario string, delivered *atomic.Int64, publish func(n int) error) (ok, failed int64, elapsed time.Duration) {
	var published, errs atomic.Int64
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	end := start.Add(d)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	next, lastReport := start, start
	for n := 0; time.Now().Before(end) && ctx.Err() == nil; n++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := publish(n); err != nil {
				if errs.Add(1) == 1 {
					fmt.Fprintf(progress, "%s: publish failed: %v\n", scenario, err)
				}
				return
			}
			published.Add(1)
		})
		if time.Since(lastReport) >= time.Second {
			lastReport = time.Now()
			fmt.Fprintf(progress, "%s: %d published, %d delivered\n", scenario, published.Load(), delivered.Load())
		}
	}
	wg.Wait()
	return published.Load(), errs.Load(), time.Since(start)
}

// drain waits (at most max) for the last deliveries to arrive.
func drain(delivered *atomic.Int64, expected int64, max time.Duration) {
	for deadline := time.Now().Add(max); delivered.Load() < expected && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// readFrame reads one unmasked server frame (no fragmentation: the
// server never fragments) and returns its payload, inflated when it is
// compressed (RSV1); control frames other than close are skipped (pings
// are not answered: runs are shorter than the read timeout).
func readFrame(br *bufio.Reader) ([]byte, error) {
	var inf *inflater
	return inf.readFrame(br)
}

// inflater holds decompressors that clients share (safe for concurrent
// use; nil makes one per message).
type inflater struct{ pool sync.Pool }

// decompressor is a flate reader with its source.
type decompressor struct {
	r   io.ReadCloser
	src bytes.Reader
}

// readFrame is readFrame with the inflater's decompressors.
func (inf *inflater) readFrame(br *bufio.Reader) ([]byte, error) {
	p, compressed, err := readRawFrame(br)
	if err != nil || !compressed {
		return p, err
	}
	return inf.inflate(p)
}

// inflate decompresses one permessage-deflate message.
func (inf *inflater) inflate(p []byte) ([]byte, error) {
	var d *decompressor
	if inf != nil {
		d, _ = inf.pool.Get().(*decompressor)
	}
	if d == nil {
		d = &decompressor{}
	}
	// RFC 7692 §7.2.2: the sender removed the final 00 00 ff ff.
	d.src.Reset(append(p, 0x00, 0x00, 0xff, 0xff))
	if d.r == nil {
		d.r = flate.NewReader(&d.src)
	} else if err := d.r.(flate.Resetter).Reset(&d.src, nil); err != nil {
		return nil, err
	}
	out, err := io.ReadAll(d.r)
	if inf != nil {
		inf.pool.Put(d)
	}
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	return out, nil
}

// readRawFrame reads one unmasked server frame and returns its payload
// as sent and whether it is compressed (RSV1).
func readRawFrame(br *bufio.Reader) ([]byte, bool, error) {
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, false, err
		}
		n := int64(hdr[1] & 0x7F)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return nil, false, err
			}
			n = int64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return nil, false, err
			}
			n = int64(binary.BigEndian.Uint64(b[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return nil, false, err
		}
		switch hdr[0] & 0x0F {
		case 0x8:
			return nil, false, fmt.Errorf("closed by the server: %q", p)
		case 0x9, 0xA:
			continue
		}
		return p, hdr[0]&0x40 != 0, nil
	}
}

// maskedFrame encodes a client text frame (the mask is zero: valid, and
// the payload stays readable).
func maskedFrame(p []byte) []byte {
	b := []byte{0x81}
	switch {
	case len(p) <= 125:
		b = append(b, 0x80|byte(len(p)))
	default:
		b = append(b, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	b = append(b, 0, 0, 0, 0)
	return append(b, p...)
}

// histogram counts latencies in log-linear buckets (about 1 % wide) from
// 1 µs to 100 s; safe for concurrent use.
type histogram struct {
	counts [2048]atomic.Int64
	max    atomic.Int64
}

func newHistogram() *histogram { return &histogram{} }

// reset empties the histogram (between runs that share readers).
func (h *histogram) reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.max.Store(0)
}

const histPerDecade = 256

func (h *histogram) add(d time.Duration) {
	us := float64(d) / float64(time.Microsecond)
	i := 0
	if us > 1 {
		i = int(math.Log10(us) * histPerDecade)
	}
	i = min(max(i, 0), len(h.counts)-1)
	h.counts[i].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

func (h *histogram) latency() Latency {
	var total int64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	q := func(p float64) float64 {
		if total == 0 {
			return 0
		}
		want := int64(math.Ceil(p * float64(total)))
		var seen int64
		for i := range h.counts {
			seen += h.counts[i].Load()
			if seen >= want {
				return math.Pow(10, float64(i+1)/histPerDecade) / 1000 // upper edge, µs → ms
			}
		}
		return 0
	}
	return Latency{P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: float64(h.max.Load()) / float64(time.Millisecond)}
}
