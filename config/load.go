package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts the name of every configuration environment variable.
const EnvPrefix = "SWITCHYARD_"

// Load reads the YAML file at path ("" for no file), applies the
// SWITCHYARD_* variables of environ (in os.Environ form) on top, and
// validates the result. Problems are returned as Errors, including a file
// that cannot be read.
func Load(path string, environ []string) (Config, error) {
	if path == "" {
		return Parse("", nil, environ)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return Config{}, Errors{{Source: path, Msg: "cannot read configuration file: " + err.Error()}}
	}
	return Parse(path, data, environ)
}

// Parse decodes data, a YAML document, over the default configuration,
// applies the SWITCHYARD_* variables of environ on top, and validates the
// result. name is the file name used in error messages. Empty data (or a
// document holding only comments or null) leaves the defaults. On error the
// returned Config is the zero value and the error is an Errors listing
// every problem found.
func Parse(name string, data []byte, environ []string) (Config, error) {
	cfg := Default()
	d := &decoder{file: name, pos: map[string]pos{}, budget: maxNodes}
	src := source{name: name}
	fatal := false
	if root, err := parseYAML(data); err != nil {
		fatal = true
		line, msg := yamlErrorLine(err)
		d.errs = append(d.errs, &Error{Source: name, Line: line, Msg: msg})
	} else if root != nil {
		d.decodeValue(root, reflect.ValueOf(&cfg).Elem(), "", src, false)
	}
	d.applyEnv(&cfg, environ)
	if fatal || d.exhausted {
		return Config{}, sortErrors(d.errs, name)
	}
	if !slices.ContainsFunc(cfg.Queues, func(q Queue) bool { return q.Name == DefaultQueue }) {
		cfg.Queues = append([]Queue{DefaultQueueConfig(DefaultQueue)}, cfg.Queues...)
	}
	failed := make([]string, 0, len(d.errs))
	for _, e := range d.errs {
		if e.Key != "" {
			failed = append(failed, e.Key)
		}
	}
	for _, ve := range cfg.validate() {
		if coveredBy(ve.key, failed) {
			continue
		}
		p, _ := d.pos.lookup(ve.key, ve.at)
		d.errs = append(d.errs, &Error{Source: p.source, Line: p.line, Key: ve.key, Msg: ve.msg})
	}
	if len(d.errs) > 0 {
		return Config{}, sortErrors(d.errs, name)
	}
	return cfg, nil
}

// coveredBy reports whether key, or one of its ancestors or descendants,
// already has a decoding error, so a validation error about it would only
// repeat it.
func coveredBy(key string, failed []string) bool {
	for _, f := range failed {
		if key == f || isUnder(key, f) || isUnder(f, key) {
			return true
		}
	}
	return false
}

// isUnder reports whether key is strictly inside the key path prefix.
func isUnder(key, prefix string) bool {
	if prefix == "" {
		return key != ""
	}
	return len(key) > len(prefix) && strings.HasPrefix(key, prefix) && (key[len(prefix)] == '.' || key[len(prefix)] == '[')
}

// sortErrors orders the errors of the file by line, followed by the others
// (environment, unknown position) in the order found.
func sortErrors(errs []*Error, file string) Errors {
	out := Errors(slices.Clone(errs))
	rank := func(e *Error) int {
		if e.Source == file && e.Line > 0 {
			return e.Line
		}
		return int(^uint(0) >> 1)
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out
}

// parseYAML parses one YAML document and returns its top node, or nil for
// an empty document. A second document is an error.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("yaml: cannot parse: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("yaml: line %d: only one YAML document is allowed", max(extra.Line, 1))
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

var yamlLineRE = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)

// yamlErrorLine rewrites an error of yaml.v3 into a line number (0 when it
// has none) and a message without the "yaml: " prefix.
func yamlErrorLine(err error) (int, string) {
	s := err.Error()
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, "invalid YAML: " + m[2]
	}
	return 0, "invalid YAML: " + strings.TrimPrefix(s, "yaml: ")
}

