package config

import (
	"reflect"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// envKind is how an environment variable's value is read.
type envKind int

const (
	envScalar envKind = iota // one value
	envList                  // comma-separated list of scalars
	envDoc                   // a YAML (or JSON) document for a user-named map section
)

// envVar is one configuration key settable from the environment.
type envVar struct {
	name  string // SWITCHYARD_...
	key   string // dotted key path
	index []int  // field index path in Config
	kind  envKind
}

// envTable lists every environment variable, in schema order, derived from
// the yaml tags of Config.
var envTable = sync.OnceValues(func() ([]envVar, map[string]int) {
	var out []envVar
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for _, f := range structFields(t).list {
			key := joinKey(prefix, f.name)
			idx := append(slices.Clone(index), f.index...)
			ft := t.FieldByIndex(f.index).Type
			e := envVar{name: EnvName(key), key: key, index: idx}
			switch {
			case f.named:
				e.kind = envDoc
			case ft.Kind() == reflect.Struct:
				walk(ft, key, idx)
				if rest := structFields(ft).rest; rest != nil {
					// The section's user-named entries, as one document.
					out = append(out, envVar{name: EnvName(key), key: key, index: append(slices.Clone(idx), rest.index...), kind: envDoc})
				}
				continue
			case ft.Kind() == reflect.Slice:
				e.kind = envList
			default:
				e.kind = envScalar
			}
			out = append(out, e)
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	byName := map[string]int{}
	for i, e := range out {
		if j, dup := byName[e.name]; dup {
			panic("config: keys " + out[j].key + " and " + e.key + " map to the same variable " + e.name)
		}
		byName[e.name] = i
	}
	return out, byName
})

// EnvName returns the environment variable for a dotted key path:
// EnvPrefix followed by the path upper-cased with "." replaced by "_"
// (e.g. "limits.max_message_size" → "SWITCHYARD_LIMITS_MAX_MESSAGE_SIZE").
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// EnvNames returns every environment variable the configuration reads, in
// schema order.
func EnvNames() []string {
	table, _ := envTable()
	out := make([]string, len(table))
	for i, e := range table {
		out[i] = e.name
	}
	return out
}

// envReserved reports whether a SWITCHYARD_ variable is used for something
// else than a configuration key and must be ignored.
func envReserved(name string) bool {
	return name == "SWITCHYARD_CONFIG" || strings.HasPrefix(name, "SWITCHYARD_TEST_")
}

// applyEnv sets the keys named by the SWITCHYARD_* variables of environ.
// When a name occurs twice the first wins, as with os.Getenv.
func (d *decoder) applyEnv(cfg *Config, environ []string) {
	table, byName := envTable()
	vals := map[string]string{}
	var unknown []string
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || envReserved(name) {
			continue
		}
		if _, known := byName[name]; !known {
			if !slices.Contains(unknown, name) {
				unknown = append(unknown, name)
			}
			continue
		}
		if _, dup := vals[name]; !dup {
			vals[name] = val
		}
	}
	root := reflect.ValueOf(cfg).Elem()
	for _, e := range table {
		val, ok := vals[e.name]
		if !ok {
			continue
		}
		v := root.FieldByIndex(e.index)
		src := source{name: e.name, env: true}
		for k := range d.pos {
			if isUnder(k, e.key) {
				delete(d.pos, k)
			}
		}
		d.mark(e.key, src, 0)
		switch e.kind {
		case envScalar:
			src.untyped = true
			d.decodeValue(&yaml.Node{Kind: yaml.ScalarNode, Value: val}, v, e.key, src, false)
		case envList:
			src.untyped = true
			seq := &yaml.Node{Kind: yaml.SequenceNode}
			if strings.TrimSpace(val) != "" {
				for _, part := range strings.Split(val, ",") {
					seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: strings.TrimSpace(part)})
				}
			}
			d.decodeValue(seq, v, e.key, src, false)
		case envDoc:
			doc, err := parseYAML([]byte(val))
			if err != nil {
				_, msg := yamlErrorLine(err)
				d.fail(src, 0, e.key, msg)
				continue
			}
			d.decodeValue(doc, v, e.key, src, true)
		}
	}
	names := EnvNames()
	for _, name := range unknown {
		msg := "unknown configuration variable"
		if parent := sectionOf(name, table); parent != "" {
			msg += " (" + parent + " takes the whole section as one YAML or JSON document)"
		} else if s := suggest(name, names, "%s"); strings.HasPrefix(s, " (did") {
			msg += s
		}
		d.errs = append(d.errs, &Error{Source: name, Msg: msg})
	}
}

// sectionOf returns the variable of the user-named map section that name
// seems to reach into (e.g. SWITCHYARD_RESOURCES_TODOS → SWITCHYARD_RESOURCES).
func sectionOf(name string, table []envVar) string {
	for _, e := range table {
		if e.kind == envDoc && strings.HasPrefix(name, e.name+"_") {
			return e.name
		}
	}
	return ""
}
