package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Size is a number of bytes. In YAML and in the environment it is written
// as an integer number of bytes (65536) or as an integer with one of the
// units B, KB (1000), KiB (1024), MB, MiB, GB or GiB, e.g. "64KiB".
type Size int64

// Units for Size values.
const (
	Byte Size = 1
	KB   Size = 1000
	KiB  Size = 1 << 10
	MB   Size = 1000 * KB
	MiB  Size = 1 << 20
	GB   Size = 1000 * MB
	GiB  Size = 1 << 30
)

var sizeUnits = map[string]Size{
	"": Byte, "B": Byte,
	"KB": KB, "KiB": KiB,
	"MB": MB, "MiB": MiB,
	"GB": GB, "GiB": GiB,
}

const sizeSyntax = "a size: a number of bytes or a number with unit B, KB, KiB, MB, MiB, GB or GiB, like 64KiB"

// parseSize parses the Size syntax described on Size.
func parseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errors.New("not a size")
	}
	unit, ok := sizeUnits[strings.TrimSpace(t[i:])]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", strings.TrimSpace(t[i:]))
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) {
		return 0, errors.New("too large")
	}
	return Size(n) * unit, nil
}

// String formats the size with the largest binary unit that divides it
// exactly, e.g. "64KiB", "1MiB" or "1000B"; the result parses back.
func (s Size) String() string {
	switch {
	case s != 0 && s%GiB == 0:
		return strconv.FormatInt(int64(s/GiB), 10) + "GiB"
	case s != 0 && s%MiB == 0:
		return strconv.FormatInt(int64(s/MiB), 10) + "MiB"
	case s != 0 && s%KiB == 0:
		return strconv.FormatInt(int64(s/KiB), 10) + "KiB"
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// MarshalText implements encoding.TextMarshaler with the String form.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so a Size can be used
// with flag.TextVar; it accepts the syntax described on Size.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := parseSize(string(b))
	if err != nil {
		return fmt.Errorf("must be %s (got %q)", sizeSyntax, b)
	}
	*s = v
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler: an integer is a number of
// bytes, a string is parsed with the syntax described on Size.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, msg := sizeFromNode(n, false)
	if msg != "" {
		return errors.New(msg)
	}
	*s = v
	return nil
}

// sizeFromNode decodes a scalar node into a Size; msg is "" on success.
// untyped is true for environment values, which carry no YAML tag.
func sizeFromNode(n *yaml.Node, untyped bool) (Size, string) {
	if n.Kind != yaml.ScalarNode {
		return 0, "must be " + sizeSyntax + " (got " + describe(n) + ")"
	}
	if !untyped {
		switch n.ShortTag() {
		case "!!int":
			var i int64
			if err := n.Decode(&i); err != nil {
				return 0, "must be " + sizeSyntax + " (got " + describe(n) + ")"
			}
			if i < 0 {
				return 0, "must not be negative (got " + describe(n) + ")"
			}
			return Size(i), ""
		case "!!str":
		default:
			return 0, "must be " + sizeSyntax + " (got " + describe(n) + ")"
		}
	}
	v, err := parseSize(n.Value)
	if err != nil {
		return 0, "must be " + sizeSyntax + " (got " + describe(n) + ")"
	}
	return v, ""
}

// Duration is a time.Duration written in Go syntax, e.g. "15s", "1m30s" or
// "1h". A plain 0 is accepted as zero.
type Duration time.Duration

const durationSyntax = "a duration like 15s, 1m30s or 1h"

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.String; the result parses back.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler with the String form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so a Duration can be
// used with flag.TextVar; it accepts Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("must be %s (got %q)", durationSyntax, b)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler for Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, msg := durationFromNode(n, false)
	if msg != "" {
		return errors.New(msg)
	}
	*d = v
	return nil
}

// durationFromNode decodes a scalar node into a Duration; msg is "" on
// success.
func durationFromNode(n *yaml.Node, untyped bool) (Duration, string) {
	bad := "must be " + durationSyntax + " (got " + describe(n) + ")"
	if n.Kind != yaml.ScalarNode {
		return 0, bad
	}
	if !untyped {
		switch n.ShortTag() {
		case "!!str", "!!int", "!!float":
		default:
			return 0, bad
		}
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		if _, nerr := strconv.ParseFloat(strings.TrimSpace(n.Value), 64); nerr == nil {
			return 0, bad + ": a unit such as s, m or h is required"
		}
		return 0, bad
	}
	return Duration(v), ""
}

// Secret is a string that must not be shown: its String, GoString,
// LogValue and MarshalText methods all give "[redacted]" (or "" when the
// secret is empty), so printing or logging a Config does not leak it. Use
// string(s) to get the value.
type Secret string

const redacted = "[redacted]"

func (s Secret) shown() string {
	if s == "" {
		return ""
	}
	return redacted
}

// String implements fmt.Stringer: "[redacted]", or "" for an empty secret.
func (s Secret) String() string { return s.shown() }

// GoString implements fmt.GoStringer so that %#v redacts too.
func (s Secret) GoString() string { return strconv.Quote(s.shown()) }

// LogValue implements slog.LogValuer: "[redacted]", or "" when empty.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.shown()) }

// MarshalText implements encoding.TextMarshaler and redacts, so that
// encoding a Config as JSON or YAML does not leak secrets either.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.shown()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: it stores the text as
// is (so a Secret can be used with flag.TextVar).
func (s *Secret) UnmarshalText(b []byte) error {
	*s = Secret(b)
	return nil
}
