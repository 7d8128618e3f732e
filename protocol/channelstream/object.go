package channelstream

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// object is a JSON object that keeps its keys in order: Channelstream's
// messages carry the keys an application sent (passed through), and the
// frames put "catchup" first so a catch-up copy is one byte swap away.
type object []member

type member struct {
	Key   string
	Value json.RawMessage
}

func (o object) get(key string) (json.RawMessage, bool) {
	for _, m := range o {
		if m.Key == key {
			return m.Value, true
		}
	}
	return nil, false
}

// set replaces key's value, or appends it.
func (o *object) set(key string, v json.RawMessage) {
	for i := range *o {
		if (*o)[i].Key == key {
			(*o)[i].Value = v
			return
		}
	}
	*o = append(*o, member{key, v})
}

// without returns a copy without the keys.
func (o object) without(keys ...string) object {
	out := make(object, 0, len(o))
	for _, m := range o {
		if !contains(keys, m.Key) {
			out = append(out, m)
		}
	}
	return out
}

// first returns a copy with key moved to the front (when present).
func (o object) first(key string) object {
	out := make(object, 0, len(o))
	for _, m := range o {
		if m.Key == key {
			out = append(out, m)
		}
	}
	for _, m := range o {
		if m.Key != key {
			out = append(out, m)
		}
	}
	return out
}

func (o object) clone() object { return append(object(nil), o...) }

func (o object) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, m := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, m.Key)
		b = append(b, ':')
		b = append(b, m.Value...)
	}
	return append(b, '}'), nil
}

// socketForm is the object as the socket and long-poll deliver it: the
// server's JSON encoder there writes UTC offsets of datetimes as "Z".
func (o object) socketForm() object {
	out := o.clone()
	for i, m := range out {
		if m.Key == "timestamp" || m.Key == "edited" {
			if bytes.HasSuffix(m.Value, []byte(`+00:00"`)) {
				v := append([]byte(nil), m.Value[:len(m.Value)-len(`+00:00"`)]...)
				out[i].Value = append(v, 'Z', '"')
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// raw encodes a Go value for an object member; every value here is
// JSON-safe.
func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("channelstream: encode: " + err.Error())
	}
	return b
}

// newUUID returns a random (version 4) UUID in canonical form.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// parseUUID accepts what Python's uuid.UUID accepts from a string (any
// case, with or without dashes, braces or a urn:uuid: prefix) and returns
// the canonical form.
func parseUUID(s string) (string, bool) {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "urn:", ""), "uuid:", "")
	s = strings.ReplaceAll(strings.Trim(s, "{}"), "-", "")
	if len(s) != 32 {
		return "", false
	}
	var b [16]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return "", false
	}
	return formatUUID(b), true
}

// isoNow is Python's datetime.utcnow().isoformat(): naive UTC, the
// fraction only when there are microseconds.
func isoNaive(t time.Time) string {
	t = t.UTC()
	s := t.Format("2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	return s
}

// isoDatetime is marshmallow 3's ISO 8601 datetime pattern.
var isoDatetime = regexp.MustCompile(`^(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,6})\d{0,6})?)?(Z|[+-]\d{2}(?::?\d{2})?)?$`)

// parseDatetime reads a datetime as marshmallow's DateTime field does and
// returns it as Python's isoformat() writes it back: naive input stays
// naive, an offset is kept ("Z" becomes "+00:00").
func parseDatetime(s string) (string, bool) {
	m := isoDatetime.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	year, month, day, hour, minute, sec := num(m[1]), num(m[2]), num(m[3]), num(m[4]), num(m[5]), num(m[6])
	us := 0
	if m[7] != "" {
		us = num((m[7] + "00000")[:6])
	}
	if month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 || year < 1 {
		return "", false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, us*1000, time.UTC)
	if t.Day() != day { // 31 April and the like
		return "", false
	}
	out := t.Format("2006-01-02T15:04:05")
	if us != 0 {
		out += fmt.Sprintf(".%06d", us)
	}
	switch tz := m[8]; {
	case tz == "":
	case tz == "Z":
		out += "+00:00"
	default:
		digits := strings.ReplaceAll(tz[1:], ":", "")
		hh, mm := num(digits[:2]), 0
		if len(digits) == 4 {
			mm = num(digits[2:])
		}
		if hh > 23 || mm > 59 {
			return "", false
		}
		out += fmt.Sprintf("%c%02d:%02d", tz[0], hh, mm)
	}
	return out, true
}
