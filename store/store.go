// Package store is the contract between resources and the databases that
// keep them: the embedded SQLite (store/sqlite) and PostgreSQL for
// clusters (next). Every implementation passes the suite in
// store/storetest.
//
// A store keeps tables of rows with an integer primary key "id" assigned
// on insert, and a change log written in the same transaction as each
// write, so a change that committed is never lost and none is recorded
// that did not commit. Column names and types come from the schema given
// to Migrate; a query naming anything else is refused before any SQL is
// built.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Column types.
const (
	String   = "string"
	Text     = "text"
	Int      = "int"
	Float    = "float"
	Bool     = "bool"
	Datetime = "datetime"
	JSON     = "json"
)

// Column is a declared column.
type Column struct {
	Name   string
	Type   string
	Unique bool
}

// Table is a declared table; its primary key is "id" (integer, assigned).
type Table struct {
	Name    string
	Columns []Column
	// Source, when set, is an existing table the resource serves (a
	// PostgreSQL table an app owns, optionally schema-qualified): the
	// store never creates, alters or drops it, reads its columns and
	// primary key from the catalog, and keeps Name for the change log.
	// Its primary key is a single integer column, seen as "id" in rows.
	Source string
}

// Column returns the named column.
func (t *Table) Column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Row holds column values: int64, float64, string, bool, time.Time,
// []byte (JSON text) or nil. "id" is the primary key.
type Row map[string]any

// Op is what a change did.
type Op string

// Change operations.
const (
	OpCreate Op = "create"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
)

// Change is one committed write, in the order of the change log.
type Change struct {
	Seq int64 // increases with every change across the whole store, in commit order
	// Prev is the Seq of the row's previous change (0 for its first
	// change, or when the log no longer holds the previous one): it lets a
	// reader of the changes of one row, which may receive them out of order
	// (several processes publishing), tell a gap from the next change.
	Prev  int64
	Table string
	ID    int64
	Op    Op
	Row   Row // the row after the change; nil for a delete
	Time  time.Time
	// Before is the row before an update or delete, for changes another
	// program made (captured by a trigger); nil otherwise.
	Before Row
	// Captured marks a change made by another program and recorded by a
	// capture trigger (not by a write through the store).
	Captured bool
}

// RowLog is what the store holds about one row, read from one snapshot:
// every change of the row with a Seq in (after, Last] is either in Changes
// or was dropped by trimming (after < Trimmed), and Row is the row as the
// change at Last left it.
type RowLog struct {
	// Changes are the row's changes after the position asked, oldest
	// first.
	Changes []Change
	// Row is the row as it is; nil when it does not exist.
	Row Row
	// LastRow, when Row is nil, is the row as the newest change that had
	// one (a create or an update) left it: for a deleted row, what it
	// held before the delete. Nil when the log keeps no such change.
	LastRow Row
	// Last is the Seq of the newest change the store committed (0: none
	// yet); trimming does not lower it.
	Last int64
	// Trimmed is the Seq up to which the log was trimmed: it keeps every
	// change after it (0: nothing was dropped).
	Trimmed int64
}

// Cond is an equality condition on a column (a nil Value matches NULL).
type Cond struct {
	Column string
	Value  any
}

// Order sorts by a column ("id" included).
type Order struct {
	Column string
	Desc   bool
}

// Query selects rows. Search matches rows where any SearchColumns contains
// Search (case-insensitive); Limit 0 means no limit.
type Query struct {
	Where         []Cond
	Search        string
	SearchColumns []string
	OrderBy       []Order
	Limit, Offset int
}

// Store keeps resources.
//
// Writes are serialised and each is one transaction with its change
// record. Reads never block writes. Errors: ErrNotFound for a missing row
// or table, *ConflictError for a unique violation, *SchemaError for a
// query or row naming what the schema lacks, *MigrationError for a
// schema change that would lose data.
type Store interface {
	// Migrate creates missing tables and adds missing columns; it refuses
	// changes that would lose or reinterpret data (a removed column, a
	// changed type) with a *MigrationError saying what and how.
	Migrate(ctx context.Context, tables []Table) error
	Insert(ctx context.Context, table string, row Row) (Row, Change, error)
	// Update sets the columns present in set and returns the whole row.
	Update(ctx context.Context, table string, id int64, set Row) (Row, Change, error)
	Delete(ctx context.Context, table string, id int64) (Change, error)
	Get(ctx context.Context, table string, id int64) (Row, error)
	// List returns the selected rows and how many match without
	// Limit/Offset.
	List(ctx context.Context, table string, q Query) ([]Row, int, error)
	// Changes returns up to limit changes with Seq > after, oldest first.
	Changes(ctx context.Context, after int64, limit int) ([]Change, error)
	// RowChanges reads, from one snapshot of the store, a row, its changes
	// with Seq > after (oldest first, at most limit; limit <= 0: all) and
	// the extent of the change log. A row that does not exist is not an
	// error (RowLog.Row is nil); an unknown table is ErrNotFound.
	RowChanges(ctx context.Context, table string, id, after int64, limit int) (RowLog, error)
	// Position returns the Seq of the newest change committed (0: none
	// yet); trimming does not lower it.
	Position(ctx context.Context) (int64, error)
	// TrimChanges drops the changes with Seq <= upTo from the log (the
	// oldest ones); RowLog.Trimmed is upTo afterwards, or Last when upTo
	// is beyond it. Implementations also trim by themselves to the
	// retention they are configured with (store.change_log.max_age and
	// max_rows), from the oldest end, so Trimmed stays exact.
	TrimChanges(ctx context.Context, upTo int64) error
	Ping(ctx context.Context) error
	Close() error
}

// ErrNotFound reports a missing row or table.
var ErrNotFound = errors.New("store: not found")

// ConflictError reports a write that would break a unique column.
type ConflictError struct {
	Table, Column string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("store: %s.%s must be unique", e.Table, e.Column)
}

// SchemaError reports a row or query that names an undeclared column or
// gives a value of the wrong type.
type SchemaError struct {
	Table, Column, Problem string
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("store: %s.%s: %s", e.Table, e.Column, e.Problem)
}

// MigrationError reports a schema change the store refuses to apply.
type MigrationError struct {
	Table, Column string
	Problem       string // what would be lost
	Fix           string // how to proceed
	// Drop reports that the column was removed from the schema, so that
	// dropping it (switchyard migrate drop-column) is a way forward.
	Drop bool
}

func (e *MigrationError) Error() string {
	return fmt.Sprintf("store: table %s, column %s: %s; %s", e.Table, e.Column, e.Problem, e.Fix)
}

// CatalogColumn is a column of an existing table as the database's
// catalog shows it, with the store type it is served as.
type CatalogColumn struct {
	Name    string
	SQLType string // as the database writes it: "character varying(200)", "numeric(10,2)"
	Type    string // the store type it is served as (String for types served as their text)
	// NotNull, HasDefault (a default, serial or identity) and Generated
	// (computed by the database: never written) come from the catalog;
	// PK marks the primary key's column.
	NotNull, HasDefault, Generated, PK bool
	MaxLength                          int      // varchar(n) and char(n): n; 0 otherwise
	Enum                               []string // an enum type's labels, in order
	// Known is false for a type without a documented mapping, served as
	// its text (and named in a start-up warning).
	Known bool
	// Cast is the type a written value is converted to from its text
	// ("" none); Array marks an array column, written from a JSON array.
	Cast  string
	Array bool
}
