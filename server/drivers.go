package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/switchyardhq/switchyard/broker"
	"github.com/switchyardhq/switchyard/broker/memory"
	redisbroker "github.com/switchyardhq/switchyard/broker/redis"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/signal/rediswindows"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/postgres"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

// Drivers lists the store and broker drivers this build serves; a
// configuration naming another is refused by CheckConfig (and so by New
// and `switchyard config check`).
var Drivers = struct{ Store, Broker []string }{
	Store:  []string{config.StoreSQLite, config.StorePostgres},
	Broker: []string{config.BrokerMemory, config.BrokerRedis},
}

// openStore opens the configured store. It is the only place in this
// package that names a store implementation. The store's Ping is the
// readiness check.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	switch cfg.Store.Driver {
	case config.StoreSQLite:
		db, err := sqlite.Open(ctx, sqlite.Config{
			Path:             filepath.Join(cfg.DataDir, "switchyard.db"),
			ChangeLogMaxAge:  cfg.Store.ChangeLog.MaxAge.Duration(),
			ChangeLogMaxRows: int64(cfg.Store.ChangeLog.MaxRows),
			Logger:           log,
		})
		if err != nil {
			return nil, fmt.Errorf("server: store: %w", err)
		}
		return db, nil
	case config.StorePostgres:
		db, err := postgres.Open(ctx, postgres.Config{
			URL:              string(cfg.Store.URL),
			MaxConns:         cfg.Store.MaxConnections,
			InsertBatch:      cfg.Store.InsertBatch,
			ConnectTimeout:   time.Duration(cfg.Store.ConnectTimeout),
			ChangeLogMaxAge:  cfg.Store.ChangeLog.MaxAge.Duration(),
			ChangeLogMaxRows: int64(cfg.Store.ChangeLog.MaxRows),
			Logger:           log.With("store", "postgres"),
		})
		if err != nil {
			return nil, fmt.Errorf("server: store: %w", err)
		}
		return db, nil
	}
	return nil, fmt.Errorf("server: store driver %q is not available in this build (%v are)", cfg.Store.Driver, Drivers.Store)
}

// openQueue opens the durable job queues where the store keeps its data:
// in the PostgreSQL database of the store (its pool, its schema), shared
// by every process, or in <data_dir>/queue.db beside the SQLite store
// (docs/ARCHITECTURE.md says why not in the store's file). Workers start
// with Run.
func openQueue(ctx context.Context, cfg config.Config, db store.Store, log *slog.Logger) (*queue.Queue, error) {
	qc := queue.Config{Queues: cfg.Queues, Logger: log}
	if pg, ok := db.(*postgres.DB); ok {
		qc.Driver, qc.Pool = queue.DriverPostgres, pg.Pool()
	} else {
		qc.Driver, qc.Path = queue.DriverSQLite, filepath.Join(cfg.DataDir, "queue.db")
	}
	q, err := queue.Open(ctx, qc)
	if err != nil {
		return nil, fmt.Errorf("server: queues: %w", err)
	}
	return q, nil
}

// brokerDriver is what the hub needs from a broker implementation.
type brokerDriver interface {
	broker.Broker
	broker.PresenceManager
}

// pinger is a broker that can check its connection (readiness).
type pinger interface {
	Ping(ctx context.Context) error
}

// openBroker builds the configured broker. It is the only place in this
// package that names a broker implementation.
func openBroker(ctx context.Context, cfg config.Config, log *slog.Logger) (brokerDriver, error) {
	switch cfg.Broker.Driver {
	case config.BrokerMemory:
		return memory.New(memory.Config{
			MaxHistoryBytes:         int64(cfg.Limits.MaxHistoryBytes),
			MaxChannelsPerNamespace: cfg.Limits.MaxChannelsPerNamespace,
			Logger:                  log,
		}), nil
	case config.BrokerRedis:
		b, err := redisbroker.New(ctx, redisbroker.Config{
			URL:            string(cfg.Broker.URL),
			Prefix:         cfg.Broker.Prefix,
			ConnectTimeout: time.Duration(cfg.Broker.ConnectTimeout),
			PubSubShards:   cfg.Broker.PubSubConnections,
			Logger:         log.With("broker", "redis"),
		})
		if err != nil {
			return nil, fmt.Errorf("server: broker: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("server: broker driver %q is not available in this build (%v are)", cfg.Broker.Driver, Drivers.Broker)
}

// sharedWindows returns the signal window store that every process of a
// shared broker (Redis) shares, or nil when the broker is this process's
// own (the signal service keeps its windows in memory then).
func sharedWindows(b brokerDriver) (signal.WindowStore, error) {
	rb, ok := b.(*redisbroker.Broker)
	if !ok {
		return nil, nil
	}
	w, err := rediswindows.New(rb.Client(), rb.Prefix())
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return w, nil
}

// brokerCheck is the broker's readiness check: its Ping, or nothing to
// check for a broker in this process's memory.
func brokerCheck(b broker.Broker) func(context.Context) error {
	if p, ok := b.(pinger); ok {
		return p.Ping
	}
	return func(context.Context) error { return nil }
}

// CheckTables checks the resources on existing tables against the
// database's catalog, creating nothing, as serve would at start (switchyard
// config check): a missing table, column or primary key, a declared type
// the column contradicts, an owner rule on a column the table lacks.
func CheckTables(ctx context.Context, cfg config.Config) error {
	_, err := ResolveTables(ctx, cfg)
	return err
}

// ResolveTables returns cfg with its resources on existing tables
// completed from the database's catalog (their fields, as serve serves
// them), creating nothing; a *config.Errors names each resource whose
// table does not fit.
func ResolveTables(ctx context.Context, cfg config.Config) (config.Config, error) {
	var names []string
	for _, r := range cfg.Resources {
		if r.External() {
			names = append(names, r.Table)
		}
	}
	if len(names) == 0 || cfg.Store.Driver != config.StorePostgres {
		return cfg, nil
	}
	cats, err := postgres.Inspect(ctx, postgres.Config{URL: string(cfg.Store.URL), ConnectTimeout: time.Duration(cfg.Store.ConnectTimeout)}, names)
	if err != nil {
		return cfg, fmt.Errorf("checking the existing tables: %w", err)
	}
	var errs config.Errors
	cfg.Resources = append([]config.Resource(nil), cfg.Resources...)
	for i, r := range cfg.Resources {
		if !r.External() {
			continue
		}
		cols, ok := cats[r.Table]
		if !ok {
			errs = append(errs, &config.Error{Key: "resources." + r.Name + ".table",
				Msg: fmt.Sprintf("table %s does not exist (or is not visible on the connection's search_path); Switchyard never creates an existing table's resource", r.Table)})
			continue
		}
		full, _, err := resource.FromCatalog(r, cols)
		if err == nil {
			_, err = resource.NewSchema(full)
		}
		if err != nil {
			errs = append(errs, &config.Error{Key: "resources." + r.Name + ".table", Msg: err.Error()})
			continue
		}
		cfg.Resources[i] = full
	}
	if len(errs) > 0 {
		return cfg, errs
	}
	return cfg, nil
}
