package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyardhq/switchyard/store"
)

// toDB converts a value for a column into what pgx sends.
func toDB(t *table, col string, v any) (any, error) {
	c, ok := t.Column(col)
	if !ok {
		return nil, &store.SchemaError{Table: t.Name, Column: col, Problem: "no such column"}
	}
	if v == nil {
		return nil, nil
	}
	bad := func() error {
		return &store.SchemaError{Table: t.Name, Column: col, Problem: fmt.Sprintf("a %s column cannot hold %T", c.Type, v)}
	}
	switch c.Type {
	case store.String, store.Text:
		if s, ok := v.(string); ok {
			if strings.IndexByte(s, 0) >= 0 {
				return nil, &store.SchemaError{Table: t.Name, Column: col, Problem: "text cannot contain NUL characters"}
			}
			return s, nil
		}
	case store.Int:
		switch n := v.(type) {
		case int64:
			return n, nil
		case int:
			return int64(n), nil
		}
	case store.Float:
		var f float64
		switch n := v.(type) {
		case float64:
			f = n
		case int64:
			f = float64(n)
		case int:
			f = float64(n)
		default:
			return nil, bad()
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, &store.SchemaError{Table: t.Name, Column: col, Problem: "not a finite number"}
		}
		return f, nil
	case store.Bool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case store.Datetime:
		if tm, ok := v.(time.Time); ok {
			return tm.UTC(), nil
		}
	case store.JSON:
		var j []byte
		switch x := v.(type) {
		case []byte:
			j = x
		case json.RawMessage:
			j = x
		default:
			return nil, bad()
		}
		if !json.Valid(j) {
			return nil, &store.SchemaError{Table: t.Name, Column: col, Problem: "not valid JSON"}
		}
		return string(j), nil
	}
	return nil, bad()
}

// decodeRow reads a row from row_to_json's output into column types.
func decodeRow(t *table, b []byte) (store.Row, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("store/postgres: row of %s: %w", t.Name, err)
	}
	row := store.Row{}
	for k, raw := range m {
		typ := store.Int
		if k == t.pkCol {
			k = "id"
		} else {
			if k == "id" {
				continue // a column "id" that is not the primary key is not served
			}
			c, ok := t.Column(k)
			if !ok {
				continue // a column dropped by hand since
			}
			typ = c.Type
		}
		if string(raw) == "null" {
			row[k] = nil
			continue
		}
		var v any
		var err error
		switch typ {
		case store.Int:
			var n int64
			err = json.Unmarshal(raw, &n)
			v = n
		case store.Float:
			var f float64
			err = json.Unmarshal(raw, &f)
			v = f
		case store.Bool:
			var bl bool
			err = json.Unmarshal(raw, &bl)
			v = bl
		case store.Datetime:
			var s string
			if err = json.Unmarshal(raw, &s); err == nil {
				var tm time.Time
				tm, err = parseTime(s)
				v = tm
			}
		case store.JSON:
			v = []byte(append([]byte(nil), raw...))
		default:
			if len(raw) > 0 && raw[0] != '"' {
				// A type served as its text whose JSON form is not a
				// string (numeric: 12.50, exactly as stored).
				v = string(raw)
				break
			}
			var s string
			err = json.Unmarshal(raw, &s)
			v = s
		}
		if err != nil {
			return nil, fmt.Errorf("store/postgres: row of %s, column %s: %w", t.Name, k, err)
		}
		row[k] = v
	}
	return row, nil
}

// parseTime reads a timestamptz as row_to_json writes it
// ("2026-11-23T12:00:00.123+00:00", the session in UTC).
func parseTime(s string) (time.Time, error) {
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		// Offsets may be written as +00 (no minutes).
		tm, err = time.Parse("2006-01-02T15:04:05.999999999Z07", s)
	}
	if err != nil {
		// A timestamp without time zone (an existing table's): UTC.
		tm, err = time.Parse("2006-01-02T15:04:05.999999999", s)
	}
	return tm.UTC(), err
}

// assignments validates a row against the schema and returns the
// column names and values, in a stable order.
func assignments(t *table, row store.Row) ([]string, []any, error) {
	names := make([]string, 0, len(row))
	for k := range row {
		if k == "id" {
			return nil, nil, &store.SchemaError{Table: t.Name, Column: "id", Problem: "the primary key is assigned by the store"}
		}
		names = append(names, k)
	}
	sort.Strings(names)
	cols := make([]string, len(names))
	args := make([]any, len(names))
	for i, k := range names {
		v, err := toDB(t, k, row[k])
		if err != nil {
			return nil, nil, err
		}
		cols[i], args[i] = k, v
	}
	return cols, args, nil
}

