package binding

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/resource"
)

// formField describes one field of a form, as channels-binding's form
// event shows a Django form field.
type formField struct {
	Name  string          `json:"name"`
	Label string          `json:"label"`
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

// formReply is the form event's answer.
type formReply struct {
	Errors  any             `json:"errors"`  // null, or {field: [messages]}
	Success *bool           `json:"success"` // null when only described
	Object  json.RawMessage `json:"object"`  // the record, or null
	Fields  []formField     `json:"fields"`
	ID      any             `json:"id"` // the pk, or null
}

// formTypes are the Django form field classes of the field types.
var formTypes = map[string]string{
	config.FieldString:   "CharField",
	config.FieldText:     "CharField",
	config.FieldInt:      "IntegerField",
	config.FieldFloat:    "FloatField",
	config.FieldBool:     "BooleanField",
	config.FieldDatetime: "DateTimeField",
	config.FieldJSON:     "JSONField",
}

// label is Django's default label: the name with spaces, capitalised.
func label(name string) string {
	s := strings.ReplaceAll(name, "_", " ")
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

// fields describes the fields a client may set, with their values: the
// record's, overlaid with what was submitted; a new record's defaults.
func formFields(sc *resource.Schema, record json.RawMessage, submitted map[string]json.RawMessage) []formField {
	var values map[string]json.RawMessage
	json.Unmarshal(record, &values)
	out := []formField{}
	for _, f := range sc.Fields() {
		if !sc.Writable(f.Name) {
			continue
		}
		v, ok := submitted[f.Name]
		if !ok {
			v, ok = values[f.Name]
		}
		if !ok && record == nil && f.Default != nil {
			v, _ = json.Marshal(f.Default)
		}
		if len(v) == 0 {
			v = json.RawMessage("null")
		}
		out = append(out, formField{Name: f.Name, Label: label(f.Name), Type: formTypes[f.Type], Value: v})
	}
	return out
}

// writable keeps the values a client may set: like a Django form, data
// the form has no field for (the pk, read-only and owner fields, unknown
// keys) is ignored, so a record sent back as it was retrieved saves.
func writable(sc *resource.Schema, in map[string]json.RawMessage) json.RawMessage {
	out := make(map[string]json.RawMessage, len(in))
	for k, v := range in {
		if sc.Writable(k) {
			out[k] = v
		}
	}
	b, _ := json.Marshal(out)
	return b
}

// write creates (no pk) or changes a record with the fields sent; the
// fields not sent keep their values.
func (h *Handler) write(ctx context.Context, sess *session, st *Stream, pk int64, has bool, body json.RawMessage) (json.RawMessage, error) {
	svc := h.cfg.Resources
	var out json.RawMessage
	var err error
	if has {
		out, err = svc.Write(ctx, st.Resource, sess.who, pk, body, resource.Patch)
	} else {
		out, err = svc.Create(ctx, st.Resource, sess.who, body)
	}
	if errors.Is(err, resource.ErrNotFound) {
		return nil, notFound(st, strconv.FormatInt(pk, 10))
	}
	return out, err
}

// form describes the form of a record (#uid or data.id) or of a new one;
// with submit, it validates and saves the values (creating a record
// without a pk) and answers with the errors or the saved record.
func (h *Handler) form(ctx context.Context, sess *session, st *Stream, r *Request, d data) error {
	if err := d.object(); err != nil {
		return err
	}
	sc, _ := h.cfg.Resources.Schema(st.Resource)
	var pk int64
	var current json.RawMessage
	raw, has := d.pk(r)
	if has {
		var err error
		if pk, err = parsePK(raw); err != nil {
			return err
		}
		if current, err = h.record(ctx, sess, st, pk); err != nil {
			return err
		}
	}
	var id any
	if has {
		id = pk
	}
	object := json.RawMessage("null")
	if current != nil {
		object = current
	}
	rawSubmit, submitted := d.obj["submit"]
	if !submitted || string(rawSubmit) == "null" {
		h.reply(sess, r.Event, formReply{Object: object, Fields: formFields(sc, current, nil), ID: id})
		return nil
	}
	var submit map[string]json.RawMessage
	if err := json.Unmarshal(rawSubmit, &submit); err != nil || submit == nil {
		return failf("AttributeError: %s object has no attribute 'get'", pyType(rawSubmit))
	}
	out, err := h.write(ctx, sess, st, pk, has, writable(sc, submit))
	var ve *resource.ValidationError
	if errors.As(err, &ve) {
		no := false
		h.reply(sess, r.Event, formReply{Errors: ve.Fields, Success: &no, Object: object, Fields: formFields(sc, current, submit), ID: id})
		return nil
	}
	if err != nil {
		return err
	}
	pk = recordPK(sc.PK(), out)
	yes := true
	h.reply(sess, r.Event, formReply{Success: &yes, Object: h.withID(st, out, pk), Fields: formFields(sc, out, nil), ID: pk})
	return nil
}

// save creates (no pk) or changes a record and answers {"success": true,
// "id": pk}, or {"errors": {...}} — what the JS client's useSave reads.
func (h *Handler) save(ctx context.Context, sess *session, st *Stream, r *Request, d data) error {
	if err := d.object(); err != nil {
		return err
	}
	sc, _ := h.cfg.Resources.Schema(st.Resource)
	var pk int64
	raw, has := d.pk(r)
	if has {
		var err error
		if pk, err = parsePK(raw); err != nil {
			return err
		}
	}
	out, err := h.write(ctx, sess, st, pk, has, writable(sc, d.obj))
	var ve *resource.ValidationError
	if errors.As(err, &ve) {
		h.reply(sess, r.Event, map[string]any{"errors": ve.Fields})
		return nil
	}
	if err != nil {
		return err
	}
	h.reply(sess, r.Event, map[string]any{"success": true, "id": recordPK(sc.PK(), out)})
	return nil
}

// delete removes the record of #uid or data.id and answers {"success":
// true, "id": pk} — what the JS client's useDelete reads (channels-binding
// 1.9.8 deletes, then fails to answer).
func (h *Handler) delete(ctx context.Context, sess *session, st *Stream, r *Request, d data) error {
	if err := d.object(); err != nil && r.UID == "" {
		return err
	}
	raw, has := d.pk(r)
	if !has {
		return notFound(st, "None")
	}
	pk, err := parsePK(raw)
	if err != nil {
		return err
	}
	if err := h.cfg.Resources.Delete(ctx, st.Resource, sess.who, pk); err != nil {
		if errors.Is(err, resource.ErrNotFound) {
			return notFound(st, strconv.FormatInt(pk, 10))
		}
		return err
	}
	h.reply(sess, r.Event, map[string]any{"success": true, "id": pk})
	return nil
}
