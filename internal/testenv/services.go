package testenv

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/rueidis"
)

// PostgresSchema creates a schema of its own for t in the test database
// and returns a URL whose search_path is it. The schema, and only it, is
// dropped when t ends.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	base := Postgres(t)
	schema := Prefix(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA "`+schema+`"`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), `DROP SCHEMA "`+schema+`" CASCADE`); err != nil {
			t.Error(err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// RedisPrefix returns a key prefix of its own for t; the keys under it,
// and only those, are deleted when t ends.
func RedisPrefix(t testing.TB) string {
	t.Helper()
	u := RedisURL(t)
	prefix := Prefix(t)
	t.Cleanup(func() { DeleteRedisPrefix(t, u, prefix) })
	return prefix
}

// DeleteRedisPrefix deletes the keys under prefix ("<prefix>:*").
func DeleteRedisPrefix(t testing.TB, u, prefix string) {
	if !strings.HasPrefix(prefix, "sytest_") {
		t.Errorf("refusing to delete keys of prefix %q: not a test prefix", prefix)
		return
	}
	c := RedisClient(t)
	ctx := context.Background()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+":*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Error(err)
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

// RedisClient returns a client of the test Redis, closed when t ends,
// for what a test does behind the server's back (CLIENT KILL, reading a
// key).
func RedisClient(t testing.TB) rueidis.Client {
	t.Helper()
	opt, err := rueidis.ParseURL(RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