// maxNodes bounds the work done on one document (aliases can make a small
// document expand into a huge tree).
const maxNodes = 1 << 18

// pos is where the value of a key came from.
type pos struct {
	source string
	line   int
}

type posMap map[string]pos

// lookup finds the position for an error about key: the key itself, else
// the related key at, else the nearest ancestor of key with a position.
func (m posMap) lookup(key, at string) (pos, bool) {
	if p, ok := m[key]; ok {
		return p, true
	}
	if p, ok := m[at]; ok && at != "" {
		return p, true
	}
	for k := parentKey(key); k != ""; k = parentKey(k) {
		if p, ok := m[k]; ok {
			return p, true
		}
	}
	return pos{}, false
}

// parentKey strips the last element of a dotted key path ("a.b[2]" → "a.b",
// "a.b" → "a", "a" → "").
func parentKey(k string) string {
	i := strings.LastIndexAny(k, ".[")
	if i < 0 {
		return ""
	}
	return k[:i]
}

// source describes where the node being decoded comes from.
type source struct {
	name    string // file name or environment variable
	env     bool   // from the environment: positions have no line
	untyped bool   // a plain environment string: no YAML tags to check
}

type decoder struct {
	file      string // name of the file, for errors not tied to a key
	errs      []*Error
	pos       posMap
	budget    int  // nodes and entries still allowed
	merged    int  // entries brought in by merge keys so far
	exhausted bool // a limit was hit: stop decoding
}

// Limits on merge keys, which can make a small document expand
// exponentially; real configurations stay far below them.
const (
	maxMergeDepth = 8
	maxMerged     = 10000
)

func (d *decoder) line(src source, n int) int {
	if src.env {
		return 0
	}
	return n
}

func (d *decoder) fail(src source, line int, key, msg string) {
	d.errs = append(d.errs, &Error{Source: src.name, Line: d.line(src, line), Key: key, Msg: msg})
}

func (d *decoder) mark(key string, src source, line int) {
	d.pos[key] = pos{source: src.name, line: d.line(src, line)}
}

// spend counts one unit of work and reports whether there is budget left.
func (d *decoder) spend() bool {
	if d.exhausted {
		return false
	}
	d.budget--
	if d.budget < 0 {
		d.exhausted = true
		d.errs = append(d.errs, &Error{Source: d.file, Msg: "the document is too large or uses too many aliases"})
		return false
	}
	return true
}

// resolve follows aliases; nil stands for a missing value.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 100 {
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node, src source) bool {
	if n == nil || n.Kind == 0 {
		return true
	}
	if src.untyped {
		return false
	}
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe renders a node for a "(got ...)" message.
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch {
	case n == nil || n.Kind == 0:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.DocumentNode:
		return "a document"
	case n.Tag != "" && n.ShortTag() == "!!null":
		return "null"
	}
	v := n.Value
	if r := []rune(v); len(r) > 40 {
		v = string(r[:40]) + "…"
	}
	if tag := n.ShortTag(); n.Tag != "" && !strings.HasPrefix(tag, "!!") {
		return strconv.Quote(v) + " tagged " + tag
	}
	return strconv.Quote(v)
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// pair is one key/value of a mapping.
type pair struct {
	name   string
	k, v   *yaml.Node
	merged bool
}

// pairs returns the entries of a mapping node in order, expanding YAML
// merge keys ("<<: *anchor"; explicit keys win over merged ones) and
// reporting duplicate and non-string keys.
func (d *decoder) pairs(n *yaml.Node, key string, src source, depth int) []pair {
	if !d.spend() {
		return nil
	}
	if depth > maxMergeDepth {
		d.fail(src, n.Line, key, "merge keys (<<) nested too deeply")
		d.exhausted = true
		return nil
	}
	seen := map[string]int{}
	var all []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !d.spend() {
			return nil
		}
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind == yaml.ScalarNode && kn.ShortTag() == "!!merge" {
			for _, m := range d.mergeSources(vn, key, src) {
				for _, p := range d.pairs(m, key, src, depth+1) {
					if d.merged++; d.merged > maxMerged {
						d.fail(src, kn.Line, key, fmt.Sprintf("merge keys (<<) expand to more than %d entries", maxMerged))
						d.exhausted = true
						return nil
					}
					p.merged = true
					all = append(all, p)
				}
			}
			continue
		}
		k := resolve(kn)
		if k == nil || k.Kind != yaml.ScalarNode {
			d.fail(src, kn.Line, key, "mapping keys must be strings (got "+describe(k)+")")
			continue
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			msg := "duplicate key"
			if first > 0 && !src.env {
				msg += fmt.Sprintf(" (first defined on line %d)", first)
			}
			d.fail(src, kn.Line, joinKey(key, name), msg)
			continue
		}
		seen[name] = kn.Line
		all = append(all, pair{name: name, k: kn, v: vn})
	}
	out := all[:0:0]
	taken := map[string]bool{}
	for name := range seen {
		taken[name] = true
	}
	for _, p := range all {
		if p.merged {
			if taken[p.name] {
				continue
			}
			taken[p.name] = true
		}
		out = append(out, p)
	}
	return out
}

