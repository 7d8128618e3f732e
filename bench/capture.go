package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/redis/rueidis"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/server"
)

// CaptureConfig configures the capture scenario: an existing table
// written by another program (plain SQL over pgx connections that are not
// Switchyard's), its changes captured by the trigger and pushed to live
// queries.
type CaptureConfig struct {
	StoreURL    string        // a postgres:// database (a schema of the run's own, dropped afterwards)
	BrokerURL   string        // a redis:// URL: events go through the Redis broker (keys under a prefix of the run's own, deleted afterwards); empty: the memory broker
	Rate        int           // external writes per second
	Duration    time.Duration // how long to write
	Writers     int           // connections writing (the app's)
	Subscribers int           // /live connections running a live query on the table
	// OverheadWrites is the number of writes of each round of the write
	// overhead measurement (3 rounds with capture, 3 without, alternated).
	OverheadWrites int
	Progress       io.Writer
}

// CaptureResult is what the capture scenario measured.
type CaptureResult struct {
	Scenario    string  `json:"scenario"`
	Broker      string  `json:"broker"`
	Rate        int     `json:"rate"`
	Writes      int64   `json:"writes"`
	Subscribers int     `json:"subscribers"`
	Expected    int64   `json:"expected"`
	Received    int64   `json:"received"`
	WritesPerS  float64 `json:"writes_per_sec"`
	LatencyMS   Latency `json:"latency_ms"` // external write's commit → event at a subscriber
	// The app's own writes (one-row UPDATE, autocommit, one connection),
	// median µs per write of 3 rounds each, alternated in the same run.
	WriteUSWithout float64 `json:"write_us_without_capture"`
	WriteUSWith    float64 `json:"write_us_with_capture"`
	Overhead       float64 `json:"overhead_ratio"`
}

const captureTable = `CREATE TABLE app_todo (
	id serial PRIMARY KEY,
	title varchar(200) NOT NULL,
	done boolean NOT NULL DEFAULT false,
	owner_id integer NOT NULL,
	updated timestamptz
);
INSERT INTO app_todo (title, owner_id) SELECT 'row ' || g, 1 FROM generate_series(1, 1000) g`

