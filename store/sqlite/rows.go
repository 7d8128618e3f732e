package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard/store"
)

// Insert adds a row; see store.Store.
func (db *DB) Insert(ctx context.Context, table string, row store.Row) (store.Row, store.Change, error) {
	t, err := db.table(table)
	if err != nil {
		return nil, store.Change{}, err
	}
	cols, args, err := assignments(t, row)
	if err != nil {
		return nil, store.Change{}, err
	}
	q := "INSERT INTO " + quote(t.Name) + " DEFAULT VALUES RETURNING id"
	if len(cols) > 0 {
		q = "INSERT INTO " + quote(t.Name) + " (" + strings.Join(cols, ", ") + ") VALUES (" + placeholders(len(cols)) + ") RETURNING id"
	}
	return db.write(ctx, t, store.OpCreate, func(tx *sql.Tx) (int64, error) {
		var id int64
		err := tx.QueryRowContext(ctx, q, args...).Scan(&id)
		return id, err
	})
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
	return db.write(ctx, t, store.OpUpdate, func(tx *sql.Tx) (int64, error) {
		q := "SELECT id FROM " + quote(t.Name) + " WHERE id = ?"
		qargs := []any{id}
		if len(cols) > 0 {
			sets := make([]string, len(cols))
			for i, c := range cols {
				sets[i] = c + " = ?"
			}
			q = "UPDATE " + quote(t.Name) + " SET " + strings.Join(sets, ", ") + " WHERE id = ? RETURNING id"
			qargs = append(args, id)
		}
		var got int64
		err := tx.QueryRowContext(ctx, q, qargs...).Scan(&got)
		return got, err
	})
}

// Delete removes a row; see store.Store.
func (db *DB) Delete(ctx context.Context, table string, id int64) (store.Change, error) {
	t, err := db.table(table)
	if err != nil {
		return store.Change{}, err
	}
	_, ch, err := db.write(ctx, t, store.OpDelete, func(tx *sql.Tx) (int64, error) {
		var got int64
		err := tx.QueryRowContext(ctx, "DELETE FROM "+quote(t.Name)+" WHERE id = ? RETURNING id", id).Scan(&got)
		return got, err
	})
	return ch, err
}

// write runs one write and its change record in a transaction.
//
// It reports the commit (store.WithCommitted) before the next write of
// the store may begin, so the reports come in commit order.
func (db *DB) write(ctx context.Context, t *store.Table, op store.Op, do func(*sql.Tx) (int64, error)) (store.Row, store.Change, error) {
	select {
	case db.writing <- struct{}{}:
	case <-ctx.Done():
		return nil, store.Change{}, fmt.Errorf("store/sqlite: %s %s: %w", op, t.Name, ctx.Err())
	}
	defer func() { <-db.writing }()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, store.Change{}, fmt.Errorf("store/sqlite: %s %s: %w", op, t.Name, err)
	}
	defer tx.Rollback()
	id, err := do(tx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.Change{}, fmt.Errorf("%s %d: %w", t.Name, id, store.ErrNotFound)
	}
	if err != nil {
		if c := conflict(t, err); c != err {
			return nil, store.Change{}, c
		}
		return nil, store.Change{}, fmt.Errorf("store/sqlite: %s %s: %w", op, t.Name, err)
	}
	var row store.Row
	var rowJSON any
	if op != store.OpDelete {
		row, err = scanRow(t, tx.QueryRowContext(ctx, "SELECT "+columnList(t)+" FROM "+quote(t.Name)+" WHERE id = ?", id))
		if err != nil {
			return nil, store.Change{}, fmt.Errorf("store/sqlite: %s %s: %w", op, t.Name, err)
		}
		b, err := encodeRow(row)
		if err != nil {
			return nil, store.Change{}, err
		}
		rowJSON = string(b)
	}
	now := time.Now().UTC()
	var prev int64
	if op != store.OpCreate {
		err := tx.QueryRowContext(ctx, "SELECT seq FROM _switchyard_changes WHERE tbl = ? AND row_id = ? ORDER BY seq DESC LIMIT 1", t.Name, id).Scan(&prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, store.Change{}, fmt.Errorf("store/sqlite: change log: %w", err)
		}
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, "INSERT INTO _switchyard_changes (tbl, row_id, op, row, at) VALUES (?, ?, ?, ?, ?) RETURNING seq",
		t.Name, id, string(op), rowJSON, now.Format(time.RFC3339Nano)).Scan(&seq); err != nil {
		return nil, store.Change{}, fmt.Errorf("store/sqlite: change log: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, store.Change{}, fmt.Errorf("store/sqlite: commit: %w", err)
	}
	ch := store.Change{Seq: seq, Prev: prev, Table: t.Name, ID: id, Op: op, Row: row, Time: now}
	if fn := store.Committed(ctx); fn != nil {
		fn(ch, true)
	}
	return row, ch, nil
}