func param(i int) string { return "$" + strconv.Itoa(i) }

// logChange is the tail of every write statement: given a CTE "w" holding
// the written row, it increments the log's counter (locking its row until
// the commit) and records the change, returning the sequence number, the
// time and the row as JSON; the transaction commits without waiting for
// the flush (see flush). $1 is the table name, $2 the op.
//
// It also records the row's last change in _switchyard_row_seq and
// returns the one before (the change's Prev): an upsert sees the latest
// committed version of that entry even after waiting for another writer
// of the row, where a query in the statement would see its snapshot.
//
// It marks the transaction as Switchyard's (switchyard.origin), so that
// the capture triggers of existing tables (capture.go) do not record the
// write a second time.
const logChange = `,
	a AS (SELECT set_config('synchronous_commit', 'off', true), set_config('switchyard.origin', '1', true)),
	s AS (UPDATE _switchyard_log SET last = last + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM w) RETURNING last),
	p AS (INSERT INTO _switchyard_row_seq AS r (tbl, row_id, seq, prev) SELECT $1, w.id, s.last, 0 FROM w, s
		ON CONFLICT (tbl, row_id) DO UPDATE SET prev = r.seq, seq = excluded.seq RETURNING prev)
INSERT INTO _switchyard_changes (seq, tbl, row_id, op, row, at)
SELECT s.last, $1, w.id, $2, CASE WHEN $2 = 'delete' THEN NULL ELSE row_to_json(w) END, clock_timestamp() FROM w, s, a
RETURNING seq, row_id, at, (SELECT row_to_json(w) FROM w), (SELECT prev FROM p)`

// Insert adds a row; see store.Store. Outside a WriteTx, concurrent
// inserts into the table are combined (combine.go).
func (db *DB) Insert(ctx context.Context, table string, row store.Row) (store.Row, store.Change, error) {
	t, err := db.table(table)
	if err != nil {
		return nil, store.Change{}, err
	}
	cols, args, err := assignments(t, row)
	if err != nil {
		return nil, store.Change{}, err
	}
	if _, inTx := ctx.Value(txKey{}).(*txWrite); len(cols) > 0 && !inTx && db.cfg.InsertBatch > 1 {
		return db.insertCombined(ctx, t, cols, args)
	}
	return db.insertOne(ctx, t, cols, args)
}

// insertOne inserts one row with its own statement.
func (db *DB) insertOne(ctx context.Context, t *table, cols []string, args []any) (store.Row, store.Change, error) {
	ins := "INSERT INTO " + t.sql + " DEFAULT VALUES RETURNING *"
	if len(cols) > 0 {
		ps := make([]string, len(cols))
		qs := make([]string, len(cols))
		for i, c := range cols {
			ps[i] = t.placeholder(c, param(i+3))
			qs[i] = quote(c)
		}
		ins = "INSERT INTO " + t.sql + " (" + strings.Join(qs, ", ") + ") VALUES (" + strings.Join(ps, ", ") + ") RETURNING *"
	}
	return db.write(ctx, t, store.OpCreate, 0, "WITH w AS ("+ins+")"+t.logChange, args)
}

// Update sets columns of a row; see store.Store.
func (db *DB) Update(ctx context.Context, table string, id int64, set store.Row) (store.Row, store.Change, error) {
	t, err := db.table(table)
	if err != nil {
		return nil, store.Change{}, err
	}
	cols, args, err := assignments(t, set)
	if err != nil {
		return nil, store.Change{}, err
	}
	// An update without columns still records a change of the row (as
	// on SQLite): the row is locked and logged as it is.
	upd := "SELECT * FROM " + t.sql + " WHERE " + t.pk + " = $3 FOR UPDATE"
	if len(cols) > 0 {
		sets := make([]string, len(cols))
		for i, c := range cols {
			sets[i] = quote(c) + " = " + t.placeholder(c, param(i+4))
		}
		upd = "UPDATE " + t.sql + " SET " + strings.Join(sets, ", ") + " WHERE " + t.pk + " = $3 RETURNING *"
	}
	return db.write(ctx, t, store.OpUpdate, id, "WITH w AS ("+upd+")"+t.logChange, append([]any{id}, args...))
}