// mergeSources returns the mappings named by the value of a merge key.
func (d *decoder) mergeSources(v *yaml.Node, key string, src source) []*yaml.Node {
	r := resolve(v)
	if r != nil && r.Kind == yaml.MappingNode {
		return []*yaml.Node{r}
	}
	if r != nil && r.Kind == yaml.SequenceNode {
		var out []*yaml.Node
		for _, item := range r.Content {
			m := resolve(item)
			if m == nil || m.Kind != yaml.MappingNode {
				d.fail(src, item.Line, key, "a merge key (<<) needs a mapping or a list of mappings (got "+describe(item)+")")
				continue
			}
			out = append(out, m)
		}
		return out
	}
	d.fail(src, v.Line, key, "a merge key (<<) needs a mapping or a list of mappings (got "+describe(v)+")")
	return nil
}

var (
	sizeType     = reflect.TypeFor[Size]()
	durationType = reflect.TypeFor[Duration]()
)

// decodeValue decodes node n into v, whose key path is key. named is set
// for the map sections whose entries are user-named (config:"map" tag):
// they decode from a mapping into a slice of structs with a Name field.
func (d *decoder) decodeValue(n *yaml.Node, v reflect.Value, key string, src source, named bool) {
	if !d.spend() {
		return
	}
	orig := n
	n = resolve(n)
	line := 0
	if orig != nil {
		line = orig.Line
	}
	if n == nil && orig != nil && orig.Kind == yaml.AliasNode {
		d.fail(src, line, key, "invalid alias")
		return
	}
	if named {
		d.decodeNamed(n, v, key, src)
		return
	}
	switch v.Type() {
	case sizeType:
		if isNull(n, src) {
			d.fail(src, line, key, "must be "+sizeSyntax+" (got "+describe(n)+")")
			return
		}
		s, msg := sizeFromNode(n, src.untyped)
		if msg != "" {
			d.fail(src, line, key, msg)
			return
		}
		v.SetInt(int64(s))
		return
	case durationType:
		if isNull(n, src) {
			d.fail(src, line, key, "must be "+durationSyntax+" (got "+describe(n)+")")
			return
		}
		t, msg := durationFromNode(n, src.untyped)
		if msg != "" {
			d.fail(src, line, key, msg)
			return
		}
		v.SetInt(int64(t))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if isNull(n, src) {
			return // "log:" with nothing under it: keep what is there
		}
		if n.Kind != yaml.MappingNode {
			d.fail(src, line, key, "must be a mapping (got "+describe(n)+")")
			return
		}
		d.decodeStruct(n, v, key, src)
	case reflect.Slice:
		if isNull(n, src) {
			v.SetZero()
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(src, line, key, "must be a list (got "+describe(n)+")")
			return
		}
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ik := key + "[" + strconv.Itoa(i) + "]"
			d.mark(ik, src, item.Line)
			d.decodeValue(item, out.Index(i), ik, src, false)
		}
		if out.Len() == 0 {
			v.SetZero()
		} else {
			v.Set(out)
		}
	case reflect.Pointer:
		if isNull(n, src) {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		before := len(d.errs)
		d.decodeValue(n, p.Elem(), key, src, false)
		if len(d.errs) == before {
			v.Set(p)
		}
	case reflect.Interface:
		if isNull(n, src) {
			v.SetZero()
			return
		}
		var x any
		if err := safeDecode(n, &x); err != nil {
			d.fail(src, line, key, "invalid value: "+decodeErrorText(err))
			return
		}
		if x == nil {
			v.SetZero()
		} else {
			v.Set(reflect.ValueOf(x))
		}
	case reflect.String:
		s, ok := d.scalar(n, src, line, key, "a string", "!!str", "!!int", "!!float", "!!timestamp")
		if ok {
			v.SetString(s)
		}
	case reflect.Bool:
		s, ok := d.scalar(n, src, line, key, "true or false", "!!bool")
		if !ok {
			return
		}
		var b bool
		var err error
		if src.untyped {
			b, err = strconv.ParseBool(strings.TrimSpace(s))
		} else {
			err = safeDecode(n, &b)
		}
		if err != nil {
			d.fail(src, line, key, "must be true or false (got "+describe(n)+")")
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s, ok := d.scalar(n, src, line, key, "an integer", "!!int")
		if !ok {
			return
		}
		var i int64
		var err error
		if src.untyped {
			i, err = strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		} else {
			err = safeDecode(n, &i)
		}
		if err != nil || v.OverflowInt(i) {
			d.fail(src, line, key, "must be an integer (got "+describe(n)+")")
			return
		}
		v.SetInt(i)
	case reflect.Float32, reflect.Float64:
		s, ok := d.scalar(n, src, line, key, "a number", "!!int", "!!float")
		if !ok {
			return
		}
		var f float64
		var err error
		if src.untyped {
			f, err = strconv.ParseFloat(strings.TrimSpace(s), 64)
		} else {
			err = safeDecode(n, &f)
		}
		if err != nil {
			d.fail(src, line, key, "must be a number (got "+describe(n)+")")
			return
		}
		v.SetFloat(f)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
}

// scalar checks that n is a scalar whose resolved YAML tag is one of tags
// (any tag for untyped environment strings) and returns its text.
func (d *decoder) scalar(n *yaml.Node, src source, line int, key, want string, tags ...string) (string, bool) {
	if n == nil || n.Kind != yaml.ScalarNode {
		d.fail(src, line, key, "must be "+want+" (got "+describe(n)+")")
		return "", false
	}
	if !src.untyped && !slices.Contains(tags, n.ShortTag()) {
		d.fail(src, line, key, "must be "+want+" (got "+describe(n)+")")
		return "", false
	}
	return n.Value, true
}

var yamlLinePrefixRE = regexp.MustCompile(`^(yaml: )?line \d+: `)

// decodeErrorText rewrites an error of yaml.v3's Node.Decode as one line
// without yaml.v3's "yaml:" and "line N:" prefixes (the caller reports the
// position itself).
func decodeErrorText(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		parts := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			parts[i] = yamlLinePrefixRE.ReplaceAllString(e, "")
		}
		return strings.Join(parts, "; ")
	}
	s := yamlLinePrefixRE.ReplaceAllString(err.Error(), "")
	return strings.Join(strings.Fields(strings.TrimPrefix(s, "yaml: ")), " ")
}

