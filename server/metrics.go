package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/protocol/channelstream"
	"github.com/switchyardhq/switchyard/ws"
)

// metrics owns the server's Prometheus registry. The WebSocket figures
// are read from the engine's counters when scraped, so the hot path pays
// only for its atomic increments.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	panics   prometheus.Counter
}

func newMetrics(e *ws.Engine, started time.Time) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_http_requests_total",
			Help: "HTTP requests served, by status code (WebSocket upgrades count as 101).",
		}, []string{"code"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_http_panics_total",
			Help: "Panics recovered in HTTP handlers.",
		}),
	}
	stat := func(f func(ws.Stats) float64) func() float64 {
		return func() float64 { return f(e.Stats()) }
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests,
		m.panics,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchyard_connections", Help: "Open WebSocket connections.",
		}, stat(func(s ws.Stats) float64 { return float64(s.Connections) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchyard_connections_accepted_total", Help: "WebSocket handshakes completed.",
		}, stat(func(s ws.Stats) float64 { return float64(s.Accepted) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchyard_messages_received_total", Help: "WebSocket messages received from clients.",
		}, stat(func(s ws.Stats) float64 { return float64(s.MessagesIn) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchyard_messages_sent_total", Help: "WebSocket messages sent to clients.",
		}, stat(func(s ws.Stats) float64 { return float64(s.MessagesOut) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchyard_bytes_received_total", Help: "Bytes read from WebSocket connections (frames included).",
		}, stat(func(s ws.Stats) float64 { return float64(s.BytesIn) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchyard_bytes_sent_total", Help: "Bytes written to WebSocket connections (frames included).",
		}, stat(func(s ws.Stats) float64 { return float64(s.BytesOut) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchyard_errors_total", Help: "Connections closed for a protocol error or a limit (1002, 1007, 1009), and handler panics.",
			ConstLabels: prometheus.Labels{"kind": "protocol"},
		}, stat(func(s ws.Stats) float64 { return float64(s.ProtocolErrors) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchyard_errors_total", Help: "Connections closed for a protocol error or a limit (1002, 1007, 1009), and handler panics.",
			ConstLabels: prometheus.Labels{"kind": "panic"},
		}, stat(func(s ws.Stats) float64 { return float64(s.Panics) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchyard_uptime_seconds", Help: "Seconds since the server started.",
		}, func() float64 { return time.Since(started).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchyard_build_info", Help: "Always 1; the version and commit are labels.",
			ConstLabels: prometheus.Labels{"version": switchyard.Version, "commit": switchyard.Commit},
		}, func() float64 { return 1 }),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Hijack and Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument counts requests by status and turns a panic in a plain HTTP
// handler into a logged 500 that affects no other request. Only the path
// is logged: query strings may carry tokens.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.metrics.panics.Inc()
				s.log.Error("panic in HTTP handler", "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if sw.status == 0 {
					ws.WriteError(sw, http.StatusInternalServerError, "internal", "internal error")
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusSwitchingProtocols // hijacked by an upgrade
			}
			s.metrics.requests.WithLabelValues(strconv.Itoa(status)).Inc()
			if status == http.StatusInternalServerError {
				// Every surface logs its cause; this line makes sure no
				// 500 goes unnoticed, whatever answered it.
				s.log.Error("HTTP request failed with 500", "method", r.Method, "path", r.URL.Path)
			} else {
				s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", status)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// hub adds the hub's writer figures.
func (m *metrics) hub(hb *hub.Hub) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchyard_io_uring_writers", Help: "Writer workers that write many clients' messages with one io_uring system call (limits.io_uring); 0 where the kernel refuses io_uring.",
		}, func() float64 { return float64(hb.Stats().GroupWriters) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchyard_io_uring_writes_total", Help: "Batches of messages the writers wrote to a client through io_uring.",
		}, func() float64 { return float64(hb.Stats().GroupWrites) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchyard_io_uring_submissions_total", Help: "io_uring submissions of the writers (one system call each, for up to 64 clients).",
		}, func() float64 { return float64(hb.Stats().GroupFlushes) }),
	)
}

// channelstream adds the Channelstream API's gauges.
func (m *metrics) channelstream(cs *channelstream.Server) {
	gauge := func(name, help string, f func(channelstream.Stats) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f(cs.Stats())) })
	}
	m.reg.MustRegister(
		gauge("switchyard_channelstream_connections", "Channelstream connections (with a socket, a long-poll, or between polls).", func(s channelstream.Stats) int { return s.Connections }),
		gauge("switchyard_channelstream_users", "Channelstream users remembered.", func(s channelstream.Stats) int { return s.Users }),
		gauge("switchyard_channelstream_channels", "Channelstream channels.", func(s channelstream.Stats) int { return s.Channels }),
		gauge("switchyard_channelstream_polls", "Channelstream long-polls (/listen) parked now.", func(s channelstream.Stats) int { return s.Polls }),
	)
}
