package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/server"
	"github.com/switchyardhq/switchyard/signal"
)

// SignalsConfig configures the signals scenario.
type SignalsConfig struct {
	// Callers are the connections that call signals (the rate is spread
	// over them).
	Callers  int
	Rate     int // calls per second, over all callers
	Duration time.Duration
	// Jobs are enqueued for the queue throughput figure.
	Jobs int
	// Windows are the connections of the topic / channel comparison.
	Windows int
	// Fanouts are the triggers (then publications) sent to them, at
	// FanoutRate per second.
	Fanouts, FanoutRate int
	// FanoutTarget, when set, is the server of the fan-out runs (with
	// FanoutKey, one of its api_keys); otherwise a child process.
	FanoutTarget *url.URL
	FanoutKey    string
	// StoreURL, when set, is a PostgreSQL database: the in-process server
	// keeps its store and its queue there, in a schema of its own that is
	// dropped afterwards (default: SQLite in a temporary directory).
	StoreURL string
	Progress io.Writer
}

// SignalsResult is what the signals scenario measured.
type SignalsResult struct {
	Scenario string `json:"scenario"`
	// Calls: call → handler → trigger back to the calling window.
	GoHandler      CallFigures `json:"go_handler"`
	WebhookHandler CallFigures `json:"webhook_handler"`
	// SyncGoHandler runs during the call (sync: true), without a job.
	SyncGoHandler CallFigures `json:"sync_go_handler"`
	// Store is where the queue is: "sqlite" or "postgres".
	Store string `json:"store"`
	// Queue: jobs enqueued and run (no-op handler).
	QueueJobs          int     `json:"queue_jobs"`
	QueueEnqueuePerSec float64 `json:"queue_enqueue_per_sec"`
	QueueRunPerSec     float64 `json:"queue_run_per_sec"`
	// Fan-out to Windows connections: a trigger to a topic they are all
	// in, and a publication to a channel they all subscribe to.
	Windows int           `json:"windows"`
	Topic   FanoutFigures `json:"topic_trigger"`
	Channel FanoutFigures `json:"channel_publication"`
}

// CallFigures are the figures of one call run.
type CallFigures struct {
	Signal    string  `json:"signal"`
	Rate      int     `json:"rate"`
	Calls     int64   `json:"calls"`
	Failed    int64   `json:"failed"`
	Received  int64   `json:"received"`
	LatencyMS Latency `json:"latency_ms"`
}

