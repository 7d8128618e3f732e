package dfws

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"regexp"
	"strings"

	"github.com/switchyardhq/switchyard"
)

// Topics: df_websockets' serialize_topic (topics.py), for the JSON values
// an application sends in place of its Python objects. A window's topics
// are these serialized strings; its df_websockets channel-layer groups
// are their sha256 (Group).

// BroadcastTopic is df_websockets' BROADCAST: every window.
const BroadcastTopic = "-broadcast"

// WindowTopic is df_websockets' WINDOW for a window key.
func WindowTopic(key string) string { return "-window." + key }

// UserTopic is df_websockets' USER for a user of a model
// ("<app_label>.<model_name>", settings.AUTH_USER_MODEL lower-cased, such
// as auth.user).
func UserTopic(model, pk string) string { return "-" + model + "." + pk }

// StringTopic is the topic of a Python str.
func StringTopic(s string) string { return "-str." + sha224([]byte(s)) }

// sha224 returns the hex SHA-224 of b (Python's hashlib.sha224).
func sha224(b []byte) string {
	sum := sha256.Sum224(b)
	return hex.EncodeToString(sum[:])
}

// Group returns the channel-layer group df_websockets names a topic by:
// the hex sha256 of the serialized topic.
func Group(topic string) string {
	sum := sha256.Sum256([]byte(topic))
	return hex.EncodeToString(sum[:])
}

var (
	modelRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$`)
	classRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	intRE   = regexp.MustCompile(`^-?[0-9]+$`)
)

// pyHashModulus is Python's modulus for the hash of integers, 2**61 - 1
// (sys.hash_info.modulus on 64-bit builds).
var pyHashModulus = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 61), big.NewInt(1))

// pyIntHash returns Python's hash() of an integer given in decimal:
// |n| mod 2**61-1 with n's sign, and -2 for -1.
func pyIntHash(decimal string) string {
	n, _ := new(big.Int).SetString(decimal, 10)
	h := new(big.Int).Mod(new(big.Int).Abs(n), pyHashModulus)
	if n.Sign() < 0 {
		h.Neg(h)
	}
	if h.Cmp(big.NewInt(-1)) == 0 {
		h.SetInt64(-2)
	}
	return h.String()
}

// Topic serializes one topic value as df_websockets does its Python
// object:
//
//	"room1"                              str        → -str.<sha224("room1")>
//	100                                  int        → -int.100 (Python's hash(): -int.-2 for -1)
//	true / false                         bool       → -bool.1 / -bool.0
//	{"model": "app.thing", "pk": 3}      a model instance → -app.thing.3 (pk null, 0 or "": 0)
//	{"session": "k"}                     Session(k) → -session.k
//	{"class": "Thing"}                   a class    → -Thing
//	{"topic": "-anything"}               an already serialized topic, as is
//
// Other values (null, floats, arrays, other objects) are refused with a
// CodeBadRequest error: df_websockets' name for them depends on Python's
// hash of the object, which JSON cannot carry.
func Topic(v json.RawMessage) (string, error) {
	t := bytes.TrimSpace(v)
	bad := func(format string, args ...any) (string, error) {
		return "", switchyard.Errorf(switchyard.CodeBadRequest, format, args...)
	}
	switch {
	case len(t) == 0:
		return bad("a topic must be a string, an integer, a boolean or an object")
	case t[0] == '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return bad("a topic string is not valid JSON")
		}
		return StringTopic(s), nil
	case intRE.Match(t):
		return "-int." + pyIntHash(string(t)), nil
	case bytes.Equal(t, []byte("true")):
		return "-bool.1", nil
	case bytes.Equal(t, []byte("false")):
		return "-bool.0", nil
	case t[0] == '{':
		return objectTopic(t)
	}
	return bad("topic %s: a topic must be a string, an integer, a boolean, or an object {model, pk}, {session}, {class} or {topic}", clip(string(t)))
}

// objectTopic serializes the object forms of Topic.
func objectTopic(t []byte) (string, error) {
	var o map[string]json.RawMessage
	if err := json.Unmarshal(t, &o); err != nil {
		return "", switchyard.Errorf(switchyard.CodeBadRequest, "a topic object is not valid JSON")
	}
	str := func(k string) (string, bool) {
		var s string
		raw, ok := o[k]
		return s, ok && json.Unmarshal(raw, &s) == nil
	}
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	bad := func(format string, args ...any) (string, error) {
		return "", switchyard.Errorf(switchyard.CodeBadRequest, format, args...)
	}
	switch {
	case len(o) == 2 && o["model"] != nil && o["pk"] != nil, len(o) == 1 && o["model"] != nil:
		model, ok := str("model")
		if !ok || !modelRE.MatchString(model) {
			return bad("a topic's model must be \"<app_label>.<model_name>\", like \"auth.user\" (Django's _meta.label_lower)")
		}
		pk, err := pkString(o["pk"])
		if err != nil {
			return "", err
		}
		return "-" + model + "." + pk, nil
	case len(o) == 1 && o["session"] != nil:
		key, ok := str("session")
		if !ok || key == "" {
			return bad("a topic's session must be a non-empty string (the session key)")
		}
		return "-session." + key, nil
	case len(o) == 1 && o["class"] != nil:
		name, ok := str("class")
		if !ok || !classRE.MatchString(name) {
			return bad("a topic's class must be a Python class name")
		}
		return "-" + name, nil
	case len(o) == 1 && o["topic"] != nil:
		raw, ok := str("topic")
		if !ok || !strings.HasPrefix(raw, "-") || len(raw) < 2 {
			return bad("a serialized topic must be a string starting with \"-\", like \"-str.<sha224>\"")
		}
		return raw, nil
	}
	return bad("a topic object must be {model, pk}, {session}, {class} or {topic} (got the keys %s)", strings.Join(keys, ", "))
}

// pkString is Python's f"{pk or 0}" for a JSON pk.
func pkString(raw json.RawMessage) (string, error) {
	t := bytes.TrimSpace(raw)
	switch {
	case len(t) == 0, bytes.Equal(t, []byte("null")), bytes.Equal(t, []byte("false")), bytes.Equal(t, []byte(`""`)):
		return "0", nil
	case t[0] == '"':
		var s string
		if json.Unmarshal(t, &s) != nil {
			break
		}
		return s, nil
	case intRE.Match(t):
		n, _ := new(big.Int).SetString(string(t), 10)
		return n.String(), nil // "-0" → "0", "007" cannot occur in JSON
	}
	return "", switchyard.Errorf(switchyard.CodeBadRequest, "a topic's pk must be a string, an integer or null")
}

// clip shortens a value quoted in an error.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
