package dashboard

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/switchyardhq/switchyard/config"
)

// effectiveYAML renders the configuration the server runs with as the
// YAML file that would configure it: keys as the file names them, the
// user-named sections (resources, queues, signals) keyed by name, every
// secret "[redacted]" and every URL shown without its password and query
// (config.RedactURL), as the logs show them.
func effectiveYAML(c config.Config) (string, error) {
	n, err := toNode(reflect.ValueOf(c), "")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return "", fmt.Errorf("dashboard: configuration: %w", err)
	}
	return b.String(), nil
}

var (
	secretType = reflect.TypeFor[config.Secret]()
	textType   = reflect.TypeFor[encoding.TextMarshaler]()
)

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }

// toNode converts a value; key is its yaml key (urls and webhooks are
// redacted by key).
func toNode(v reflect.Value, key string) (*yaml.Node, error) {
	if v.Type() == secretType {
		s := v.String()
		switch {
		case s == "":
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}, nil
		case strings.Contains(s, "://"):
			return scalar(config.RedactURL(s)), nil
		}
		return scalar("[redacted]"), nil
	}
	if v.Kind() != reflect.Pointer && v.Kind() != reflect.Interface && v.Type().Implements(textType) {
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, err
		}
		return scalar(string(b)), nil
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
		}
		return toNode(v.Elem(), key)
	case reflect.String:
		s := v.String()
		if key == "url" || key == "webhook" {
			s = config.RedactURL(s)
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}, nil
	case reflect.Struct:
		return structNode(v)
	case reflect.Slice, reflect.Array:
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := range v.Len() {
			c, err := toNode(v.Index(i), "")
			if err != nil {
				return nil, err
			}
			if c.Kind != yaml.ScalarNode {
				n.Style = 0
			}
			n.Content = append(n.Content, c)
		}
		return n, nil
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			c, err := toNode(v.MapIndex(k), fmt.Sprint(k))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, scalar(fmt.Sprint(k)), c)
		}
		return n, nil
	}
	var n yaml.Node
	if err := n.Encode(v.Interface()); err != nil {
		return nil, err
	}
	return &n, nil
}

// structNode maps a config struct by its yaml tags: config:"map" lists
// become mappings keyed by their entries' Name, config:"rest" lists are
// spliced into the struct's own mapping.
func structNode(v reflect.Value) (*yaml.Node, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		fv := v.Field(i)
		if name == "" && opts == "inline" && fv.Kind() == reflect.Struct {
			c, err := structNode(fv)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c.Content...)
			continue
		}
		if name == "-" || name == "" || !f.IsExported() {
			continue
		}
		if (fv.Kind() == reflect.Pointer || fv.Kind() == reflect.Interface) && fv.IsNil() {
			continue // an optional setting left out
		}
		switch f.Tag.Get("config") {
		case "map", "rest":
			entries := &yaml.Node{Kind: yaml.MappingNode}
			for j := range fv.Len() {
				e := fv.Index(j)
				c, err := structNode(e)
				if err != nil {
					return nil, err
				}
				entries.Content = append(entries.Content, scalar(e.FieldByName("Name").String()), c)
			}
			if f.Tag.Get("config") == "rest" {
				n.Content = append(n.Content, entries.Content...)
				continue
			}
			n.Content = append(n.Content, scalar(name), entries)
		default:
			c, err := toNode(fv, name)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, scalar(name), c)
		}
	}
	return n, nil
}
