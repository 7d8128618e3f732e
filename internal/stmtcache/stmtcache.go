// Package stmtcache keeps prepared statements per database/sql connection,
// for drivers that parse every Exec and Query that is not prepared.
//
// River's SQLite driver runs its queries (a few hundred bytes of SQL
// each) through ExecContext and QueryContext, and modernc.org/sqlite
// parses each one again: a CPU profile of the queue at 1,000 jobs/s spent
// 45% of its time in SQLite's parser (docs/BENCHMARKS.md, "Signals"). A
// Connector from Wrap gives each connection a cache of up to Size
// prepared statements by query text, so a query is parsed once per
// connection. SQLite re-prepares a cached statement by itself when the
// schema changed (sqlite3_prepare_v2).
//
// # Concurrency
//
// database/sql uses a driver connection from one goroutine at a time
// (rows are closed under the same lock), which is all a cached statement
// needs. A query whose cached statement still has open rows (a second
// query of the same text inside a loop over the first one's rows) runs
// uncached.
package stmtcache

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
)

// DefaultSize is the statements kept per connection when Wrap is given 0.
const DefaultSize = 128

// The driver's connection must run queries with a context and prepare
// statements that do too.
type fullConn interface {
	driver.Conn
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.ExecerContext
	driver.QueryerContext
}

type fullStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// ErrUnsupported is returned by Connect for a driver connection that
// cannot prepare statements with a context.
var ErrUnsupported = errors.New("stmtcache: the driver's connection lacks context-aware prepare, exec or query")

// Wrap returns a Connector whose connections keep up to size prepared
// statements (0: DefaultSize), least recently used dropped first.
func Wrap(c driver.Connector, size int) driver.Connector {
	if size <= 0 {
		size = DefaultSize
	}
	return &connector{Connector: c, size: size}
}

type connector struct {
	driver.Connector
	size int
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	fc, ok := dc.(fullConn)
	if !ok {
		dc.Close()
		return nil, ErrUnsupported
	}
	return &conn{fullConn: fc, size: c.size, byQuery: map[string]*list.Element{}, lru: list.New()}, nil
}

// conn is a driver connection with its statement cache.
type conn struct {
	fullConn
	size    int
	byQuery map[string]*list.Element // of *entry
	lru     *list.List               // front: most recently used
}

type entry struct {
	query string
	stmt  fullStmt
	busy  bool // rows of it are open
}

var (
	_ driver.SessionResetter = (*conn)(nil)
	_ driver.Validator       = (*conn)(nil)
)

// stmt returns the cached statement of query, preparing it on a miss;
// nil when it is busy.
func (c *conn) stmt(ctx context.Context, query string) (*entry, error) {
	if el, ok := c.byQuery[query]; ok {
		e := el.Value.(*entry)
		if e.busy {
			return nil, nil
		}
		c.lru.MoveToFront(el)
		return e, nil
	}
	ds, err := c.fullConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s, ok := ds.(fullStmt)
	if !ok {
		ds.Close()
		return nil, ErrUnsupported
	}
	e := &entry{query: query, stmt: s}
	c.byQuery[query] = c.lru.PushFront(e)
	for c.lru.Len() > c.size {
		c.drop(c.lru.Back())
	}
	return e, nil
}

// drop removes an entry; a busy one is closed when its rows are.
func (c *conn) drop(el *list.Element) {
	e := el.Value.(*entry)
	c.lru.Remove(el)
	delete(c.byQuery, e.query)
	if !e.busy {
		e.stmt.Close()
	}
}

// ExecContext runs query with its cached statement.
func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return c.fullConn.ExecContext(ctx, query, args)
	}
	return e.stmt.ExecContext(ctx, args)
}

// QueryContext runs query with its cached statement; the statement is
// busy until the rows are closed.
func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	e, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return c.fullConn.QueryContext(ctx, query, args)
	}
	r, err := e.stmt.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	e.busy = true
	return &rows{Rows: r, release: func() {
		e.busy = false
		if _, cached := c.byQuery[e.query]; !cached {
			e.stmt.Close() // dropped while busy
		}
	}}, nil
}

// Close closes the cached statements, then the connection.
func (c *conn) Close() error {
	for el := c.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		if !e.busy {
			e.stmt.Close()
		}
	}
	c.lru.Init()
	clear(c.byQuery)
	return c.fullConn.Close()
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.fullConn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	if v, ok := c.fullConn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// rows releases its statement on Close and passes the column type
// interfaces of the driver's rows through.
type rows struct {
	driver.Rows
	release func()
}

var (
	_ driver.RowsColumnTypeDatabaseTypeName = (*rows)(nil)
	_ driver.RowsColumnTypeLength           = (*rows)(nil)
	_ driver.RowsColumnTypeNullable         = (*rows)(nil)
	_ driver.RowsColumnTypePrecisionScale   = (*rows)(nil)
	_ driver.RowsColumnTypeScanType         = (*rows)(nil)
	_ driver.RowsNextResultSet              = (*rows)(nil)
)

func (r *rows) Close() error {
	err := r.Rows.Close()
	if r.release != nil {
		r.release()
		r.release = nil
	}
	return err
}

func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *rows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *rows) ColumnTypeNullable(i int) (bool, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *rows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *rows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *rows) HasNextResultSet() bool {
	if t, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return t.HasNextResultSet()
	}
	return false
}

func (r *rows) NextResultSet() error {
	if t, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return t.NextResultSet()
	}
	return io.EOF
}