// FanoutFigures are the figures of one fan-out run.
type FanoutFigures struct {
	Sent             int64   `json:"sent"`
	Deliveries       int64   `json:"deliveries"`
	Expected         int64   `json:"expected"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	LatencyMS        Latency `json:"latency_ms"`
}

// Signals runs a server in this process (its Go handler is registered in
// code, which a separate `switchyard serve` cannot have) with a webhook
// target on loopback, and measures: call → handler → trigger back to the
// caller at Rate calls/s with a Go handler, with a webhook and with a
// sync Go handler; durable queue throughput; then, on a server in a child
// process, a trigger to a topic of Windows windows against a channel
// publication to the same connections.
func Signals(ctx context.Context, cfg SignalsConfig) (*SignalsResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	hook, err := startWebhookApp()
	if err != nil {
		return nil, err
	}
	defer hook.Close()
	dir, err := os.MkdirTemp("", "switchyard-bench-signals-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	key := "bench-key-0123456789abcdef"
	c := config.Default()
	c.Listen, c.DataDir = "127.0.0.1:0", dir
	c.APIKeys = []config.Secret{config.Secret(key)}
	c.Limits.MaxConnections = 0
	c.Signals.CallsPerSecond = 0
	c.Signals.WebhookSecret = "bench-webhook-secret-0123"
	c.Signals.Declared = []config.Signal{{Name: "bench.hook", Queue: "default", Allowed: "anyone", Webhook: "http://" + hook.Addr().String() + "/", ExtraArgs: "accept"}}
	q := config.DefaultQueueConfig("default")
	q.Concurrency = 16
	c.Queues = []config.Queue{q}
	if cfg.StoreURL != "" {
		u, drop, err := benchSchema(ctx, cfg.StoreURL)
		if err != nil {
			return nil, err
		}
		defer drop()
		c.Store.Driver, c.Store.URL = config.StorePostgres, config.Secret(u)
	}
	var ran atomic.Int64
	srv, err := server.New(c, server.Options{
		Logger: slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Signals: func(s *signal.Service) error {
			echo := func(ctx context.Context, call *signal.Call) (any, error) {
				_, err := call.Reply(ctx, "bench.echoed", call.Kwargs)
				return nil, err
			}
			if err := s.Register("bench.echo", echo, signal.Options{Allowed: "anyone", ExtraArgs: "accept"}); err != nil {
				return err
			}
			return s.Register("bench.echo_sync", echo, signal.Options{Allowed: "anyone", ExtraArgs: "accept", Sync: true})
		},
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Queue().Handle("bench.noop", func(context.Context, queue.Job) error { ran.Add(1); return nil }); err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	stopped := false
	defer func() {
		if !stopped {
			stop()
			<-done
		}
	}()
	base := &url.URL{Scheme: "http", Host: srv.Addr().String()}
	res := &SignalsResult{Scenario: "signals", Store: c.Store.Driver, Windows: cfg.Windows}

	for i, sig := range []string{"bench.echo", "bench.hook", "bench.echo_sync"} {
		// A run starts on an empty queue: the jobs a saturated run left
		// behind would otherwise be counted in the next run's latency.
		if err := waitQueueIdle(ctx, srv.Queue(), 2*time.Minute, progress); err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "signals: %s, %d calls/s over %d connections for %v\n", sig, cfg.Rate, cfg.Callers, cfg.Duration)
		f, err := callRun(ctx, base, sig, cfg, progress)
		if err != nil {
			return nil, err
		}
		switch i {
		case 0:
			res.GoHandler = *f
		case 1:
			res.WebhookHandler = *f
		default:
			res.SyncGoHandler = *f
		}
	}

	fmt.Fprintf(progress, "signals: queue throughput, %d jobs\n", cfg.Jobs)
	start := time.Now()
	var wg sync.WaitGroup
	var enqErr atomic.Value
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < cfg.Jobs; i += 8 {
				if _, err := srv.Queue().Enqueue(ctx, queue.Params{Queue: "default", Kind: "bench.noop"}); err != nil {
					enqErr.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := enqErr.Load().(error); err != nil {
		return nil, err
	}
	enq := time.Since(start)
	for ran.Load() < int64(cfg.Jobs) && ctx.Err() == nil && time.Since(start) < 5*time.Minute {
		time.Sleep(5 * time.Millisecond)
	}
	res.QueueJobs = cfg.Jobs
	res.QueueEnqueuePerSec = float64(cfg.Jobs) / enq.Seconds()
	res.QueueRunPerSec = float64(ran.Load()) / time.Since(start).Seconds()

	// The fan-out runs on a server of its own, a child process (as the
	// other scenarios): 10,000 windows here plus their server would pass
	// the process's 20,000 open files.
	stop()
	<-done
	stopped = true
	fmt.Fprintf(progress, "signals: %d windows in topic bench.room and channel benchroom\n", cfg.Windows)
	cbase, ckey := cfg.FanoutTarget, cfg.FanoutKey
	if cbase == nil {
		ckey = "bench-key-fanout-0123456789"
		child, err := startServer(ctx, progress, "SWITCHYARD_API_KEYS="+ckey)
		if err != nil {
			return nil, err
		}
		defer child.stop()
		if cbase, err = url.Parse(child.url); err != nil {
			return nil, err
		}
	}
	topic, channel, err := fanoutRuns(ctx, cbase, ckey, cfg, progress)
	if err != nil {
		return nil, err
	}
	res.Topic, res.Channel = *topic, *channel
	return res, nil
}

// waitQueueIdle waits until no job is available, running or waiting for
// a retry (or max passed: the run then starts anyway, and says so).
func waitQueueIdle(ctx context.Context, q *queue.Queue, max time.Duration, progress io.Writer) error {
	for deadline := time.Now().Add(max); ; {
		stats, err := q.Stats(ctx)
		if err != nil {
			return err
		}
		var busy int64
		for _, st := range stats {
			busy += st.Jobs[queue.StateAvailable] + st.Jobs[queue.StateRunning] + st.Jobs[queue.StateRetryable]
		}
		if busy == 0 || time.Now().After(deadline) {
			if busy > 0 {
				fmt.Fprintf(progress, "signals: %d jobs of the previous run still queued after %s\n", busy, max)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// benchSchema creates a schema of its own in the database at raw and
// returns a URL whose search_path is it, and a function that drops it.
func benchSchema(ctx context.Context, raw string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, raw)
	if err != nil {
		return "", nil, fmt.Errorf("bench: --store-url: %w", err)
	}
	defer conn.Close(ctx)
	schema := "switchyard_bench_" + strings.ToLower(rand.Text()[:10])
	if _, err := conn.Exec(ctx, `CREATE SCHEMA "`+schema+`"`); err != nil {
		return "", nil, fmt.Errorf("bench: --store-url: %w", err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", nil, fmt.Errorf("bench: --store-url: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, raw); err == nil {
			conn.Exec(ctx, `DROP SCHEMA "`+schema+`" CASCADE`)
			conn.Close(ctx)
		}
	}
	return u.String(), drop, nil
}

// startWebhookApp serves the application backend of bench.hook: it
// answers each call with a trigger of its kwargs back to the caller.
func startWebhookApp() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Kwargs json.RawMessage `json:"kwargs"`
			Window struct {
				ClientID string `json:"client_id"`
			} `json:"window"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad body", 400)
			return
		}
		fmt.Fprintf(w, `{"triggers":[{"signal":"bench.echoed","to":{"windows":[%q]},"kwargs":%s}]}`, req.Window.ClientID, req.Kwargs)
	}))
	return ln, nil
}

