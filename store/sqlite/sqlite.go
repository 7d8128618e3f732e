// Package sqlite is the embedded store: one SQLite file (pure Go driver,
// no cgo) in WAL mode, written by a single connection and read through a
// small pool, with the change log in the same database.
//
// Durability: every write is a transaction committed before it is
// acknowledged. With WAL and synchronous=NORMAL a committed transaction
// survives the process being killed (kill -9); a power loss may lose the
// last transactions. Set Config.Synchronous to "FULL" to trade write
// speed for that too.
//
// The change log (_switchyard_changes) numbers changes with AUTOINCREMENT
// from the single writer, so sequence numbers are consecutive in commit
// order (a rolled-back write gives its number back). How far the log was
// trimmed is therefore read from its oldest entry, whether TrimChanges,
// the retention trimmer or an operator (DELETE FROM _switchyard_changes
// WHERE seq <= N) trimmed it; trim from the oldest end only.
//
// Retention: with Config.ChangeLogMaxAge or ChangeLogMaxRows set, a
// goroutine owned by the DB trims the log at Open and every TrimInterval,
// in transactions of at most TrimBatch changes so writers are held up by
// one small batch at most; Close stops it and waits for it.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/switchyardhq/switchyard/store"
)

// Config configures the store.
type Config struct {
	// Path of the database file (created if missing).
	Path string
	// Readers is the size of the read pool (default 4).
	Readers int
	// BusyTimeout is how long a statement waits for a lock (default 5 s).
	BusyTimeout time.Duration
	// Synchronous is SQLite's synchronous setting: "NORMAL" (default) or
	// "FULL".
	Synchronous string

	// ChangeLogMaxAge drops changes older than this from the change log
	// (0: any age is kept).
	ChangeLogMaxAge time.Duration
	// ChangeLogMaxRows keeps at most this many changes (0: any number).
	// With either limit set, a background trimmer runs from Open to Close
	// (see TrimInterval).
	ChangeLogMaxRows int64
	// TrimInterval is how often the trimmer runs, after a first pass at
	// Open (default 1 min).
	TrimInterval time.Duration
	// TrimBatch is the most changes one trimming transaction drops
	// (default 500), so that writers wait for at most one small batch.
	TrimBatch int
	// Logger receives the trimmer's reports; nil discards them.
	Logger *slog.Logger
}

