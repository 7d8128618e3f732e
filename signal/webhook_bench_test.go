package signal

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/queue"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// webhookService is a service (on a real, unstarted queue) whose webhook
// calls go through client, and a webhook server on loopback counting its
// connections.
func webhookService(tb testing.TB, client *http.Client) (*Service, *countingListener, string) {
	tb.Helper()
	q, err := queue.Open(context.Background(), queue.Config{Path: filepath.Join(tb.TempDir(), "queue.db"), Queues: []config.Queue{config.DefaultQueueConfig("default")}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { q.Close() })
	svc, err := New(Config{Queue: q, Signals: config.Signals{WebhookSecret: secret, MaxKwargsBytes: 1024}, HTTPClient: client})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req webhookRequest
		json.NewDecoder(r.Body).Decode(&req)
		fmt.Fprintf(w, `{"result": %s}`, req.Kwargs)
	}))
	cl := &countingListener{Listener: srv.Listener}
	srv.Listener = cl
	srv.Start()
	tb.Cleanup(srv.Close)
	return svc, cl, srv.URL
}

// BenchmarkWebhookCall makes webhook calls from 16 goroutines (a queue of
// concurrency 16, as `switchyard bench signals`) to one host on loopback:
// with Go's default transport (2 idle connections per host) and with the
// service's (signals.webhook_idle_conns, default 64). It reports the
// connections the webhook server accepted per 1,000 calls.
func BenchmarkWebhookCall(b *testing.B) {
	for _, bc := range []struct {
		name   string
		client func() *http.Client
	}{
		{"go-default", func() *http.Client { return &http.Client{} }},
		{"webhook-transport", func() *http.Client { return &http.Client{Transport: webhookTransport(0)} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			client := bc.client()
			defer client.CloseIdleConnections()
			svc, conns, url := webhookService(b, client)
			hook := svc.webhook(url)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			var next atomic.Int64
			for range 16 {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						out, err := hook(context.Background(), &Call{Signal: "bench.hook", Kwargs: json.RawMessage(`{"n":1}`), svc: svc})
						if err != nil || string(out.(json.RawMessage)) != `{"n":1}` {
							b.Errorf("webhook call: %v %s", err, out)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(conns.n.Load())*1000/float64(b.N), "conns/1000calls")
		})
	}
}

func TestWebhookTransportReusesConnections(t *testing.T) {
	svc, conns, url := webhookService(t, nil) // the service's default client
	hook := svc.webhook(url)
	// 50 bursts of 16 concurrent calls: Go's default transport keeps 2
	// connections after each burst and dials 14 for the next (~700 in
	// all); the service's keeps them all.
	for range 50 {
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				if _, err := hook(context.Background(), &Call{Signal: "x", Kwargs: json.RawMessage(`{}`), svc: svc}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	// A dial that loses the race to a connection coming back is kept
	// too: a few more than 16.
	if n := conns.n.Load(); n > 32 {
		t.Fatalf("%d connections for 50 bursts of 16 calls, want at most 32 (kept alive between bursts)", n)
	}
}