// safeDecode runs yaml.v3's own decoding of a node, turning a panic into an
// error.
func safeDecode(n *yaml.Node, out any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot decode: %v", r)
		}
	}()
	return n.Decode(out)
}

// decodeStruct decodes a mapping into a struct, field by field, reporting
// unknown keys.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, key string, src source) {
	fields := structFields(v.Type())
	for _, p := range d.pairs(n, key, src, 0) {
		child := joinKey(key, p.name)
		f, ok := fields.byName[p.name]
		if !ok && fields.rest != nil {
			d.mark(child, src, p.k.Line)
			d.decodeEntry(p, v.FieldByIndex(fields.rest.index), child, src)
			continue
		}
		if !ok {
			d.fail(src, p.k.Line, child, "unknown key"+suggest(p.name, fields.names, "%q"))
			continue
		}
		d.mark(child, src, p.k.Line)
		d.decodeValue(p.v, v.FieldByIndex(f.index), child, src, f.named)
	}
}

// decodeNamed decodes a mapping of user-named entries into a slice of
// structs whose Name field holds the key, keeping the declaration order.
// The section is replaced, not merged.
func (d *decoder) decodeNamed(n *yaml.Node, v reflect.Value, key string, src source) {
	if isNull(n, src) {
		v.SetZero()
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(src, n.Line, key, "must be a mapping of names to entries (got "+describe(n)+")")
		return
	}
	v.SetZero()
	for _, p := range d.pairs(n, key, src, 0) {
		child := joinKey(key, p.name)
		d.mark(child, src, p.k.Line)
		d.decodeEntry(p, v, child, src)
	}
}