// benchConn is a /live connection whose writes are serialised.
type benchConn struct {
	mu sync.Mutex
	c  net.Conn
	id string
}

func (b *benchConn) write(p []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.c.Write(maskedFrame(p))
	return err
}

// openConns opens n /live connections with a reader each that counts
// pushes carrying "t".
func openConns(ctx context.Context, base *url.URL, n int, h *histogram, got, disconnects *atomic.Int64, stop <-chan struct{}, readers *sync.WaitGroup) ([]*benchConn, error) {
	conns := make([]*benchConn, 0, n)
	for i := range n {
		c, br, err := handshake(ctx, base)
		if err != nil {
			return conns, fmt.Errorf("connection %d: %w", i, err)
		}
		hello, err := readFrame(br)
		if err != nil {
			c.Close()
			return conns, err
		}
		var m struct {
			Payload struct {
				ClientID string `json:"client_id"`
			} `json:"payload"`
		}
		json.Unmarshal(hello, &m)
		c.SetDeadline(time.Time{})
		conns = append(conns, &benchConn{c: c, id: m.Payload.ClientID})
		readers.Go(func() { readDeliveries(c, br, h, got, disconnects, stop) })
	}
	return conns, nil
}

func closeAll(conns []*benchConn, stop chan struct{}, readers *sync.WaitGroup) {
	close(stop)
	for _, c := range conns {
		c.c.Close()
	}
	readers.Wait()
}

// callRun calls sig at cfg.Rate for cfg.Duration; each call's kwargs
// carry its send time, which the trigger back brings home.
func callRun(ctx context.Context, base *url.URL, sig string, cfg SignalsConfig, progress io.Writer) (*CallFigures, error) {
	h := newHistogram()
	var got, disconnects atomic.Int64
	stop := make(chan struct{})
	var readers sync.WaitGroup
	conns, err := openConns(ctx, base, cfg.Callers, h, &got, &disconnects, stop, &readers)
	defer closeAll(conns, stop, &readers)
	if err != nil {
		return nil, err
	}
	ok, failed, _ := pace(ctx, cfg.Rate, cfg.Duration, progress, "signals "+sig, &got, func(n int) error {
		frame := fmt.Appendf(nil, `{"stream":"$signals","payload":{"action":"call","request_id":%d,"signal":%q,"kwargs":{"t":%d}}}`, n, sig, time.Now().UnixNano())
		return conns[n%len(conns)].write(frame)
	})
	drain(&got, ok, 10*time.Second)
	if d := disconnects.Load(); d > 0 {
		return nil, fmt.Errorf("%s: %d connections dropped", sig, d)
	}
	return &CallFigures{Signal: sig, Rate: cfg.Rate, Calls: ok, Failed: failed, Received: got.Load(), LatencyMS: h.latency()}, nil
}