// Delete removes a row; see store.Store.
func (db *DB) Delete(ctx context.Context, table string, id int64) (store.Change, error) {
	t, err := db.table(table)
	if err != nil {
		return store.Change{}, err
	}
	_, ch, err := db.write(ctx, t, store.OpDelete, id, "WITH w AS (DELETE FROM "+t.sql+" WHERE "+t.pk+" = $3 RETURNING *)"+t.logChange, []any{id})
	return ch, err
}

// write runs one write statement (the row and its change record, one
// implicit transaction).
func (db *DB) write(ctx context.Context, t *table, op store.Op, id int64, q string, args []any) (store.Row, store.Change, error) {
	var (
		seq    int64
		rowID  int64
		at     time.Time
		rowRaw []byte
		prev   *int64
	)
	err := db.querier(ctx).QueryRow(ctx, q, append([]any{t.Name, string(op)}, args...)...).Scan(&seq, &rowID, &at, &rowRaw, &prev)
	if err != nil {
		return nil, store.Change{}, db.writeError(ctx, t, op, id, err)
	}
	var row store.Row
	if op != store.OpDelete {
		if row, err = decodeRow(t, rowRaw); err != nil {
			return nil, store.Change{}, err
		}
	}
	ch := store.Change{Seq: seq, Table: t.Name, ID: rowID, Op: op, Row: row, Time: at.UTC()}
	if prev != nil && op != store.OpCreate {
		ch.Prev = *prev
	}
	if _, inTx := ctx.Value(txKey{}).(*txWrite); !inTx {
		// Committed (not yet durable): the caller may let the next write
		// in while this one waits for the flush.
		if fn := store.Committed(ctx); fn != nil {
			fn(ch, false)
		}
	}
	if err := db.flush(ctx); err != nil {
		return nil, store.Change{}, db.fail(ctx, string(op)+" "+t.Name, err)
	}
	db.ok()
	return row, ch, nil
}

// writeError is what a write's failed statement returns: not found, a
// conflict, a value refused, or the database's failure.
func (db *DB) writeError(ctx context.Context, t *table, op store.Op, id int64, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		db.ok()
		return fmt.Errorf("%s %d: %w", t.Name, id, store.ErrNotFound)
	}
	if c := conflict(t, err); c != nil {
		db.ok()
		return c
	}
	if v := refused(t, err); v != nil {
		db.ok()
		return v
	}
	return db.fail(ctx, string(op)+" "+t.Name, err)
}

// flush makes every commit so far durable: a transaction that takes a
// transaction ID commits synchronously, flushing the WAL up to its commit
// record, which comes after the writes that returned before. Concurrent
// flushes are grouped by PostgreSQL.
func (db *DB) flush(ctx context.Context) error {
	_, err := db.pool.Exec(ctx, "SELECT pg_current_xact_id()")
	return err
}

// conflict returns a *store.ConflictError for a unique violation.
func conflict(t *table, err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		return nil
	}
	for _, c := range t.Columns {
		if c.Unique && pe.ConstraintName == uniqueIndex(t.Name, c.Name) {
			return &store.ConflictError{Table: t.Name, Column: c.Name}
		}
	}
	return &store.ConflictError{Table: t.Name, Column: pe.ConstraintName}
}

// refused returns a *store.SchemaError for a value the database refused:
// bad input for a column's type (an enum label, a uuid, a numeric), a
// NOT NULL, foreign key or check constraint of an existing table.
func refused(t *table, err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !(strings.HasPrefix(pe.Code, "22") || pe.Code == "23502" || pe.Code == "23503" || pe.Code == "23514") {
		return nil
	}
	return &store.SchemaError{Table: t.Name, Column: pe.ColumnName, Problem: pe.Message}
}

// rowQuery selects rows as JSON.
func rowQuery(t *table) string {
	return "SELECT row_to_json(r) FROM " + t.sql + " r"
}

// Get reads a row; see store.Store.
func (db *DB) Get(ctx context.Context, table string, id int64) (store.Row, error) {
	t, err := db.table(table)
	if err != nil {
		return nil, err
	}
	var raw []byte
	err = db.pool.QueryRow(ctx, rowQuery(t)+" WHERE "+t.pk+" = $1", id).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		db.ok()
		return nil, fmt.Errorf("%s %d: %w", table, id, store.ErrNotFound)
	}
	if err != nil {
		return nil, db.fail(ctx, "get "+table, err)
	}
	db.ok()
	return decodeRow(t, raw)
}

