// Package server assembles Switchyard: it wires the WebSocket engine, the
// protocols, the HTTP surface, health and metrics from one config.Config,
// and runs them until its context ends, then shuts down gracefully.
//
// It is the embeddable server: a Go program can call New and Run (or mount
// Handler in its own mux) instead of running the binary.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyardhq/switchyard/api"
	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/broker"
	"github.com/switchyardhq/switchyard/clients"
	"github.com/switchyardhq/switchyard/cluster"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/dashboard"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/protocol/binding"
	"github.com/switchyardhq/switchyard/protocol/channelstream"
	"github.com/switchyardhq/switchyard/protocol/live"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/ws"
)

// Options are the parts of a server that are not configuration.
type Options struct {
	// Logger receives the server's logs; nil is slog.Default(), so that a
	// panic in application code (a resource hook) is never silent.
	Logger *slog.Logger
	// Checks are extra readiness checks, run by /readyz after the store's
	// and the broker's.
	Checks []Check
	// ResourceHooks are application code around the writes of resources,
	// by resource name (validation, computed fields, side effects).
	ResourceHooks map[string]resource.Hooks
	// Signals registers the application's Go signal handlers (with
	// signal.Service.Register) before the queues start.
	Signals func(s *signal.Service) error
	// BindingEvents handle the channels-binding wire's custom events
	// (channels-binding's @bind), by event without its #uid
	// ("simple_reflexion.ping").
	BindingEvents map[string]binding.Custom
	// Nodes lists the cluster's nodes on the dashboard's overview (nil:
	// this process alone).
	Nodes dashboard.NodeSource
}

// Check is a named readiness check: /readyz answers 503 while one fails.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Server is a running Switchyard. Create it with New.
type Server struct {
	cfg    config.Config
	log    *slog.Logger
	engine *ws.Engine
	broker broker.Broker
	node   *cluster.Node
	hub    *hub.Hub
	db     store.Store
	// resources is the resource service (the Go API: Resources).
	resources *resource.Service
	// jobs and signals: the durable queues and the signal service.
	jobs    *queue.Queue
	signals *signal.Service
	// follow runs the capture follower until its context ends (nil when
	// no resource captures); Run starts it, Shutdown stops it.
	follow     func(context.Context)
	stopFollow context.CancelFunc
	followDone chan struct{}
	// stopRelease ends limits.idle_release's goroutine (release.go),
	// releaseDone is closed when it has.
	stopRelease context.CancelFunc
	releaseDone chan struct{}
	// proxy is the connect proxy (nil when auth.proxy is off).
	proxy *auth.Proxy
	// channelstream is the Channelstream API (nil when it is off).
	channelstream *channelstream.Server
	// dashboard is the admin dashboard (nil when it is off).
	dashboard *dashboard.Dashboard
	metrics   *metrics
	mux       *http.ServeMux
	http      *http.Server
	checks    []Check
	started   time.Time
	// gate bounds the client connections (limits.max_connections).
	gate *gate
	// inflight and active count the HTTP requests being handled.
	inflight sync.WaitGroup
	active   atomic.Int64

	mu       sync.Mutex
	ln       net.Listener
	draining atomic.Bool
}

