package stmtcache

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"testing"

	"modernc.org/sqlite"
)

// open opens a SQLite file through Wrap with one connection, so every
// statement goes through the same cache.
func open(t testing.TB, size int) *sql.DB {
	t.Helper()
	c, err := sqlite.NewConnector("file:" + filepath.Join(t.TempDir(), "t.db") + "?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(Wrap(c, size))
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return db
}

// cached returns the queries cached on db's one connection.
func cached(t *testing.T, db *sql.DB) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	dc, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	dc.Raw(func(raw any) error {
		for q := range raw.(*conn).byQuery {
			out[q] = true
		}
		return nil
	})
	return out
}

func TestCachedStatementsGiveTheSameResults(t *testing.T) {
	db := open(t, 0)
	const ins = "INSERT INTO kv (k, v) VALUES (?, ?)"
	const sel = "SELECT v FROM kv WHERE k = ?"
	for i := range 100 {
		res, err := db.Exec(ins, i, "v"+string(rune('a'+i%26)))
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("insert %d affected %d rows", i, n)
		}
	}
	for i := range 100 {
		var v string
		if err := db.QueryRow(sel, i).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if want := "v" + string(rune('a'+i%26)); v != want {
			t.Fatalf("k %d: got %q, want %q (a reused statement kept an old binding?)", i, v, want)
		}
	}
	if err := db.QueryRow(sel, 1000).Scan(new(string)); err != sql.ErrNoRows {
		t.Fatalf("missing key: err %v, want sql.ErrNoRows", err)
	}
	// A failed statement leaves the cached one usable.
	if _, err := db.Exec(ins, 1, "dup"); err == nil {
		t.Fatal("duplicate key inserted")
	}
	if _, err := db.Exec(ins, 100, "after"); err != nil {
		t.Fatalf("insert after a failed one: %v", err)
	}
	c := cached(t, db)
	if !c[ins] || !c[sel] {
		t.Fatalf("statements not cached: %v", c)
	}
}

func TestSameQueryInsideItsOwnRows(t *testing.T) {
	db := open(t, 0)
	for i := range 5 {
		db.Exec("INSERT INTO kv (k, v) VALUES (?, 'x')", i)
	}
	const q = "SELECT k FROM kv WHERE k >= ? ORDER BY k"
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	outer, err := tx.Query(q, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for outer.Next() {
		var k int
		outer.Scan(&k)
		got = append(got, k)
		// The same text while the outer rows are open: a statement of its
		// own, not the busy cached one (which would restart the outer).
		var n int
		if err := tx.QueryRow("SELECT count(*) FROM ("+q+")", k).Scan(&n); err != nil {
			t.Fatal(err)
		}
		inner, err := tx.Query(q, k)
		if err != nil {
			t.Fatal(err)
		}
		m := 0
		for inner.Next() {
			m++
		}
		inner.Close()
		if m != 5-k || n != m {
			t.Fatalf("inner query from %d: %d rows (count %d), want %d", k, m, n, 5-k)
		}
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	if len(got) != 5 || got[4] != 4 {
		t.Fatalf("outer rows %v, want 0..4 once each", got)
	}
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	db := open(t, 2)
	qs := []string{"SELECT 1", "SELECT 2", "SELECT 3"}
	for _, q := range qs {
		if err := db.QueryRow(q).Scan(new(int)); err != nil {
			t.Fatal(err)
		}
	}
	c := cached(t, db)
	if len(c) != 2 || c["SELECT 1"] || !c["SELECT 2"] || !c["SELECT 3"] {
		t.Fatalf("cache %v, want SELECT 2 and SELECT 3 only", c)
	}
	// A statement dropped while its rows are open is closed with them.
	rows, err := db.Query("SELECT k FROM kv")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, q := range qs {
		if err := db.QueryRow(q).Scan(new(int)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSchemaChangeReprepares(t *testing.T) {
	db := open(t, 0)
	const sel = "SELECT * FROM kv WHERE k = 1"
	db.Exec("INSERT INTO kv (k, v) VALUES (1, 'a')")
	rows, err := db.Query(sel)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	rows.Close()
	if len(cols) != 2 {
		t.Fatalf("columns %v", cols)
	}
	if _, err := db.Exec("ALTER TABLE kv ADD COLUMN w TEXT NOT NULL DEFAULT 'z'"); err != nil {
		t.Fatal(err)
	}
	var k int
	var v, w string
	if err := db.QueryRow(sel).Scan(&k, &v, &w); err != nil {
		t.Fatalf("cached statement after ALTER TABLE: %v", err)
	}
	if w != "z" {
		t.Fatalf("new column %q, want z", w)
	}
}

// BenchmarkQuery runs a River-sized query (the shape of its job fetch's
// RETURNING list) with and without the cache: the parse is what the
// cache saves.
func BenchmarkQuery(b *testing.B) {
	const q = `SELECT k,
		cast(CASE WHEN typeof(v) = 'text' AND NOT json_valid(v) THEN v ELSE json(v) END AS blob) AS a,
		cast(CASE WHEN typeof(v) = 'text' AND NOT json_valid(v) THEN v ELSE json(v) END AS blob) AS b,
		cast(CASE WHEN typeof(v) = 'text' AND NOT json_valid(v) THEN v ELSE json(v) END AS blob) AS c,
		coalesce(cast(?2 AS text), datetime('now', 'subsec')) AS d
		FROM kv WHERE k IN (SELECT k FROM kv WHERE k >= ?1 AND v IS NOT NULL ORDER BY k LIMIT 1)`
	for _, bc := range []struct {
		name string
		wrap bool
	}{{"uncached", false}, {"cached", true}} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := sqlite.NewConnector("file:" + filepath.Join(b.TempDir(), "t.db") + "?_pragma=journal_mode(WAL)")
			if err != nil {
				b.Fatal(err)
			}
			if bc.wrap {
				c = Wrap(c, 0)
			}
			db := sql.OpenDB(c)
			defer db.Close()
			db.SetMaxOpenConns(1)
			db.Exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
			for i := range 1000 {
				db.Exec("INSERT INTO kv (k, v) VALUES (?, ?)", i, `{"n":`+strconv.Itoa(i)+`}`)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var k int
				var x, y, z []byte
				var d string
				if err := db.QueryRow(q, i%1000, nil).Scan(&k, &x, &y, &z, &d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