// List selects rows; see store.Store.
func (db *DB) List(ctx context.Context, table string, q store.Query) ([]store.Row, int, error) {
	t, err := db.table(table)
	if err != nil {
		return nil, 0, err
	}
	var where []string
	var args []any
	next := func(v any) string {
		args = append(args, v)
		return param(len(args))
	}
	for _, c := range q.Where {
		if c.Column == "id" {
			where = append(where, t.pk+" = "+next(c.Value))
			continue
		}
		v, err := toDB(t, c.Column, c.Value)
		if err != nil {
			return nil, 0, err
		}
		col, _ := t.Column(c.Column)
		switch {
		case v == nil:
			where = append(where, quote(c.Column)+" IS NULL")
		case col.Type == store.JSON:
			where = append(where, quote(c.Column)+"::text = "+next(v))
		default:
			where = append(where, quote(c.Column)+" = "+t.placeholder(c.Column, next(v)))
		}
	}
	if q.Search != "" && len(q.SearchColumns) > 0 {
		pattern := "%" + escapeLike(strings.ToLower(q.Search)) + "%"
		var ors []string
		for _, c := range q.SearchColumns {
			col, ok := t.Column(c)
			if !ok || (col.Type != store.String && col.Type != store.Text) {
				return nil, 0, &store.SchemaError{Table: t.Name, Column: c, Problem: "not a text column to search"}
			}
			ors = append(ors, "lower("+quote(c)+"::text) LIKE "+next(pattern)+` ESCAPE '\'`)
		}
		where = append(where, "("+strings.Join(ors, " OR ")+")")
	}
	clause := ""
	if len(where) > 0 {
		clause = " WHERE " + strings.Join(where, " AND ")
	}
	var order []string
	for _, o := range q.OrderBy {
		if _, ok := t.Column(o.Column); !ok && o.Column != "id" {
			return nil, 0, &store.SchemaError{Table: t.Name, Column: o.Column, Problem: "no such column to order by"}
		}
		dir := " ASC NULLS FIRST" // NULL sorts first, as on SQLite
		if o.Desc {
			dir = " DESC NULLS LAST"
		}
		col := quote(o.Column)
		if o.Column == "id" {
			col = t.pk
		}
		order = append(order, col+dir)
	}
	order = append(order, t.pk+" ASC") // a stable order for paging
	// One snapshot for the count and the page.
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, db.fail(ctx, "list "+table, err)
	}
	defer tx.Rollback(ctx)
	var total int
	if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM "+t.sql+clause, args...).Scan(&total); err != nil {
		return nil, 0, db.fail(ctx, "list "+table, err)
	}
	sqlq := "SELECT row_to_json(r) FROM (SELECT * FROM " + t.sql + clause + " ORDER BY " + strings.Join(order, ", ")
	if q.Limit > 0 {
		sqlq += " LIMIT " + next(int64(q.Limit))
	}
	if q.Offset > 0 {
		sqlq += " OFFSET " + next(int64(q.Offset))
	}
	sqlq += ") r"
	rows, err := tx.Query(ctx, sqlq, args...)
	if err != nil {
		return nil, 0, db.fail(ctx, "list "+table, err)
	}
	defer rows.Close()
	out := []store.Row{}
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, 0, db.fail(ctx, "list "+table, err)
		}
		r, err := decodeRow(t, raw)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, db.fail(ctx, "list "+table, err)
	}
	db.ok()
	return out, total, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// Changes reads the change log; see store.Store.
