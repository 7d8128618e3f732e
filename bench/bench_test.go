package bench

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/server"
)

const benchKey = "bench-test-key-0123456789"

func startTestServer(t *testing.T) *url.URL {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.APIKeys = []config.Secret{benchKey}
	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	u, _ := url.Parse("http://" + srv.Addr().String())
	return u
}

func TestFanoutMeasuresEveryDelivery(t *testing.T) {
	u := startTestServer(t)
	res, err := Fanout(context.Background(), FanoutConfig{Target: u, APIKey: benchKey, Conns: 20, Channels: 2, Rate: 50, Duration: 500 * time.Millisecond, Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Publications < 10 || res.Deliveries != res.Expected || res.Expected != res.Publications*10 {
		t.Fatalf("result %+v", res)
	}
	l := res.LatencyMS
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.Max > 0) || res.Disconnects != 0 || res.PublishErrors != 0 {
		t.Fatalf("latency %+v, disconnects %d, errors %d", l, res.Disconnects, res.PublishErrors)
	}
}

func TestIdleCountsServerConnections(t *testing.T) {
	u := startTestServer(t)
	res, err := Idle(context.Background(), IdleConfig{Target: u, Conns: 50, Settle: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Conns != 50 || res.RSSAfter == 0 || res.ConnectsPerSec <= 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestHistogramPercentiles(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	l := h.latency()
	within := func(got, want float64) bool { return got >= want && got <= want*1.02 }
	if !within(l.P50, 500) || !within(l.P99, 990) || l.Max != 1000 {
		t.Fatalf("%+v", l)
	}
}