// Capture runs the capture scenario with a server in this process.
func Capture(ctx context.Context, cfg CaptureConfig) (*CaptureResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	if cfg.StoreURL == "" {
		return nil, errors.New("bench capture: --store-url postgres://… is required (capture needs PostgreSQL)")
	}
	u, drop, err := benchSchema(ctx, cfg.StoreURL)
	if err != nil {
		return nil, err
	}
	defer drop()
	app, err := pgx.Connect(ctx, u)
	if err != nil {
		return nil, err
	}
	defer app.Close(context.WithoutCancel(ctx))
	if _, err := app.Exec(ctx, captureTable); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "switchyard-bench-capture-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	c := config.Default()
	c.Listen, c.DataDir = "127.0.0.1:0", dir
	c.Limits.MaxConnections = 0
	c.Store.Driver, c.Store.URL = config.StorePostgres, config.Secret(u)
	broker := config.BrokerMemory
	if cfg.BrokerURL != "" {
		// The Redis broker: the server follows as the leader, one
		// publisher of captured changes for every process.
		prefix, drop, err := benchRedisPrefix(ctx, cfg.BrokerURL)
		if err != nil {
			return nil, err
		}
		defer drop()
		broker = config.BrokerRedis
		c.Broker.Driver, c.Broker.URL, c.Broker.Prefix = broker, config.Secret(cfg.BrokerURL), prefix
	}
	c.Resources = []config.Resource{{
		Name: "todos", Table: "app_todo", Capture: config.CaptureTrigger, PKField: "id", PageSize: 25,
		Permissions: config.ResourcePermissions{Read: "anyone", Create: "anyone", Update: "anyone", Delete: "anyone"},
	}}
	srv, err := server.New(c, server.Options{Logger: slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	defer func() { stop(); <-done }()
	res := &CaptureResult{Scenario: "capture", Broker: broker, Rate: cfg.Rate, Subscribers: cfg.Subscribers}

	// The write overhead the trigger adds to the app's own writes.
	fmt.Fprintf(progress, "capture: write overhead, 3 × %d writes with and without the trigger\n", cfg.OverheadWrites)
	var with, without []float64
	for round := range 6 {
		on := round%2 == 1
		state := "DISABLE"
		if on {
			state = "ENABLE"
		}
		if _, err := app.Exec(ctx, "ALTER TABLE app_todo "+state+" TRIGGER _switchyard_capture"); err != nil {
			return nil, err
		}
		start := time.Now()
		for i := range cfg.OverheadWrites {
			if _, err := app.Exec(ctx, "UPDATE app_todo SET done = NOT done WHERE id = $1", int64(i%1000+1)); err != nil {
				return nil, err
			}
		}
		us := float64(time.Since(start).Microseconds()) / float64(cfg.OverheadWrites)
		if on {
			with = append(with, us)
		} else {
			without = append(without, us)
		}
	}
	res.WriteUSWith, res.WriteUSWithout = median(with), median(without)
	res.Overhead = res.WriteUSWith / res.WriteUSWithout

	// External writes → live-query events.
	base := "ws://" + srv.Addr().String() + "/live"
	lat := newHistogram()
	var received atomic.Int64
	var wg sync.WaitGroup
	rctx, cancelReaders := context.WithCancel(ctx)
	defer cancelReaders()
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	for range cfg.Subscribers {
		c, _, err := websocket.DefaultDialer.DialContext(ctx, base, nil)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		if err := c.WriteJSON(map[string]any{"stream": "todos", "payload": map[string]any{"action": "subscribe_list", "request_id": "lq"}}); err != nil {
			return nil, err
		}
		for {
			var reply struct {
				Payload struct {
					Status    int    `json:"response_status"`
					RequestID string `json:"request_id"`
				} `json:"payload"`
			}
			if err := c.ReadJSON(&reply); err != nil {
				return nil, fmt.Errorf("subscribe_list: %w", err)
			}
			if reply.Payload.RequestID != "lq" {
				continue // the connection's greeting
			}
			if reply.Payload.Status != 201 {
				return nil, fmt.Errorf("subscribe_list: status %d", reply.Payload.Status)
			}
			break
		}
		wg.Go(func() {
			var ev struct {
				Payload struct {
					Action string `json:"action"`
					Data   struct {
						Title string `json:"title"`
					} `json:"data"`
				} `json:"payload"`
			}
			for rctx.Err() == nil {
				if err := c.ReadJSON(&ev); err != nil {
					return
				}
				if ev.Payload.Action != "update" {
					continue
				}
				_, sent, ok := strings.Cut(ev.Payload.Data.Title, "@")
				if ns, err := strconv.ParseInt(sent, 10, 64); ok && err == nil {
					lat.add(time.Since(time.Unix(0, ns)))
					received.Add(1)
				}
			}
		})
	}
	fmt.Fprintf(progress, "capture: %d external writes/s over %d connections for %v, %d subscribers\n", cfg.Rate, cfg.Writers, cfg.Duration, cfg.Subscribers)
	var writes atomic.Int64
	var werr atomic.Value
	interval := time.Duration(int64(time.Second) * int64(cfg.Writers) / int64(cfg.Rate))
	start := time.Now()
	end := start.Add(cfg.Duration)
	var ww sync.WaitGroup
	for w := range cfg.Writers {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return nil, err
		}
		ww.Go(func() {
			defer conn.Close(context.WithoutCancel(ctx))
			next := start.Add(interval * time.Duration(w) / time.Duration(cfg.Writers))
			for i := 0; ; i++ {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				if time.Now().After(end) || ctx.Err() != nil {
					return
				}
				id := int64((w*7919+i)%1000 + 1)
				title := "w" + strconv.Itoa(w) + "@" + strconv.FormatInt(time.Now().UnixNano(), 10)
				if _, err := conn.Exec(ctx, "UPDATE app_todo SET title = $1, updated = now() WHERE id = $2", title, id); err != nil {
					werr.Store(err)
					return
				}
				writes.Add(1)
				next = next.Add(interval)
			}
		})
	}
	ww.Wait()
	if err, _ := werr.Load().(error); err != nil {
		return nil, err
	}
	res.Writes = writes.Load()
	res.WritesPerS = float64(res.Writes) / time.Since(start).Seconds()
	res.Expected = res.Writes * int64(cfg.Subscribers)
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < res.Expected && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	res.Received = received.Load()
	res.LatencyMS = lat.latency()
	return res, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// WriteTable prints the result.
func (r *CaptureResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "broker\texternal writes\twrites/s\tsubscribers\treceived/expected\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%d/%d\t%.2f\t%.2f\t%.2f\t%.2f\t\n", r.Broker, r.Writes, r.WritesPerS, r.Subscribers, r.Received, r.Expected, r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.LatencyMS.Max)
	tw.Flush()
	fmt.Fprintf(w, "\nthe app's own writes (1-row UPDATE, autocommit): %.0f µs without capture, %.0f µs with: %.2f×\n", r.WriteUSWithout, r.WriteUSWith, r.Overhead)
}

// benchRedisPrefix returns a key prefix of the run's own on the Redis at
// raw, and a function that deletes the keys under it (and only those).
func benchRedisPrefix(ctx context.Context, raw string) (string, func(), error) {
	opt, err := rueidis.ParseURL(raw)
	if err != nil {
		return "", nil, fmt.Errorf("bench: --broker-url: %w", err)
	}
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return "", nil, fmt.Errorf("bench: --broker-url: %w", err)
	}
	prefix := "switchyard_bench_" + strings.ToLower(rand.Text()[:10])
	drop := func() {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var cursor uint64
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+":*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				return
			}
			if len(e.Elements) > 0 {
				c.Do(ctx, c.B().Unlink().Key(e.Elements...).Build())
			}
			if cursor = e.Cursor; cursor == 0 {
				return
			}
		}
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		drop()
		return "", nil, fmt.Errorf("bench: --broker-url: %w", err)
	}
	return prefix, drop, nil
}