// DB is the SQLite store. It is safe for concurrent use.
type DB struct {
	w, r *sql.DB
	cfg  Config
	log  *slog.Logger

	mu     sync.RWMutex
	tables map[string]*store.Table

	// writing holds one token: resource writes take it around their
	// transaction and the report of its commit (store.WithCommitted), so
	// the reports come in commit order. The single write connection
	// serialises the writes anyway.
	writing chan struct{}

	// The change-log trimmer: stopTrim ends it, trimDone is closed when
	// it has returned (nil when no retention is configured).
	stopTrim context.CancelFunc
	trimDone chan struct{}
	closeMu  sync.Mutex // serialises Close
}

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the database and its bookkeeping tables.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.Readers <= 0 {
		cfg.Readers = 4
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = 5 * time.Second
	}
	switch strings.ToUpper(cfg.Synchronous) {
	case "":
		cfg.Synchronous = "NORMAL"
	case "NORMAL", "FULL":
	default:
		return nil, fmt.Errorf("store/sqlite: Synchronous must be NORMAL or FULL, not %q", cfg.Synchronous)
	}
	if cfg.ChangeLogMaxAge < 0 || cfg.ChangeLogMaxRows < 0 {
		return nil, fmt.Errorf("store/sqlite: ChangeLogMaxAge and ChangeLogMaxRows must not be negative")
	}
	if cfg.TrimInterval <= 0 {
		cfg.TrimInterval = defaultTrimInterval
	}
	if cfg.TrimBatch <= 0 {
		cfg.TrimBatch = defaultTrimBatch
	}
	abs, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: %w", err)
	}
	if err := checkWritable(abs); err != nil {
		return nil, fmt.Errorf("store/sqlite: %w", err)
	}
	dsn := fmt.Sprintf("file:%s?_pragma=journal_mode(WAL)&_pragma=busy_timeout(%d)&_pragma=synchronous(%s)&_pragma=foreign_keys(1)&_txlock=immediate",
		abs, cfg.BusyTimeout.Milliseconds(), cfg.Synchronous)
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: open %s: %w", cfg.Path, err)
	}
	w.SetMaxOpenConns(1) // one writer: SQLite serialises writes anyway
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store/sqlite: open %s: %w", cfg.Path, err)
	}
	r.SetMaxOpenConns(cfg.Readers)
	db := &DB{w: w, r: r, cfg: cfg, log: cfg.Logger, tables: map[string]*store.Table{}, writing: make(chan struct{}, 1)}
	if db.log == nil {
		db.log = slog.New(slog.DiscardHandler)
	}
	if _, err := w.ExecContext(ctx, `
		CREATE TABLE IF NOT EXISTS _switchyard_columns (tbl TEXT NOT NULL, col TEXT NOT NULL, type TEXT NOT NULL, uniq INTEGER NOT NULL, PRIMARY KEY (tbl, col));
		CREATE TABLE IF NOT EXISTS _switchyard_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, row_id INTEGER NOT NULL, op TEXT NOT NULL, row TEXT, at TEXT NOT NULL);
		CREATE INDEX IF NOT EXISTS _switchyard_changes_row ON _switchyard_changes (tbl, row_id, seq);`); err != nil {
		db.Close()
		return nil, fmt.Errorf("store/sqlite: open %s: %w", cfg.Path, err)
	}
	if cfg.ChangeLogMaxAge > 0 || cfg.ChangeLogMaxRows > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		db.stopTrim, db.trimDone = cancel, make(chan struct{})
		go db.trimmer(ctx)
	}
	return db, nil
}

// Close stops the change-log trimmer (interrupting a pass between two
// batches at most), waits for it, and closes the database.
func (db *DB) Close() error {
	db.closeMu.Lock()
	defer db.closeMu.Unlock()
	if db.stopTrim != nil {
		db.stopTrim()
		<-db.trimDone
	}
	return errors.Join(db.r.Close(), db.w.Close())
}

// checkWritable makes sure the database file and its directory can be
// written (WAL mode creates files beside the database), so that a
// permission problem is reported with the path and "permission denied"
// rather than as SQLite's "unable to open database file (14)".
func checkWritable(path string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".switchyard-probe-*")
	if err != nil {
		return fmt.Errorf("data directory %s is not writable: %w", dir, unwrapPathError(err))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("database %s cannot be opened for writing: %w", path, unwrapPathError(err))
	}
	return f.Close()
}

// unwrapPathError drops the *fs.PathError around err, whose path the
// caller's message already holds ("permission denied", not "open
// /x/.switchyard-probe-123: permission denied").
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("store/sqlite: ping: %w", err)
	}
	return nil
}

// quote quotes an identifier (names are validated by the config, and
// quoted anyway).
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func sqlType(t string) string {
	switch t {
	case store.Int, store.Bool:
		return "INTEGER"
	case store.Float:
		return "REAL"
	}
	return "TEXT"
}

// Migrate applies the schema; see store.Store.
func (db *DB) Migrate(ctx context.Context, tables []store.Table) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store/sqlite: migrate: %w", err)
	}
	defer tx.Rollback()
	for _, t := range tables {
		if err := migrateTable(ctx, tx, t); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store/sqlite: migrate: %w", err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, t := range tables {
		t := t
		t.Columns = append([]store.Column(nil), t.Columns...)
		db.tables[t.Name] = &t
	}
	return nil
}

