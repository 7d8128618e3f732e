package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyardhq/switchyard/store"
)

// table is a migrated or attached table as the SQL needs it.
type table struct {
	store.Table
	sql        string            // the quoted (maybe schema-qualified) table name
	pkCol      string            // the primary key's column name ("id" for managed tables)
	pk         string            // pkCol quoted
	cast       map[string]string // column → SQL type a value is cast to from text ("" none)
	array      map[string]bool   // columns written from a JSON array
	logChange  string            // the write statements' tail, with this table's primary key
	logChanges string            // the same for a multi-row insert (combine.go)
}

func newTable(t store.Table, sqlName, pkCol string, cols []store.CatalogColumn) *table {
	ti := &table{Table: t, sql: sqlName, pkCol: pkCol, pk: quote(pkCol), cast: map[string]string{}, array: map[string]bool{}}
	for _, c := range cols {
		if c.Cast != "" {
			ti.cast[c.Name] = c.Cast
		}
		if c.Array {
			ti.array[c.Name] = true
		}
	}
	ti.logChange = strings.ReplaceAll(logChange, "w.id", "w."+ti.pk)
	ti.logChanges = strings.ReplaceAll(logChanges, "w.id", "w."+ti.pk)
	return ti
}

// placeholder is how a parameter p is written into column col: as it is,
// or converted from its text (a type served as a string) or from a JSON
// array (an array column).
func (t *table) placeholder(col, p string) string {
	cast, ok := t.cast[col]
	if !ok {
		return p
	}
	if t.array[col] {
		return "ARRAY(SELECT jsonb_array_elements_text(" + p + "::text::jsonb))::" + cast
	}
	return p + "::text::" + cast
}

// quoteQualified quotes a table name that may name its schema
// ("public.app_todo").
func quoteQualified(name string) string {
	schema, tbl, ok := strings.Cut(name, ".")
	if !ok {
		return quote(name)
	}
	return quote(schema) + "." + quote(tbl)
}

// Describe reads an existing table's columns from the catalog, with the
// store type each is served as (the mapping of docs/existing-tables.md).
// A missing table is an error wrapping store.ErrNotFound.
func (db *DB) Describe(ctx context.Context, name string) ([]store.CatalogColumn, error) {
	cols, err := describe(ctx, db.pool, name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, db.fail(ctx, "describe "+name, err)
	}
	db.ok()
	return cols, nil
}

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func describe(ctx context.Context, q queryer, name string) ([]store.CatalogColumn, error) {
	var oid *uint32
	if err := q.QueryRow(ctx, "SELECT to_regclass($1)::oid", quoteQualified(name)).Scan(&oid); err != nil {
		return nil, err
	}
	if oid == nil {
		return nil, fmt.Errorf("table %s does not exist (or is not visible on the connection's search_path): %w", name, store.ErrNotFound)
	}
	rows, err := q.Query(ctx, `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typtype, t.typcategory,
			COALESCE(et.typname, ''), a.attnotnull, a.atthasdef OR a.attidentity <> '', a.attgenerated <> '',
			CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 THEN a.atttypmod - 4 ELSE 0 END,
			COALESCE(a.attnum = ANY(i.indkey), false),
			COALESCE((SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = a.atttypid), '{}')
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
		LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, *oid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.CatalogColumn
	for rows.Next() {
		var c store.CatalogColumn
		var typname, typtype, category, elem string
		if err := rows.Scan(&c.Name, &c.SQLType, &typname, &typtype, &category, &elem, &c.NotNull, &c.HasDefault, &c.Generated, &c.MaxLength, &c.PK, &c.Enum); err != nil {
			return nil, err
		}
		mapType(&c, typname, typtype, category, elem)
		out = append(out, c)
	}
	return out, rows.Err()
}

// mapType sets how a column is served: its store type, and the SQL type
// a value is cast to when it is written from text.
func mapType(c *store.CatalogColumn, typname, typtype, category, elem string) {
	c.Known = true
	switch {
	case category == "A":
		c.Type, c.Array, c.Cast = store.JSON, true, c.SQLType
		return
	case typtype == "e":
		c.Type, c.Cast = store.String, c.SQLType
		return
	}
	switch typname {
	case "int2", "int4", "int8":
		c.Type = store.Int
	case "float4", "float8":
		c.Type = store.Float
	case "bool":
		c.Type = store.Bool
	case "timestamptz", "timestamp":
		c.Type = store.Datetime
	case "text", "citext":
		c.Type = store.Text
	case "varchar", "bpchar":
		c.Type = store.String
	case "json":
		c.Type = store.JSON
	case "jsonb":
		c.Type, c.Cast = store.JSON, "jsonb"
	case "numeric", "uuid", "date", "time", "timetz", "interval", "inet", "cidr", "macaddr", "money", "bytea":
		c.Type, c.Cast = store.String, c.SQLType
	default:
		c.Type, c.Cast, c.Known = store.String, c.SQLType, false
	}
}

// attach checks an existing table against what the resource declares and
// returns it ready for the SQL; nothing in it is created or changed.
func (db *DB) attach(ctx context.Context, tx pgx.Tx, t store.Table) (*table, error) {
	cols, err := describe(ctx, tx, t.Source)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, &store.MigrationError{Table: t.Source, Column: "-", Problem: "the table does not exist",
				Fix: "create it (Switchyard never creates an existing table's resource), or correct resources." + t.Name + ".table"}
		}
		return nil, db.fail(ctx, "attach "+t.Source, err)
	}
	var pks []store.CatalogColumn
	byName := map[string]store.CatalogColumn{}
	for _, c := range cols {
		byName[c.Name] = c
		if c.PK {
			pks = append(pks, c)
		}
	}
	if len(pks) != 1 || pks[0].Type != store.Int || pks[0].Array {
		return nil, &store.MigrationError{Table: t.Source, Column: "-", Problem: fmt.Sprintf("the table needs a primary key of one integer column (it has %d primary-key columns)", len(pks)),
			Fix: "serve a table with a serial, identity or integer primary key (Django's AutoField or BigAutoField)"}
	}
	for _, c := range t.Columns {
		cc, ok := byName[c.Name]
		switch {
		case !ok:
			return nil, &store.MigrationError{Table: t.Source, Column: c.Name, Problem: "the table has no such column",
				Fix: "remove it from resources." + t.Name + ".fields, or add the column to the table"}
		case cc.Type != c.Type && !(cc.Type == store.Text && c.Type == store.String) && !(cc.Type == store.String && c.Type == store.Text):
			return nil, &store.MigrationError{Table: t.Source, Column: c.Name, Problem: fmt.Sprintf("the column is %s (served as %s), the resource declares %s", cc.SQLType, cc.Type, c.Type),
				Fix: "leave the field's type out: it is read from the catalog"}
		}
	}
	t.Columns = append([]store.Column(nil), t.Columns...)
	return newTable(t, quoteQualified(t.Source), pks[0].Name, cols), nil
}

// Inspect describes existing tables over one connection of its own,
// creating nothing (for switchyard config check): by table name; a table
// that does not exist is left out.
func Inspect(ctx context.Context, cfg Config, tables []string) (map[string][]store.CatalogColumn, error) {
	pc, err := pgx.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: url: %s", redactParseError(err))
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	pc.ConnectTimeout = cfg.ConnectTimeout
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: cannot reach PostgreSQL at %s:%d: %w", pc.Host, pc.Port, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	out := map[string][]store.CatalogColumn{}
	for _, name := range tables {
		cols, err := describe(ctx, conn, name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store/postgres: describe %s: %w", name, err)
		}
		out[name] = cols
	}
	return out, nil
}