func (db *DB) Changes(ctx context.Context, after int64, limit int) ([]store.Change, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := db.pool.Query(ctx, "SELECT seq, tbl, "+changeColumns+" FROM _switchyard_changes WHERE seq > $1 ORDER BY seq LIMIT $2", after, limit)
	if err != nil {
		return nil, db.fail(ctx, "changes", err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		c, err := db.scanChange(rows, "")
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail(ctx, "changes", err)
	}
	db.ok()
	return out, nil
}

// changeColumns are what scanChange reads, after tbl.
const changeColumns = "row_id, op, row::text, at, before::text, captured, COALESCE(prev, 0)"

// scanChange reads seq, tbl, then changeColumns (tbl given when the query
// does not select it). A change of a table this store does not serve is
// an error wrapping store.ErrNotFound, with the change's Seq and Table.
func (db *DB) scanChange(rows pgx.Rows, table string) (store.Change, error) {
	var c store.Change
	var op string
	var raw, before *string
	var err error
	if table == "" {
		err = rows.Scan(&c.Seq, &c.Table, &c.ID, &op, &raw, &c.Time, &before, &c.Captured, &c.Prev)
	} else {
		c.Table = table
		err = rows.Scan(&c.Seq, &c.ID, &op, &raw, &c.Time, &before, &c.Captured, &c.Prev)
	}
	if err != nil {
		return c, fmt.Errorf("store/postgres: change log: %w", err)
	}
	c.Op = store.Op(op)
	c.Time = c.Time.UTC()
	if raw == nil && before == nil {
		return c, nil
	}
	t, err := db.table(c.Table)
	if err != nil {
		return c, err
	}
	if raw != nil {
		if c.Row, err = decodeRow(t, []byte(*raw)); err != nil {
			return c, err
		}
	}
	if before != nil {
		if c.Before, err = decodeRow(t, []byte(*before)); err != nil {
			return c, err
		}
	}
	return c, nil
}

// RowChanges reads a row and its changes from one snapshot; see
// store.Store.
func (db *DB) RowChanges(ctx context.Context, table string, id, after int64, limit int) (store.RowLog, error) {
	t, err := db.table(table)
	if err != nil {
		return store.RowLog{}, err
	}
	fail := func(err error) (store.RowLog, error) {
		return store.RowLog{}, db.fail(ctx, "row changes "+table, err)
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback(ctx)
	var out store.RowLog
	if err := tx.QueryRow(ctx, "SELECT l.last, t.trimmed FROM _switchyard_log l, _switchyard_trim t").Scan(&out.Last, &out.Trimmed); err != nil {
		return fail(err)
	}
	var raw []byte
	switch err := tx.QueryRow(ctx, rowQuery(t)+" WHERE "+t.pk+" = $1", id).Scan(&raw); {
	case err == nil:
		if out.Row, err = decodeRow(t, raw); err != nil {
			return store.RowLog{}, err
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return fail(err)
	}
	q := "SELECT seq, " + changeColumns + " FROM _switchyard_changes WHERE tbl = $1 AND row_id = $2 AND seq > $3 ORDER BY seq"
	qargs := []any{t.Name, id, after}
	if limit > 0 {
		q += " LIMIT $4"
		qargs = append(qargs, limit)
	}
	rows, err := tx.Query(ctx, q, qargs...)
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		c, err := db.scanChange(rows, t.Name)
		if err != nil {
			rows.Close()
			return store.RowLog{}, err
		}
		out.Changes = append(out.Changes, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if out.Row == nil {
		var last string
		err := tx.QueryRow(ctx, "SELECT row::text FROM _switchyard_changes WHERE tbl = $1 AND row_id = $2 AND row IS NOT NULL ORDER BY seq DESC LIMIT 1", t.Name, id).Scan(&last)
		switch {
		case err == nil:
			if out.LastRow, err = decodeRow(t, []byte(last)); err != nil {
				return store.RowLog{}, err
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return fail(err)
		}
	}
	db.ok()
	return out, nil
}

// TrimChanges drops the oldest changes and records how far; see
// store.Store.
func (db *DB) TrimChanges(ctx context.Context, upTo int64) error {
	_, err := db.trim(ctx, upTo)
	return err
}

// trim drops the changes with seq <= upTo (at most the last committed)
// and raises the trim mark, in one transaction; it returns how many
// changes it dropped.
func (db *DB) trim(ctx context.Context, upTo int64) (int64, error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return 0, db.fail(ctx, "trim changes", err)
	}
	defer tx.Rollback(ctx)
	var mark int64
	if err := tx.QueryRow(ctx, "UPDATE _switchyard_trim SET trimmed = GREATEST(trimmed, LEAST($1::bigint, (SELECT last FROM _switchyard_log))) WHERE id = 1 RETURNING trimmed", upTo).Scan(&mark); err != nil {
		return 0, db.fail(ctx, "trim changes", err)
	}
	tag, err := tx.Exec(ctx, "DELETE FROM _switchyard_changes WHERE seq <= $1", mark)
	if err != nil {
		return 0, db.fail(ctx, "trim changes", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, db.fail(ctx, "trim changes", err)
	}
	db.ok()
	return tag.RowsAffected(), nil
}

// Position returns the newest change's Seq; see store.Store.
func (db *DB) Position(ctx context.Context) (int64, error) {
	var last int64
	if err := db.pool.QueryRow(ctx, "SELECT last FROM _switchyard_log WHERE id = 1").Scan(&last); err != nil {
		return 0, db.fail(ctx, "position", err)
	}
	db.ok()
	return last, nil
}