func migrateTable(ctx context.Context, tx *sql.Tx, t store.Table) error {
	rows, err := tx.QueryContext(ctx, "SELECT col, type, uniq FROM _switchyard_columns WHERE tbl = ?", t.Name)
	if err != nil {
		return fmt.Errorf("store/sqlite: migrate %s: %w", t.Name, err)
	}
	have := map[string]store.Column{}
	for rows.Next() {
		var c store.Column
		var uniq int
		if err := rows.Scan(&c.Name, &c.Type, &uniq); err != nil {
			rows.Close()
			return fmt.Errorf("store/sqlite: migrate %s: %w", t.Name, err)
		}
		c.Unique = uniq != 0
		have[c.Name] = c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store/sqlite: migrate %s: %w", t.Name, err)
	}
	exec := func(q string, args ...any) error {
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("store/sqlite: migrate %s: %w", t.Name, err)
		}
		return nil
	}
	if len(have) == 0 {
		if err := exec("CREATE TABLE IF NOT EXISTS " + quote(t.Name) + " (id INTEGER PRIMARY KEY AUTOINCREMENT)"); err != nil {
			return err
		}
	}
	// Refuse what would lose data before changing anything.
	want := map[string]bool{}
	for _, c := range t.Columns {
		want[c.Name] = true
		if old, ok := have[c.Name]; ok && old.Type != c.Type {
			return &store.MigrationError{Table: t.Name, Column: c.Name,
				Problem: fmt.Sprintf("type changed from %s to %s, which would reinterpret stored values", old.Type, c.Type),
				Fix:     fmt.Sprintf("keep type %s, or add a new field with the new type and copy the data over", old.Type)}
		}
	}
	for name := range have {
		if !want[name] {
			return &store.MigrationError{Table: t.Name, Column: name,
				Problem: "the field was removed from the configuration, which would drop its data",
				Fix:     fmt.Sprintf("declare it again, or drop it and its data with: switchyard migrate drop-column %s %s --yes", t.Name, name),
				Drop:    true}
		}
	}
	for _, c := range t.Columns {
		old, ok := have[c.Name]
		if !ok {
			if err := exec("ALTER TABLE " + quote(t.Name) + " ADD COLUMN " + quote(c.Name) + " " + sqlType(c.Type)); err != nil {
				return err
			}
		}
		index := quote("uniq_" + t.Name + "_" + c.Name)
		switch {
		case c.Unique && (!ok || !old.Unique):
			if err := exec("CREATE UNIQUE INDEX IF NOT EXISTS " + index + " ON " + quote(t.Name) + " (" + quote(c.Name) + ")"); err != nil {
				return &store.MigrationError{Table: t.Name, Column: c.Name,
					Problem: "cannot make the field unique: " + err.Error(),
					Fix:     "remove the duplicate values first, or leave the field not unique"}
			}
		case !c.Unique && ok && old.Unique:
			if err := exec("DROP INDEX IF EXISTS " + index); err != nil {
				return err
			}
		}
		uniq := 0
		if c.Unique {
			uniq = 1
		}
		if err := exec("INSERT INTO _switchyard_columns (tbl, col, type, uniq) VALUES (?, ?, ?, ?) ON CONFLICT (tbl, col) DO UPDATE SET type = excluded.type, uniq = excluded.uniq",
			t.Name, c.Name, c.Type, uniq); err != nil {
			return err
		}
	}
	return nil
}

