package resource

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
)

// filter type-checks a filter (field or primary key → a JSON value of its
// type) into store conditions, adding what is wrong to verr. List and live
// queries share it, so the same filter selects the same rows on both: the
// store evaluates the conditions for a list, matches evaluates them on an
// event's record.
func (s *Schema) filter(filter map[string]json.RawMessage, verr *ValidationError) []store.Cond {
	if len(filter) == 0 {
		return nil
	}
	names := make([]string, 0, len(filter))
	for name := range filter {
		names = append(names, name)
	}
	sort.Strings(names)
	conds := make([]store.Cond, 0, len(names))
	for _, field := range names {
		raw := filter[field]
		if field == s.PK() {
			var id int64
			if json.Unmarshal(raw, &id) != nil {
				verr.add(field, "A valid integer is required.")
				continue
			}
			conds = append(conds, store.Cond{Column: "id", Value: id})
			continue
		}
		f, ok := s.r.Field(field)
		if !ok || f.Hidden {
			verr.add(field, "Unknown field to filter on.")
			continue
		}
		if f.Type == config.FieldJSON {
			verr.add(field, "JSON fields cannot be filtered on.")
			continue
		}
		// A filter value is checked for its type only: a required field
		// may be filtered on null, and bounds do not apply.
		v, msg := decodeValue(&config.Field{Name: f.Name, Type: f.Type}, raw)
		if msg != "" {
			verr.add(field, msg)
			continue
		}
		conds = append(conds, store.Cond{Column: field, Value: v})
	}
	return conds
}

// matches reports whether a stored row (store types) meets every
// condition, with the store's equality: exact for strings, numeric for
// numbers, instants for datetimes, and a nil value for NULL.
func matches(row store.Row, conds []store.Cond) bool {
	for _, c := range conds {
		got := row[c.Column]
		switch want := c.Value.(type) {
		case nil:
			if got != nil {
				return false
			}
		case time.Time:
			t, ok := got.(time.Time)
			if !ok || !t.Equal(want) {
				return false
			}
		case int64, float64, string, bool:
			if got != c.Value {
				return false
			}
		default: // JSON and anything else are never filtered on
			return false
		}
	}
	return true
}
