// Package testenv gives tests the services of the machine they run on:
// the Redis and PostgreSQL that service-backed tests use, named by
// SWITCHYARD_TEST_REDIS (host:port) and SWITCHYARD_TEST_POSTGRES (a
// postgres:// URL). Without the variable a test is skipped, visibly;
// under CI (the CI variable set) it fails instead, so a missing service
// never passes for a green run.
package testenv

import (
	"crypto/rand"
	"os"
	"strings"
	"testing"
)

// Redis returns the address of the test Redis (host:port), or skips t.
func Redis(t testing.TB) string {
	t.Helper()
	return need(t, "SWITCHYARD_TEST_REDIS", "a Redis host:port")
}

// RedisURL returns the test Redis as a redis:// URL, or skips t.
func RedisURL(t testing.TB) string {
	t.Helper()
	addr := Redis(t)
	if strings.Contains(addr, "://") {
		return addr
	}
	return "redis://" + addr + "/0"
}

// Postgres returns the URL of the test PostgreSQL database, or skips t.
func Postgres(t testing.TB) string {
	t.Helper()
	return need(t, "SWITCHYARD_TEST_POSTGRES", "a postgres:// URL")
}

func need(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not set (%s): under CI this test must run", name, what)
	}
	t.Skipf("%s is not set (%s): skipping a service-backed test", name, what)
	return ""
}

// Prefix returns a name unique to this run and test, for a Redis key
// prefix or a PostgreSQL schema: lower-case letters, digits and
// underscores, starting with a letter.
func Prefix(t testing.TB) string {
	t.Helper()
	return "sytest_" + strings.ToLower(rand.Text()[:12])
}