// Get reads a row; see store.Store.
func (db *DB) Get(ctx context.Context, table string, id int64) (store.Row, error) {
	t, err := db.table(table)
	if err != nil {
		return nil, err
	}
	row, err := scanRow(t, db.r.QueryRowContext(ctx, "SELECT "+columnList(t)+" FROM "+quote(t.Name)+" WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s %d: %w", table, id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: get %s: %w", table, err)
	}
	return row, nil
}

// List selects rows; see store.Store.
func (db *DB) List(ctx context.Context, table string, q store.Query) ([]store.Row, int, error) {
	t, err := db.table(table)
	if err != nil {
		return nil, 0, err
	}
	var where []string
	var args []any
	for _, c := range q.Where {
		if c.Column == "id" {
			where = append(where, "id = ?")
			args = append(args, c.Value)
			continue
		}
		v, err := toDB(t, c.Column, c.Value)
		if err != nil {
			return nil, 0, err
		}
		if v == nil {
			where = append(where, quote(c.Column)+" IS NULL")
			continue
		}
		where = append(where, quote(c.Column)+" = ?")
		args = append(args, v)
	}
	if q.Search != "" && len(q.SearchColumns) > 0 {
		pattern := "%" + escapeLike(strings.ToLower(q.Search)) + "%"
		var ors []string
		for _, c := range q.SearchColumns {
			col, ok := t.Column(c)
			if !ok || (col.Type != store.String && col.Type != store.Text) {
				return nil, 0, &store.SchemaError{Table: t.Name, Column: c, Problem: "not a text column to search"}
			}
			ors = append(ors, "lower("+quote(c)+") LIKE ? ESCAPE '\\'")
			args = append(args, pattern)
		}
		where = append(where, "("+strings.Join(ors, " OR ")+")")
	}
	clause := ""
	if len(where) > 0 {
		clause = " WHERE " + strings.Join(where, " AND ")
	}
	var total int
	if err := db.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+quote(t.Name)+clause, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store/sqlite: list %s: %w", table, err)
	}
	var order []string
	for _, o := range q.OrderBy {
		if _, ok := t.Column(o.Column); !ok && o.Column != "id" {
			return nil, 0, &store.SchemaError{Table: t.Name, Column: o.Column, Problem: "no such column to order by"}
		}
		dir := " ASC"
		if o.Desc {
			dir = " DESC"
		}
		order = append(order, quote(o.Column)+dir)
	}
	order = append(order, "id ASC") // a stable order for paging
	sqlq := "SELECT " + columnList(t) + " FROM " + quote(t.Name) + clause + " ORDER BY " + strings.Join(order, ", ")
	if q.Limit > 0 || q.Offset > 0 {
		limit := q.Limit
		if limit <= 0 {
			limit = -1
		}
		sqlq += " LIMIT ? OFFSET ?"
		args = append(args, limit, max(q.Offset, 0))
	}
	rows, err := db.r.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("store/sqlite: list %s: %w", table, err)
	}
	defer rows.Close()
	out := []store.Row{}
	for rows.Next() {
		r, err := scanRow(t, rows)
		if err != nil {
			return nil, 0, fmt.Errorf("store/sqlite: list %s: %w", table, err)
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}

// Changes reads the change log; see store.Store.
func (db *DB) Changes(ctx context.Context, after int64, limit int) ([]store.Change, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := db.r.QueryContext(ctx, "SELECT seq, tbl, row_id, op, row, at FROM _switchyard_changes WHERE seq > ? ORDER BY seq LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: changes: %w", err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var c store.Change
		var op, at string
		var raw sql.NullString
		if err := rows.Scan(&c.Seq, &c.Table, &c.ID, &op, &raw, &at); err != nil {
			return nil, fmt.Errorf("store/sqlite: changes: %w", err)
		}
		c.Op = store.Op(op)
		c.Time, _ = time.Parse(time.RFC3339Nano, at)
		if raw.Valid {
			t, err := db.table(c.Table)
			if err != nil {
				return nil, err
			}
			if c.Row, err = decodeRow(t, []byte(raw.String)); err != nil {
				return nil, err
			}
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// assignments validates a row against the schema and returns quoted
// column names and values, in a stable order.
func assignments(t *store.Table, row store.Row) ([]string, []any, error) {
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
		cols[i], args[i] = quote(k), v
	}
	return cols, args, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// encodeRow writes a row as JSON for the change log (JSON columns as
// values, times in RFC 3339).
func encodeRow(row store.Row) ([]byte, error) {
	m := make(map[string]any, len(row))
	for k, v := range row {
		if b, ok := v.([]byte); ok {
			v = json.RawMessage(b)
		}
		m[k] = v
	}
	return json.Marshal(m)
}

// decodeRow reads a change-log row back into column types.
func decodeRow(t *store.Table, b []byte) (store.Row, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("store/sqlite: change log row: %w", err)
	}
	row := store.Row{}
	for k, raw := range m {
		typ := store.Int
		if k != "id" {
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
			var tm time.Time
			err = json.Unmarshal(raw, &tm)
			v = tm
		case store.JSON:
			v = []byte(raw)
		default:
			var s string
			err = json.Unmarshal(raw, &s)
			v = s
		}
		if err != nil {
			return nil, fmt.Errorf("store/sqlite: change log row %s.%s: %w", t.Name, k, err)
		}
		row[k] = v
	}
	return row, nil
}

// RowChanges reads a row and its changes from one snapshot; see
// store.Store.
func (db *DB) RowChanges(ctx context.Context, table string, id, after int64, limit int) (store.RowLog, error) {
	t, err := db.table(table)
	if err != nil {
		return store.RowLog{}, err
	}
	fail := func(err error) (store.RowLog, error) {
		return store.RowLog{}, fmt.Errorf("store/sqlite: row changes %s: %w", table, err)
	}
	// A read-only transaction is a deferred BEGIN (never the write lock):
	// in WAL mode its statements read one snapshot.
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback()
	var out store.RowLog
	var oldest sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '_switchyard_changes'), 0), (SELECT min(seq) FROM _switchyard_changes)`).Scan(&out.Last, &oldest); err != nil {
		return fail(err)
	}
	out.Trimmed = out.Last // an empty log was trimmed of everything, if anything was written
	if oldest.Valid {
		out.Trimmed = oldest.Int64 - 1
	}
	row, err := scanRow(t, tx.QueryRowContext(ctx, "SELECT "+columnList(t)+" FROM "+quote(t.Name)+" WHERE id = ?", id))
	switch {
	case err == nil:
		out.Row = row
	case !errors.Is(err, sql.ErrNoRows):
		return fail(err)
	}
	if limit <= 0 {
		limit = -1
	}
	rows, err := tx.QueryContext(ctx, "SELECT seq, op, row, at FROM _switchyard_changes WHERE tbl = ? AND row_id = ? AND seq > ? ORDER BY seq LIMIT ?", t.Name, id, after, limit)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		c := store.Change{Table: t.Name, ID: id}
		var op, at string
		var raw sql.NullString
		if err := rows.Scan(&c.Seq, &op, &raw, &at); err != nil {
			return fail(err)
		}
		c.Op = store.Op(op)
		c.Time, _ = time.Parse(time.RFC3339Nano, at)
		if raw.Valid {
			if c.Row, err = decodeRow(t, []byte(raw.String)); err != nil {
				return store.RowLog{}, err
			}
		}
		out.Changes = append(out.Changes, c)
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if out.Row == nil {
		var raw string
		err := tx.QueryRowContext(ctx, "SELECT row FROM _switchyard_changes WHERE tbl = ? AND row_id = ? AND row IS NOT NULL ORDER BY seq DESC LIMIT 1", t.Name, id).Scan(&raw)
		switch {
		case err == nil:
			if out.LastRow, err = decodeRow(t, []byte(raw)); err != nil {
				return store.RowLog{}, err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return fail(err)
		}
	}
	return out, nil
}

// TrimChanges drops the oldest changes; see store.Store.
func (db *DB) TrimChanges(ctx context.Context, upTo int64) error {
	if _, err := db.w.ExecContext(ctx, "DELETE FROM _switchyard_changes WHERE seq <= ?", upTo); err != nil {
		return fmt.Errorf("store/sqlite: trim changes: %w", err)
	}
	return nil
}

// Position returns the newest change's Seq; see store.Store.
func (db *DB) Position(ctx context.Context) (int64, error) {
	var last int64
	if err := db.r.QueryRowContext(ctx, `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '_switchyard_changes'), 0)`).Scan(&last); err != nil {
		return 0, fmt.Errorf("store/sqlite: position: %w", err)
	}
	return last, nil
}
