package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// ResourceBenchName is the resource the resources scenario writes; a
// server started by the benchmark declares it, a --target must too:
// bench_items {name: string, t: int}, open permissions.
const ResourceBenchName = "bench_items"

// ResourceBenchConfig is the environment that declares bench_items for a
// server the benchmark starts.
const ResourceBenchConfig = "SWITCHYARD_RESOURCES={bench_items: {fields: {name: {type: string}, t: {type: int}}, permissions: {read: anyone, create: anyone, update: anyone, delete: anyone}}}"

// ResourcesConfig configures the resources scenario.
type ResourcesConfig struct {
	Target   *url.URL
	Writers  int
	Conns    int // subscribers, each with a live query on every row
	Duration time.Duration
	Progress io.Writer
}

// ResourcesResult is what the resources scenario measured.
type ResourcesResult struct {
	Scenario         string  `json:"scenario"`
	Conns            int     `json:"conns"`
	Writers          int     `json:"writers"`
	Seconds          float64 `json:"seconds"`
	Writes           int64   `json:"writes"`
	WritesPerSec     float64 `json:"writes_per_sec"`
	WriteLatencyMS   Latency `json:"write_latency_ms"`
	Deliveries       int64   `json:"deliveries"`
	Expected         int64   `json:"expected_deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	Disconnects      int64   `json:"disconnects"`
	LatencyMS        Latency `json:"latency_ms"` // write sent → event received
}

// Resources has Writers connections create rows as fast as their replies
// come back (one request in flight each) while Conns subscribers watch
// every row with subscribe_list; it reports writes/s, the write's own
// latency and write → event latency.
func Resources(ctx context.Context, cfg ResourcesConfig) (*ResourcesResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	events, writeLat := newHistogram(), newHistogram()
	var deliveries, disconnects, writes atomic.Int64
	var conns []net.Conn
	var readers sync.WaitGroup
	stop := make(chan struct{})
	defer func() {
		close(stop)
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
	}()
	for i := range cfg.Conns {
		c, br, err := handshake(ctx, cfg.Target)
		if err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", i, err)
		}
		conns = append(conns, c)
		if _, err := readFrame(br); err != nil {
			return nil, err
		}
		c.Write(maskedFrame(fmt.Appendf(nil, `{"stream":%q,"payload":{"action":"subscribe_list","request_id":"watch"}}`, ResourceBenchName)))
		reply, err := readFrame(br)
		if err != nil || !bytes.Contains(reply, []byte(`"response_status":201`)) {
			return nil, fmt.Errorf("subscribe_list: %q %v (does the target declare %s?)", reply, err, ResourceBenchName)
		}
		c.SetDeadline(time.Time{})
		readers.Go(func() { readDeliveries(c, br, events, &deliveries, &disconnects, stop) })
	}
	fmt.Fprintf(progress, "resources: %d subscribers watching; %d writers for %v\n", cfg.Conns, cfg.Writers, cfg.Duration)
	start := time.Now()
	end := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	for w := range cfg.Writers {
		c, br, err := handshake(ctx, cfg.Target)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		if _, err := readFrame(br); err != nil {
			return nil, err
		}
		c.SetDeadline(time.Time{})
		wg.Go(func() {
			if err := writeLoop(ctx, c, br, w, end, writeLat, &writes); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return nil, firstErr
	}
	expected := writes.Load() * int64(cfg.Conns)
	drain := time.Now().Add(5 * time.Second)
	for deliveries.Load() < expected && time.Now().Before(drain) {
		time.Sleep(10 * time.Millisecond)
	}
	secs := elapsed.Seconds()
	return &ResourcesResult{
		Scenario: "resources", Conns: cfg.Conns, Writers: cfg.Writers, Seconds: secs,
		Writes: writes.Load(), WritesPerSec: float64(writes.Load()) / secs, WriteLatencyMS: writeLat.latency(),
		Deliveries: deliveries.Load(), Expected: expected, DeliveriesPerSec: float64(deliveries.Load()) / secs,
		Disconnects: disconnects.Load(), LatencyMS: events.latency(),
	}, nil
}

// writeLoop creates rows one at a time until end.
func writeLoop(ctx context.Context, c net.Conn, br *bufio.Reader, w int, end time.Time, lat *histogram, n *atomic.Int64) error {
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		sent := time.Now()
		frame := fmt.Appendf(nil, `{"stream":%q,"payload":{"action":"create","request_id":%d,"data":{"name":"w%d-%d","t":%d}}}`, ResourceBenchName, i, w, i, sent.UnixNano())
		if _, err := c.Write(maskedFrame(frame)); err != nil {
			return err
		}
		reply, err := readFrame(br)
		if err != nil {
			return fmt.Errorf("writer %d: %w", w, err)
		}
		if !bytes.Contains(reply, []byte(`"response_status":201`)) {
			return fmt.Errorf("writer %d: create refused: %q", w, reply)
		}
		lat.add(time.Since(sent))
		n.Add(1)
	}
	return nil
}

// WriteTable prints the result for people.
func (r *ResourcesResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\twriters\tsubs\twrites/s\twrite p50 ms\twrite p99 ms\tevents/s\tdelivered/expected\tevent p50 ms\tevent p99 ms\tevent max ms\t")
	fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.0f\t%d/%d\t%.2f\t%.2f\t%.2f\t\n", r.Scenario, r.Writers, r.Conns, r.WritesPerSec, r.WriteLatencyMS.P50, r.WriteLatencyMS.P99,
		r.DeliveriesPerSec, r.Deliveries, r.Expected, r.LatencyMS.P50, r.LatencyMS.P99, r.LatencyMS.Max)
	tw.Flush()
}