// New validates cfg and builds a server; nothing listens until Listen or
// Run.
func New(cfg config.Config, o Options) (*Server, error) {
	// Resources declared in Go get the defaults a file would give them.
	cfg.Resources = append([]config.Resource(nil), cfg.Resources...)
	for i := range cfg.Resources {
		r := &cfg.Resources[i]
		if r.PKField == "" {
			r.PKField = "id"
		}
		if r.PageSize == 0 {
			r.PageSize = 25
		}
		for _, p := range []*string{&r.Permissions.Read, &r.Permissions.Create, &r.Permissions.Update, &r.Permissions.Delete} {
			if *p == "" {
				*p = config.AccessAnyone
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := CheckConfig(cfg); err != nil {
		return nil, err
	}
	// Sections this build parses and validates but does not serve yet:
	// said once at start, never silently ignored.
	if len(cfg.Resources) > 0 {
		log.Info("serving resources over /live and /api/resources/", "count", len(cfg.Resources))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("server: data_dir: %w", err)
	}
	verifier, err := auth.NewVerifier(cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	proxy, err := newProxy(cfg.Auth.Proxy, log) // wires.go
	if err != nil {
		return nil, err
	}
	db, err := openStore(context.Background(), cfg, log)
	if err != nil {
		return nil, err
	}
	// Resources on existing tables take their fields from the catalog
	// (capture.go), before anything else depends on them.
	if err := attachTables(context.Background(), db, cfg.Resources, log); err != nil {
		db.Close()
		return nil, err
	}
	b, err := openBroker(context.Background(), cfg, log)
	if err != nil {
		db.Close()
		return nil, err
	}
	engine, err := ws.NewEngine(ws.EngineConfig{Logger: log})
	if err != nil {
		b.Close(context.Background())
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	host, _ := os.Hostname()
	node, err := cluster.New(cluster.Config{
		Broker:   b,
		Presence: b,
		Name:     fmt.Sprintf("%s-%d", host, os.Getpid()),
		TTL:      time.Duration(cfg.Broker.PresenceTTL),
		Logger:   log,
	})
	if err != nil {
		engine.Close()
		b.Close(context.Background())
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	hb, err := hub.New(hub.Config{
		Broker:               node,
		Presence:             b,
		Channels:             withChannelstreamNamespace(cfg),
		Reserved:             map[string]config.ChannelOptions{resource.ChannelNamespace: {}, binding.Namespace: {}},
		MaxQueuedBytes:       int64(cfg.Limits.MaxQueuedBytes),
		MaxFrameBytes:        int64(cfg.Limits.MaxOutgoingMessageSize),
		MaxSubscriptions:     cfg.Limits.MaxSubscriptions,
		MaxUserSubscriptions: cfg.Limits.MaxSubscriptionsPerUser,
		PresenceExpiry:       time.Duration(cfg.Broker.PresenceTTL),
		Writers:              cfg.Limits.Writers,
		NewWriteGroup:        newWriteGroup(cfg.Limits.IOURing),
		BroadcastChunk:       cfg.Limits.BroadcastChunk,
		Logger:               log,
	})
	if err != nil {
		engine.Close()
		b.Close(context.Background())
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := node.Start(context.Background()); err != nil {
		hb.Close()
		engine.Close()
		b.Close(context.Background())
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	// What is open from here on, released when a later step fails.
	release := func() {
		hb.Close()
		engine.Close()
		node.Stop(context.Background())
		b.Close(context.Background())
		db.Close()
	}
	// Every committed write of a resource becomes a publication on the
	// record's channel; the protocols turn it into their events.
	resources, err := resource.NewService(context.Background(), resource.ServiceConfig{
		Store:     db,
		Resources: cfg.Resources,
		Hooks:     o.ResourceHooks,
		OnChange: func(ctx context.Context, ev resource.Event) {
			data, seq := ev.Payload(), ev.Sequence()
			ctx = context.WithoutCancel(ctx)
			for _, ch := range ev.Channels() {
				if _, err := hb.PublishOrdered(ctx, ch, data, seq); err != nil {
					log.Error("resource event not published", "resource", ev.Resource, "channel", ch, "err", err)
				}
			}
		},
	})
	if err != nil {
		release()
		return nil, fmt.Errorf("server: %w", err)
	}
	follow, err := startCapture(context.Background(), db, cfg.Resources, resources, cfg.Broker.Driver == config.BrokerRedis, log)
	if err != nil {
		release()
		return nil, err
	}
	// Signals and their durable queues (docs/signals.md), where the store
	// is (drivers.go). Workers start with Run.
	jobs, err := openQueue(context.Background(), cfg, db, log)
	if err != nil {
		release()
		return nil, err
	}
	signals, err := newSignals(cfg, o, jobs, node, b, log) // signalbus.go
	if err != nil {
		jobs.Close()
		release()
		return nil, fmt.Errorf("server: %w", err)
	}
	if n := len(cfg.Signals.Declared); n > 0 {
		log.Info("serving signals", "declared", n, "queues", len(cfg.Queues))
	}
	s := &Server{
		cfg:       cfg,
		log:       log,
		engine:    engine,
		broker:    b,
		node:      node,
		hub:       hb,
		db:        db,
		resources: resources,
		jobs:      jobs,
		signals:   signals,
		follow:    follow,
		proxy:     proxy,
		mux:       http.NewServeMux(),
		started:   time.Now(),
	}
	maxConns := maxConnections(cfg.Limits.MaxConnections)
	if n := openFileLimit(); n > 0 && cfg.Limits.MaxConnections > n-descriptorReserve {
		log.Warn("limits.max_connections is above what the open-file limit leaves for clients: descriptors may run out first (new connections are then refused with 503)",
			"max_connections", cfg.Limits.MaxConnections, "open_file_limit", n)
	}
	if cfg.Broker.Driver == config.BrokerRedis && cfg.Store.Driver == config.StoreSQLite {
		log.Warn("broker: redis with store: sqlite shares channels across processes but not data: each process keeps its own resources and job queue under its data_dir (use store: postgres to run several processes on one dataset)",
			"data_dir", cfg.DataDir)
	}
	if cfg.Broker.Driver == config.BrokerMemory && cfg.Store.Driver == config.StorePostgres {
		log.Info("broker: memory with store: postgres runs as one process: a second process on this database would share the data but not events, presence or signals (use broker: redis to run several)")
	}
	// Parked long-polls left net/http's count when they were hijacked.
	s.gate = newGate(maxConns, func() int {
		n := engine.Len()
		if s.channelstream != nil {
			n += s.channelstream.Parked()
		}
		return n
	}, log)
	s.checks = append([]Check{
		{Name: "store", Func: db.Ping},
		{Name: "broker", Func: brokerCheck(b)},
		{Name: "queue", Func: jobs.Ping},
	}, o.Checks...)
	s.metrics = newMetrics(engine, s.started)
	s.metrics.hub(hb)

	wsOpts := []ws.Option{
		ws.WithEngine(engine),
		ws.WithLogger(log),
		ws.AllowedOrigins(cfg.WebSocket.AllowedOrigins...),
		ws.OriginConfigKey("websocket.allowed_origins"),
		ws.MaxMessageSize(int64(cfg.Limits.MaxMessageSize)),
		ws.PingInterval(time.Duration(cfg.WebSocket.PingInterval)),
		ws.ReadTimeout(time.Duration(cfg.WebSocket.ReadTimeout)),
		ws.WriteTimeout(time.Duration(cfg.WebSocket.WriteTimeout)),
		ws.Compression(cfg.WebSocket.Compression),
	}
	s.mux.Handle("GET /live", live.New(live.Config{
		Engine:            engine,
		Hub:               hb,
		Resources:         resources,
		Signals:           signals,
		Verifier:          verifier,
		Proxy:             proxy,
		Options:           wsOpts,
		Logger:            log,
		MaxConnections:    maxConns,
		MessagesPerSecond: cfg.Limits.MessagesPerSecond,
		MaxCatchUp:        cfg.Store.ChangeLog.MaxReplay,
		MaxReplyBytes:     int(cfg.Limits.MaxOutgoingMessageSize),
		MaxSearchLength:   cfg.Limits.MaxSearchLength,
	}))
	if bh := bindingHandler(cfg, o, engine, hb, resources, signals, verifier, proxy, wsOpts, maxConns, log); bh != nil { // wires.go
		s.mux.Handle("GET "+cfg.Binding.Path, bh)
	}
	// The df_websockets wire (dfws.go): its socket, and the server API's
	// window bootstrap.
	dfh, err := newDFWebsockets(cfg, engine, hb, signals, verifier, proxy, wsOpts, maxConns, log)
	if err != nil {
		jobs.Close()
		hb.Close()
		engine.Close()
		db.Close()
		return nil, err
	}
	if dfh != nil {
		s.mux.Handle(dfwsPattern(cfg.DFWebsockets.Path), dfh)
	}
	s.mux.Handle("/api/server/", api.NewServer(api.ServerConfig{
		Hub:         hb,
		Cluster:     node,
		Keys:        cfg.APIKeys,
		MaxBody:     int64(cfg.Limits.MaxRequestBody),
		Connections: engine.Len,
		Started:     s.started,
		Logger:      log,
		Signals:     signals,
		Queue:       jobs,
		Binding:     cfg.Binding.Path != "",
		NewWindow:   dfwsNewWindow(dfh),
	}))
	s.mux.Handle("/api/resources/", api.NewResources(api.ResourcesConfig{
		Service:         resources,
		Verifier:        verifier,
		Keys:            cfg.APIKeys,
		CookieName:      cfg.Auth.CookieName,
		AllowedOrigins:  cfg.WebSocket.AllowedOrigins,
		PublicURL:       cfg.PublicURL,
		MaxBody:         int64(cfg.Limits.MaxRequestBody),
		MaxSearchLength: cfg.Limits.MaxSearchLength,
		Logger:          log,
	}))
	if cs := cfg.Channelstream; cs.Enabled {
		maxAge := time.Minute
		if !cs.ValidateRequests {
			maxAge = -1
		}
		skew := time.Duration(cs.MaxClockSkew)
		if skew == 0 {
			skew = -1 // none: channelstream reads 0 as its default
		}
		s.channelstream, err = channelstream.New(channelstream.Config{
			Hub:                  hb,
			Clustered:            func(context.Context) bool { return node.Peers() > 1 },
			Engine:               engine,
			WSOptions:            wsOpts,
			Namespace:            cs.Namespace,
			Secret:               string(cs.Secret),
			Allowed:              cs.AllowedPrefixes(),
			SignatureMaxAge:      maxAge,
			MaxClockSkew:         skew,
			AllowCORS:            cs.AllowCORS,
			EnforceHTTPS:         cs.EnforceHTTPS,
			StrictFields:         cs.UnknownFields == config.ChannelstreamUnknownReject,
			Heartbeat:            time.Duration(cs.HeartbeatInterval),
			ConnectionTimeout:    time.Duration(cs.ConnectionGC),
			UserTimeout:          time.Duration(cs.UserGC),
			ChannelTimeout:       time.Duration(cs.ChannelGC),
			HistoryLimit:         cs.HistoryLimit,
			MaxBody:              int64(cfg.Limits.MaxRequestBody),
			MaxQueued:            int(cfg.Limits.MaxQueuedBytes),
			WriteTimeout:         time.Duration(cfg.Limits.WriteTimeout),
			PollGoroutines:       cs.PollGoroutines,
			AdminUser:            cs.AdminUser,
			AdminSecret:          string(cs.AdminSecret),
			SignInAttempts:       cs.SignInAttempts,
			SignInAttemptsGlobal: cs.SignInAttemptsGlobal,
			SignInLockout:        time.Duration(cs.SignInLockout),
			Logger:               log,
		})
		if err != nil {
			jobs.Close()
			hb.Close()
			engine.Close()
			node.Stop(context.Background())
			b.Close(context.Background())
			db.Close()
			return nil, fmt.Errorf("server: %w", err)
		}
		s.channelstream.Register(s.mux, cs.Prefix)
		s.metrics.channelstream(s.channelstream)
		log.Info("serving the Channelstream API", "prefix", cs.Prefix, "namespace", cs.Namespace)
	}
	if err := s.mountDashboard(o); err != nil {
		jobs.Close()
		hb.Close()
		engine.Close()
		db.Close()
		return nil, err
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", s.metrics.handler())
	clients.Register(s.mux) // the browser client, /switchyard.js
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ws.WriteError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})

	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: time.Duration(cfg.Limits.ReadTimeout),
		IdleTimeout:       time.Duration(cfg.Limits.IdleTimeout),
		MaxHeaderBytes:    64 << 10,
		ConnState:         s.gate.connState,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("limits", "max_connections", maxConns, "read_timeout", cfg.Limits.ReadTimeout.String(), "write_timeout", cfg.Limits.WriteTimeout.String())
	return s, nil
}

// withChannelstreamNamespace returns the channels configuration with the
// Channelstream namespace added when the API is on and the file does not
// declare it: closed to /live clients (the application opens it by
// declaring it), open to the server.
func withChannelstreamNamespace(cfg config.Config) config.Channels {
	ch := cfg.Channels
	cs := cfg.Channelstream
	if !cs.Enabled {
		return ch
	}
	for _, n := range ch.Namespaces {
		if n.Name == cs.Namespace {
			return ch
		}
	}
	none := config.ChannelPermissions{Subscribe: config.AccessNone, Publish: config.AccessNone, Presence: config.AccessNone, History: config.AccessNone}
	ch.Namespaces = append(append([]config.Namespace(nil), ch.Namespaces...), config.Namespace{Name: cs.Namespace, ChannelOptions: config.ChannelOptions{Permissions: none}})
	return ch
}

// Handler returns the server's HTTP handler: every route, with panic
// recovery, request metrics and the per-request time limits (the
// connection limit applies only to what Run serves).
func (s *Server) Handler() http.Handler {
	return s.instrument(s.limitRequests(s.mux))
}

// Resources returns the resource service: the Go API to the declared
// resources. Call it with resource.AsServer() to act as the application
// (no permission applies, owner fields can be set), or resource.As(user)
// to act for a user with the configured rules. Its writes reach
// subscribers like any other.
func (s *Server) Resources() *resource.Service { return s.resources }

// Signals returns the signal service: triggers and handlers from Go.
func (s *Server) Signals() *signal.Service { return s.signals }

// Queue returns the durable job queues.
func (s *Server) Queue() *queue.Queue { return s.jobs }

// Registry returns the Prometheus registry behind /metrics, for embedding
// programs that add their own collectors.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// Listen binds the configured address (port 0 picks a free port).
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	s.ln = s.gate.listener(ln)
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Run serves until ctx ends, then shuts down within the configured
// shutdown timeout. It returns nil after a shutdown, including one that
// had to close connections that did not finish in time: clients cannot
// make a shutdown fail.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.log.Info("serving", "addr", s.Addr().String(), "data_dir", s.cfg.DataDir, "store", s.cfg.Store.Driver, "broker", s.cfg.Broker.Driver)
	// Not ctx: River cancels running jobs when its start context ends;
	// Shutdown drains them with Stop instead.
	if err := s.jobs.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if s.follow != nil {
		fctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		s.mu.Lock()
		s.stopFollow, s.followDone = stop, make(chan struct{})
		s.mu.Unlock()
		go func() {
			defer close(s.followDone)
			s.follow(fctx)
		}()
	}
	if d := time.Duration(s.cfg.Limits.IdleRelease); d > 0 {
		rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		s.mu.Lock()
		s.stopRelease, s.releaseDone = stop, done
		s.mu.Unlock()
		since := s.engine.Stats().Accepted
		go func() {
			defer close(done)
			releaseAfterBursts(rctx, d, releaseBurst, since, s.engine, s.log)
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.ln) }()
	// Answered Channelstream long-polls come back through Handback to be
	// served like any keep-alive connection; Shutdown closes it.
	var handback sync.WaitGroup
	if s.channelstream != nil {
		handback.Go(func() { s.http.Serve(s.channelstream.Handback()) })
	}
	defer func() {
		if s.channelstream != nil {
			s.channelstream.Handback().Close()
		}
		handback.Wait()
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.cfg.Limits.ShutdownTimeout))
	defer cancel()
	err := s.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Shutdown stops accepting connections, closes WebSockets with 1001
// ("going away"), waits for requests in flight, and releases everything.
// The graceful part ends a little before ctx does (a tenth of the time
// left, at most a second, is kept for the rest): whatever is still open
// then (a client trickling a body, a socket that never answers its close
// frame) is closed. Such a forced close is logged, not returned: only a
// failure to release the store or the broker is an error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.log.Info("shutting down", "connections", s.engine.Len(), "http_connections", s.gate.http.Load())
	gctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		margin := min(time.Until(dl)/10, time.Second)
		var cancel context.CancelFunc
		gctx, cancel = context.WithDeadline(ctx, dl.Add(-margin))
		defer cancel()
	}
	if s.channelstream != nil {
		s.channelstream.Close() // parked long-polls answer now
	}
	if s.dashboard != nil {
		s.dashboard.Close() // its live streams end now
	}
	var wg sync.WaitGroup
	var httpErr, wsErr, jobsErr error
	wg.Go(func() { httpErr = s.http.Shutdown(gctx) })
	wg.Go(func() { wsErr = s.engine.Shutdown(gctx) })
	// Running jobs may finish within the same deadline; the others stay
	// queued for the next start.
	wg.Go(func() { jobsErr = s.jobs.Stop(gctx) })
	wg.Wait()
	if jobsErr != nil {
		s.log.Warn("shutdown timeout reached with jobs running: they run again after the next start", "err", jobsErr)
	}
	if httpErr != nil || wsErr != nil {
		s.log.Warn("shutdown timeout reached: closing what is left", "http_connections", s.gate.http.Load(), "http_err", httpErr, "websocket_err", wsErr)
		s.http.Close()
	}
	// Handlers ended by the close return at once; wait for them so that
	// nothing uses the store after it is closed.
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("shutdown: HTTP handlers still running at the deadline")
	}
	s.gate.close()
	if s.proxy != nil {
		s.proxy.Close() // its refresh calls
	}
	s.mu.Lock()
	stopFollow, followDone := s.stopFollow, s.followDone
	stopRelease, releaseDone := s.stopRelease, s.releaseDone
	s.mu.Unlock()
	if stopFollow != nil {
		stopFollow()
		<-followDone
	}
	if stopRelease != nil {
		stopRelease()
		<-releaseDone
	}
	s.hub.Close()
	// The broker, the node and the store get their own second: a graceful part that
	// used up ctx must not turn their release into a failure.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	s.node.Stop(cctx)
	brokerErr := s.broker.Close(cctx)
	dbErr := s.db.Close()
	if err := errors.Join(brokerErr, dbErr); err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	s.log.Info("stopped")
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 once every check passes, 503 with the failures
// otherwise (and while draining).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	result := map[string]string{}
	ok := !s.draining.Load()
	if !ok {
		result["server"] = "shutting down"
	}
	for _, c := range s.checks {
		if err := c.Func(ctx); err != nil {
			ok = false
			result[c.Name] = err.Error()
			s.log.Warn("readiness check failed", "check", c.Name, "err", err)
		} else {
			result[c.Name] = "ok"
		}
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ok, "checks": result})
}

// newWriteGroup is the hub's writer workers' io_uring ring (ws.WriteRing),
// unless limits.io_uring is off.
func newWriteGroup(mode string) func(size int) (hub.WriteGroup, error) {
	if mode == "off" {
		return nil
	}
	return func(size int) (hub.WriteGroup, error) {
		r, err := ws.NewWriteRing(size)
		if err != nil {
			return nil, fmt.Errorf("io_uring is not available (limits.io_uring): %w", err)
		}
		return r, nil
	}
}