// DropColumn drops a stored column that the schema no longer declares,
// with its data, in one transaction: its unique index if any, the column,
// and the record Migrate keeps of it. It is what `switchyard migrate
// drop-column` runs when Migrate refuses a removed field; run it while no
// server has the database open (a running server keeps the schema it
// migrated at start). An unknown table or column is ErrNotFound.
func (db *DB) DropColumn(ctx context.Context, table, column string) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store/sqlite: drop column: %w", err)
	}
	defer tx.Rollback()
	var uniq int
	err = tx.QueryRowContext(ctx, "SELECT uniq FROM _switchyard_columns WHERE tbl = ? AND col = ?", table, column).Scan(&uniq)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store/sqlite: %s has no stored column %s: %w", table, column, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store/sqlite: drop column: %w", err)
	}
	for _, q := range []string{
		"DROP INDEX IF EXISTS " + quote("uniq_"+table+"_"+column),
		"ALTER TABLE " + quote(table) + " DROP COLUMN " + quote(column),
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("store/sqlite: drop column %s.%s: %w", table, column, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM _switchyard_columns WHERE tbl = ? AND col = ?", table, column); err != nil {
		return fmt.Errorf("store/sqlite: drop column %s.%s: %w", table, column, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store/sqlite: drop column %s.%s: %w", table, column, err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if t, ok := db.tables[table]; ok {
		cols := make([]store.Column, 0, len(t.Columns))
		for _, c := range t.Columns {
			if c.Name != column {
				cols = append(cols, c)
			}
		}
		db.tables[table] = &store.Table{Name: t.Name, Columns: cols}
	}
	return nil
}

// table returns the schema of a migrated table.
func (db *DB) table(name string) (*store.Table, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	t, ok := db.tables[name]
	if !ok {
		return nil, fmt.Errorf("table %s: %w", name, store.ErrNotFound)
	}
	return t, nil
}

// toDB converts a value for a column into what the driver stores.
func toDB(t *store.Table, col string, v any) (any, error) {
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
		s, ok := v.(string)
		if !ok {
			return nil, bad()
		}
		return s, nil
	case store.Int:
		switch n := v.(type) {
		case int64:
			return n, nil
		case int:
			return int64(n), nil
		}
	case store.Float:
		switch n := v.(type) {
		case float64:
			return n, nil
		case int64:
			return float64(n), nil
		case int:
			return float64(n), nil
		}
	case store.Bool:
		if b, ok := v.(bool); ok {
			if b {
				return int64(1), nil
			}
			return int64(0), nil
		}
	case store.Datetime:
		if tm, ok := v.(time.Time); ok {
			return tm.UTC().Format(time.RFC3339Nano), nil
		}
	case store.JSON:
		switch j := v.(type) {
		case []byte:
			if !json.Valid(j) {
				return nil, &store.SchemaError{Table: t.Name, Column: col, Problem: "not valid JSON"}
			}
			return string(j), nil
		case json.RawMessage:
			if !json.Valid(j) {
				return nil, &store.SchemaError{Table: t.Name, Column: col, Problem: "not valid JSON"}
			}
			return string(j), nil
		}
	}
	return nil, bad()
}

// fromDB converts what the driver returned for a column.
func fromDB(typ string, raw any) any {
	if raw == nil {
		return nil
	}
	switch typ {
	case store.Int:
		if n, ok := raw.(int64); ok {
			return n
		}
	case store.Float:
		switch n := raw.(type) {
		case float64:
			return n
		case int64:
			return float64(n)
		}
	case store.Bool:
		if n, ok := raw.(int64); ok {
			return n != 0
		}
	case store.Datetime:
		if s, ok := raw.(string); ok {
			if tm, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return tm
			}
		}
	case store.JSON:
		switch s := raw.(type) {
		case string:
			return []byte(s)
		case []byte:
			return append([]byte(nil), s...)
		}
	default:
		switch s := raw.(type) {
		case string:
			return s
		case []byte:
			return string(s)
		}
	}
	return raw
}

func columnList(t *store.Table) string {
	cols := make([]string, 0, len(t.Columns)+1)
	cols = append(cols, "id")
	for _, c := range t.Columns {
		cols = append(cols, quote(c.Name))
	}
	return strings.Join(cols, ", ")
}

// scanRow reads one row of columnList(t).
func scanRow(t *store.Table, sc interface{ Scan(...any) error }) (store.Row, error) {
	vals := make([]any, len(t.Columns)+1)
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := sc.Scan(ptrs...); err != nil {
		return nil, err
	}
	row := store.Row{"id": vals[0]}
	for i, c := range t.Columns {
		row[c.Name] = fromDB(c.Type, vals[i+1])
	}
	return row, nil
}

// conflict turns a unique violation into a *store.ConflictError.
func conflict(t *store.Table, err error) error {
	msg := err.Error()
	i := strings.Index(msg, "UNIQUE constraint failed: ")
	if i < 0 {
		return err
	}
	rest := msg[i+len("UNIQUE constraint failed: "):]
	col := rest
	if j := strings.IndexAny(rest, " ,("); j >= 0 {
		col = rest[:j]
	}
	col = strings.TrimPrefix(col, t.Name+".")
	return &store.ConflictError{Table: t.Name, Column: col}
}