// decodeEntry decodes one user-named entry and appends it to the slice v.
func (d *decoder) decodeEntry(p pair, v reflect.Value, key string, src source) {
	et := v.Type().Elem()
	e := reflect.New(et).Elem()
	e.Set(entryDefault(et))
	e.FieldByName("Name").SetString(p.name)
	d.decodeValue(p.v, e, key, src, false)
	v.Set(reflect.Append(v, e))
}

// entryDefault is the value a user-named entry starts from before its keys
// are decoded.
func entryDefault(t reflect.Type) reflect.Value {
	switch t {
	case reflect.TypeFor[Resource]():
		return reflect.ValueOf(defaultResource())
	case reflect.TypeFor[Namespace]():
		return reflect.ValueOf(Namespace{ChannelOptions: DefaultChannelOptions()})
	case reflect.TypeFor[Signal]():
		return reflect.ValueOf(DefaultSignal(""))
	case reflect.TypeFor[Queue]():
		return reflect.ValueOf(DefaultQueueConfig(""))
	}
	return reflect.Zero(t)
}

// fieldInfo is one YAML key of a struct.
type fieldInfo struct {
	name  string
	index []int
	named bool // config:"map": user-named entries
}

type fieldSet struct {
	list   []fieldInfo
	byName map[string]fieldInfo
	names  []string
	// rest is the field (config:"rest") that takes every key
	// the struct does not name, as user-named entries; nil when none.
	rest *fieldInfo
}

var fieldCache sync.Map // reflect.Type → *fieldSet

// structFields lists the YAML keys of a struct type from its yaml tags,
// flattening ",inline" fields.
func structFields(t reflect.Type) *fieldSet {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{byName: map[string]fieldInfo{}}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			idx := append(slices.Clone(index), i)
			switch {
			case f.Tag.Get("config") == "rest":
				fs.rest = &fieldInfo{name: "", index: idx, named: true}
				continue
			case name == "-":
				continue
			case opts == "inline":
				walk(f.Type, idx)
				continue
			case name == "":
				panic("config: field " + t.Name() + "." + f.Name + " has no yaml tag")
			}
			fi := fieldInfo{name: name, index: idx, named: f.Tag.Get("config") == "map"}
			fs.list = append(fs.list, fi)
			fs.byName[name] = fi
			fs.names = append(fs.names, name)
		}
	}
	walk(t, nil)
	actual, _ := fieldCache.LoadOrStore(t, fs)
	return actual.(*fieldSet)
}

// suggest returns " (did you mean X?)" for the closest candidate, or the
// list of valid names when none is close; format renders one name.
func suggest(got string, candidates []string, format string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if dd := editDistance(strings.ToLower(got), strings.ToLower(c)); dd < bestD {
			best, bestD = c, dd
		}
	}
	if best != "" && bestD <= max(2, len(got)/4) {
		return " (did you mean " + fmt.Sprintf(format, best) + "?)"
	}
	if len(candidates) > 0 && len(candidates) <= 20 {
		return " (valid keys: " + strings.Join(candidates, ", ") + ")"
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