// fanoutRuns puts Windows connections in topic bench.room and channel
// benchroom, then sends Fanouts triggers to the topic and Fanouts
// publications to the channel through the server API.
func fanoutRuns(ctx context.Context, base *url.URL, key string, cfg SignalsConfig, progress io.Writer) (*FanoutFigures, *FanoutFigures, error) {
	h := newHistogram()
	var got, disconnects atomic.Int64
	stop := make(chan struct{})
	var readers sync.WaitGroup
	conns, err := openConns(ctx, base, cfg.Windows, h, &got, &disconnects, stop, &readers)
	defer closeAll(conns, stop, &readers)
	if err != nil {
		return nil, nil, err
	}
	client := &http.Client{}
	for i, c := range conns {
		if err := apiCall(ctx, client, base, key, "windows", fmt.Sprintf(`{"window":%q,"add":["bench.room"]}`, c.id)); err != nil {
			return nil, nil, err
		}
		if err := c.write(fmt.Appendf(nil, `{"stream":"$channels","payload":{"action":"subscribe","request_id":"s%d","channel":"benchroom"}}`, i)); err != nil {
			return nil, nil, err
		}
	}
	// The subscribe replies carry no "t": nothing is counted until the
	// runs below.
	run := func(name string, body func(t int64) string, method string) (*FanoutFigures, error) {
		h.reset()
		got.Store(0)
		ok, failed, elapsed := pace(ctx, cfg.FanoutRate, time.Duration(cfg.Fanouts)*time.Second/time.Duration(cfg.FanoutRate), progress, name, &got, func(n int) error {
			return apiCall(ctx, client, base, key, method, body(time.Now().UnixNano()))
		})
		if failed > 0 {
			return nil, fmt.Errorf("%s: %d calls failed", name, failed)
		}
		expected := ok * int64(len(conns))
		drain(&got, expected, 30*time.Second)
		if d := disconnects.Load(); d > 0 {
			return nil, fmt.Errorf("%s: %d connections dropped", name, d)
		}
		return &FanoutFigures{Sent: ok, Deliveries: got.Load(), Expected: expected, DeliveriesPerSec: float64(got.Load()) / elapsed.Seconds(), LatencyMS: h.latency()}, nil
	}
	topic, err := run("topic trigger", func(t int64) string {
		return fmt.Sprintf(`{"signal":"bench.room","to":{"topics":["bench.room"]},"kwargs":{"t":%d}}`, t)
	}, "trigger")
	if err != nil {
		return nil, nil, err
	}
	channel, err := run("channel publication", func(t int64) string {
		return fmt.Sprintf(`{"channel":"benchroom","data":{"t":%d}}`, t)
	}, "publish")
	if err != nil {
		return nil, nil, err
	}
	return topic, channel, nil
}

func apiCall(ctx context.Context, client *http.Client, base *url.URL, key, method, body string) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", base.JoinPath("/api/server/", method).String(), strings.NewReader(body))
	req.Header.Set("Authorization", "apikey "+key)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: status %d: %s", method, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// WriteTable prints the result for people.
func (r *SignalsResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "call → trigger back\tcalls/s\tcalls\treceived\tp50 ms\tp99 ms\tmax ms\t")
	for _, f := range []CallFigures{r.GoHandler, r.WebhookHandler, r.SyncGoHandler} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t\n", f.Signal, f.Rate, f.Calls, f.Received, f.LatencyMS.P50, f.LatencyMS.P99, f.LatencyMS.Max)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nqueue (%s): %d jobs, enqueued %.0f/s, run %.0f/s\n\n", r.Store, r.QueueJobs, r.QueueEnqueuePerSec, r.QueueRunPerSec)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fan-out\twindows\tsent\tdelivered/expected\tdeliveries/s\tp50 ms\tp99 ms\t")
	for i, f := range []FanoutFigures{r.Topic, r.Channel} {
		name := [2]string{"topic trigger", "channel publication"}[i]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d/%d\t%.0f\t%.2f\t%.2f\t\n", name, r.Windows, f.Sent, f.Deliveries, f.Expected, f.DeliveriesPerSec, f.LatencyMS.P50, f.LatencyMS.P99)
	}
	tw.Flush()
}

var errSignalsTarget = errors.New("signals runs its own server in this process (its Go handler is registered in code): --target is not supported")
