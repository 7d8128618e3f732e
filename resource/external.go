package resource

import (
	"fmt"
	"slices"
	"strings"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
)

// FromCatalog completes a resource on an existing table (config
// Resource.Table) with the table's columns as the catalog describes them:
// every column but the primary key becomes a field, in the table's order,
// typed by the store's mapping; declared fields refine them (max_length,
// min/max, default, read_only, hidden, unique). Required comes from the
// catalog (NOT NULL without a default), read-only from generated columns.
//
// It fails, naming the table and the column, when a declared field, a
// search or ordering field or an owner field names no column, or when a
// declared type contradicts the column's. Warnings name the columns of
// types without a documented mapping, served as their text.
func FromCatalog(r config.Resource, cols []store.CatalogColumn) (config.Resource, []string, error) {
	fail := func(format string, args ...any) (config.Resource, []string, error) {
		return r, nil, fmt.Errorf("resources.%s (table %s): %s", r.Name, r.Table, fmt.Sprintf(format, args...))
	}
	declared := map[string]config.Field{}
	for _, f := range r.Fields {
		declared[f.Name] = f
	}
	var (
		fields   []config.Field
		warnings []string
		pkCol    string
		byName   = map[string]store.CatalogColumn{}
	)
	for _, c := range cols {
		byName[c.Name] = c
		if c.PK {
			pkCol = c.Name
			continue
		}
		f := config.Field{Name: c.Name, Type: fieldType(c.Type)}
		if !c.Known {
			warnings = append(warnings, fmt.Sprintf("resources.%s: column %s.%s has type %s, which has no documented mapping: it is served and written as its text", r.Name, r.Table, c.Name, c.SQLType))
		}
		f.Required = c.NotNull && !c.HasDefault && !c.Generated
		f.ReadOnly = c.Generated
		if c.MaxLength > 0 {
			n := c.MaxLength
			f.MaxLength = &n
		}
		if d, ok := declared[c.Name]; ok {
			if d.Type != "" && d.Type != f.Type && !(isText(d.Type) && isText(f.Type)) {
				return fail("field %s is declared %s but column %s is %s (served as %s): leave the type out, it is read from the catalog", c.Name, d.Type, c.Name, c.SQLType, f.Type)
			}
			if d.Type != "" && isText(d.Type) {
				f.Type = d.Type
			}
			if d.MaxLength != nil && (f.MaxLength == nil || *d.MaxLength < *f.MaxLength) {
				f.MaxLength = d.MaxLength
			}
			if d.Min != nil {
				f.Min = d.Min
			}
			if d.Max != nil {
				f.Max = d.Max
			}
			if d.Default != nil {
				f.Default = d.Default
			}
			f.Required = f.Required || d.Required
			f.ReadOnly = f.ReadOnly || d.ReadOnly
			f.Hidden = d.Hidden
			f.Unique = false // the table's own constraints decide; nothing is created
		}
		fields = append(fields, f)
	}
	if pkCol == "" {
		return fail("the table has no single-column primary key")
	}
	for name := range declared {
		if _, ok := byName[name]; !ok {
			return fail("field %s: the table has no column %s", name, name)
		}
		if name == pkCol {
			return fail("field %s is the table's primary key, which is served as %q (pk_field)", name, r.PKField)
		}
	}
	if r.PKField != pkCol && slices.ContainsFunc(fields, func(f config.Field) bool { return f.Name == r.PKField }) {
		return fail("pk_field %q is also a column of the table: choose another pk_field", r.PKField)
	}
	out := r
	out.Fields = fields
	find := func(name string) (config.Field, bool) {
		i := slices.IndexFunc(fields, func(f config.Field) bool { return f.Name == name })
		if i < 0 {
			return config.Field{}, false
		}
		return fields[i], true
	}
	for _, s := range r.Search {
		f, ok := find(s)
		if !ok || !isText(f.Type) || f.Hidden {
			return fail("search field %s must be a visible text column of the table", s)
		}
	}
	for _, o := range r.Ordering {
		name := strings.TrimPrefix(o, "-")
		if f, ok := find(name); (!ok || f.Hidden) && name != r.PKField {
			return fail("ordering field %s is not a visible column of the table", name)
		}
	}
	p := r.Permissions
	for _, perm := range []string{p.Read, p.Create, p.Update, p.Delete} {
		field, ok := config.OwnerField(perm)
		if !ok {
			continue
		}
		f, found := find(field)
		switch {
		case !found:
			return fail("owner:%s: the table has no column %s", field, field)
		case f.Type != config.FieldString && f.Type != config.FieldInt:
			return fail("owner:%s: the column holds %s; an owner column holds the user id as text or an integer", field, f.Type)
		case f.Hidden:
			return fail("owner:%s: an owner column cannot be hidden (events are checked against it)", field)
		}
	}
	return out, warnings, nil
}

func isText(t string) bool { return t == config.FieldString || t == config.FieldText }

// fieldType is the field type of a store column type (the same names).
func fieldType(t string) string {
	switch t {
	case store.Int:
		return config.FieldInt
	case store.Float:
		return config.FieldFloat
	case store.Bool:
		return config.FieldBool
	case store.Datetime:
		return config.FieldDatetime
	case store.JSON:
		return config.FieldJSON
	case store.Text:
		return config.FieldText
	}
	return config.FieldString
}
