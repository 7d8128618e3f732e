package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/testenv"
)

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// An unreachable Redis or PostgreSQL at start fails New after the
// configured connect timeout, with a message naming the address; never
// a hang.
func TestUnreachableAtStart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*config.Config, string)
	}{
		{"redis", func(c *config.Config, addr string) {
			c.Broker.Driver, c.Broker.URL, c.Broker.ConnectTimeout = "redis", config.Secret("redis://"+addr+"/0"), config.Duration(300*time.Millisecond)
		}},
		{"postgres", func(c *config.Config, addr string) {
			c.Store.Driver, c.Store.URL, c.Store.ConnectTimeout = "postgres", config.Secret("postgres://postgres@"+addr+"/test?sslmode=disable"), config.Duration(300*time.Millisecond)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := closedAddr(t)
			cfg := config.Default()
			cfg.DataDir = t.TempDir()
			tc.mutate(&cfg, addr)
			start := time.Now()
			_, err := New(cfg, Options{})
			if err == nil || !strings.Contains(err.Error(), addr) {
				t.Fatalf("New: %v, want an error naming %s", err, addr)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("New took %s with a 300ms connect timeout", d)
			}
		})
	}
}

// clusterConfig points a config at the test Redis and PostgreSQL, under a
// prefix and a schema of the test's own.
func clusterConfig(t *testing.T, prefix, pgURL string) func(*config.Config) {
	redisURL := testenv.RedisURL(t)
	return func(c *config.Config) {
		c.Broker.Driver, c.Broker.URL, c.Broker.Prefix = "redis", config.Secret(redisURL), prefix
		c.Store.Driver, c.Store.URL = "postgres", config.Secret(pgURL)
	}
}

// With Redis and PostgreSQL the server is ready, and /readyz checks both.
func TestReadyWithRedisAndPostgres(t *testing.T) {
	prefix, pg := testenv.RedisPrefix(t), testenv.PostgresSchema(t)
	base, _ := start(t, clusterConfig(t, prefix, pg), Options{})
	code, body := get(t, base+"/readyz")
	var r struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 200 || !r.Ready || r.Checks["store"] != "ok" || r.Checks["broker"] != "ok" {
		t.Fatalf("readyz %d %s", code, body)
	}
	_ = context.Background
}

// Redis with SQLite starts, and says at once that data and jobs stay per
// process; Redis with PostgreSQL does not say it.
func TestRedisWithSQLiteWarnsDataIsPerProcess(t *testing.T) {
	const warning = "broker: redis with store: sqlite"
	for _, tc := range []struct {
		store string
		warn  bool
	}{{config.StoreSQLite, true}, {config.StorePostgres, false}} {
		t.Run(tc.store, func(t *testing.T) {
			prefix := testenv.RedisPrefix(t)
			mutate := func(c *config.Config) {
				c.Broker.Driver, c.Broker.URL, c.Broker.Prefix = "redis", config.Secret(testenv.RedisURL(t)), prefix
			}
			if tc.store == config.StorePostgres {
				mutate = clusterConfig(t, prefix, testenv.PostgresSchema(t))
			}
			logged := startupLog(t, mutate)
			if got := strings.Contains(logged, warning); got != tc.warn {
				t.Fatalf("warning logged = %v, want %v; log:\n%s", got, tc.warn, logged)
			}
		})
	}
}

// The memory broker with PostgreSQL starts, and says that it is one
// process's setup; with Redis it does not say it.
func TestMemoryBrokerWithPostgresSaysOneProcess(t *testing.T) {
	const line = "broker: memory with store: postgres runs as one process"
	for _, tc := range []struct {
		broker string
		say    bool
	}{{config.BrokerMemory, true}, {config.BrokerRedis, false}} {
		t.Run(tc.broker, func(t *testing.T) {
			pg := testenv.PostgresSchema(t)
			mutate := func(c *config.Config) { c.Store.Driver, c.Store.URL = "postgres", config.Secret(pg) }
			if tc.broker == config.BrokerRedis {
				mutate = clusterConfig(t, testenv.RedisPrefix(t), pg)
			}
			logged := startupLog(t, mutate)
			if got := strings.Contains(logged, line); got != tc.say {
				t.Fatalf("logged = %v, want %v; log:\n%s", got, tc.say, logged)
			}
		})
	}
}

// startupLog starts a server configured by mutate, stops it, and returns
// what it logged.
func startupLog(t *testing.T, mutate func(*config.Config)) string {
	t.Helper()
	var buf logBuffer
	_, stop := start(t, mutate, Options{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	buf.mu.Lock()
	defer buf.mu.Unlock()
	return buf.buf.String()
}
