package binding

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/switchyardhq/switchyard/resource"
)

// action is a built-in action of a resource stream.
type action struct {
	// permission names the resource permission a request needs before
	// anything runs ("No permision for <event>" without it); it may
	// depend on the request (form and save create or update).
	permission func(r *Request, d data) string
	run        func(h *Handler, ctx context.Context, sess *session, st *Stream, r *Request, d data) error
}

func always(p string) func(*Request, data) string { return func(*Request, data) string { return p } }

// createOrUpdate: a request with a pk updates, one without creates.
func createOrUpdate(r *Request, d data) string {
	if _, ok := d.pk(r); ok {
		return "update"
	}
	return "create"
}

// actions are the built-in actions of a resource stream: those of
// channels-binding 1.9.8's AsyncBinding, and save (which its JS client's
// useSave sends). list, create and update are not among them, as in the
// original: they are answered "No binding found".
var actions = map[string]action{
	"retrieve":           {always("read"), (*Handler).retrieve},
	"search":             {always("read"), (*Handler).search},
	"search_suggestions": {always("read"), (*Handler).searchSuggestions},
	"form": {func(r *Request, d data) string {
		if _, submit := d.obj["submit"]; submit {
			return createOrUpdate(r, d)
		}
		if _, ok := d.pk(r); ok {
			return "read"
		}
		return "create"
	}, (*Handler).form},
	"save":        {createOrUpdate, (*Handler).save},
	"delete":      {always("delete"), (*Handler).delete},
	"subscribe":   {always("read"), func(*Handler, context.Context, *session, *Stream, *Request, data) error { return nil }},
	"unsubscribe": {always("read"), func(*Handler, context.Context, *session, *Stream, *Request, data) error { return nil }},
}

// data is a request's data read as an object.
type data struct {
	obj map[string]json.RawMessage
	// list is set when the data was an array, which the original's
	// data.get(...) fails on.
	list bool
}

func readData(r *Request) data {
	var d data
	if json.Unmarshal(r.Data, &d.obj) != nil {
		d.list, d.obj = true, map[string]json.RawMessage{}
	}
	return d
}

// object fails on array data as the original does.
func (d data) object() error {
	if d.list {
		return failf("AttributeError: 'list' object has no attribute 'get'")
	}
	return nil
}

// pk returns the record a request names: its #uid, which wins over
// data.id (channels-binding's get_object).
func (d data) pk(r *Request) (json.RawMessage, bool) {
	if r.UID != "" {
		b, _ := json.Marshal(r.UID)
		return b, true
	}
	v, ok := d.obj["id"]
	if !ok || string(v) == "null" {
		return nil, false
	}
	return v, true
}

// resourceAction runs a built-in action: the resource's permission for
// it, the stream's group (joined before the action runs, so the
// connection hears of the change it makes), then the action.
func (h *Handler) resourceAction(ctx context.Context, sess *session, st *Stream, a action, r *Request) {
	sc, ok := h.cfg.Resources.Schema(st.Resource)
	if !ok {
		h.fail(sess, r, fmt.Errorf("binding: stream %s names the undeclared resource %s", st.Name, st.Resource))
		return
	}
	d := readData(r)
	if !sc.Allowed(a.permission(r, d), r.User, nil) {
		h.replyError(sess, r.Event, "No permision for "+r.Event)
		return
	}
	h.join(ctx, sess, st.Name, st)
	if err := a.run(h, ctx, sess, st, r, d); err != nil {
		h.fail(sess, r, err)
	}
}

// join subscribes the connection to a stream's group for the rest of its
// life, and to the resource's changes — which the resource service
// filters per connection with a LiveQuery over every record (Apply: the
// records its user may read).
func (h *Handler) join(ctx context.Context, sess *session, name string, st *Stream) {
	sess.smu.Lock()
	if sess.joined[name] {
		sess.smu.Unlock()
		return
	}
	if sess.joined == nil {
		sess.joined = map[string]bool{}
	}
	sess.joined[name] = true
	sess.smu.Unlock()
	hb := h.cfg.Hub
	if err := hb.SubscribeSilent(ctx, sess.hs, GroupChannel(name)); err != nil {
		h.log.Warn("binding: joining a stream's group failed", "conn", sess.hs.ID(), "stream", name, "err", err)
	}
	if st == nil || h.cfg.Resources == nil || !(st.PostSave || st.PostDelete) {
		return
	}
	q, err := h.cfg.Resources.LiveQuery(st.Resource, sess.who, resource.LiveFilter{})
	if err != nil {
		// ErrForbidden: its user may read nothing of the resource, so it
		// is told of nothing.
		return
	}
	ch := resource.CollectionChannel(st.Resource)
	sess.smu.Lock()
	if sess.changes == nil {
		sess.changes = map[string]*resource.LiveQuery{}
	}
	sess.changes[ch] = q
	sess.smu.Unlock()
	// The store's position is the ordering floor: a change made from now
	// on that reaches this process after its successor is waited for.
	pos, err := h.cfg.Resources.Position(ctx)
	if err == nil {
		err = hb.SubscribeSilentFrom(ctx, sess.hs, ch, pos+1)
	}
	if err != nil {
		h.log.Warn("binding: subscribing to a stream's changes failed", "conn", sess.hs.ID(), "stream", name, "err", err)
		sess.smu.Lock()
		delete(sess.changes, ch)
		sess.smu.Unlock()
	}
}

// parsePK reads a primary key as Django's IntegerField does: an integer,
// or a string holding one.
func parsePK(raw json.RawMessage) (int64, error) {
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if i, err := n.Int64(); err == nil {
			return i, nil
		}
		if f, err := n.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), nil
		}
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			return i, nil
		}
		return 0, failf("ValueError: Field 'id' expected a number but got %s.", pyRepr(raw))
	}
	return 0, failf("ValueError: Field 'id' expected a number but got %s.", pyRepr(raw))
}

// pyRepr shows a JSON value roughly as Python's repr would.
func pyRepr(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return "'" + s + "'"
	}
	switch v := string(raw); v {
	case "true":
		return "True"
	case "false":
		return "False"
	case "null":
		return "None"
	default:
		if len(v) > 40 {
			return v[:40] + "…"
		}
		return v
	}
}

func notFound(st *Stream, pk string) error {
	return failf("DoesNotExist: %s id:%s Does Not Exist", st.Name, pk)
}

// record retrieves one record as the stream shows it: the record with an
// "id" key.
func (h *Handler) record(ctx context.Context, sess *session, st *Stream, pk int64) (json.RawMessage, error) {
	rec, err := h.cfg.Resources.Retrieve(ctx, st.Resource, sess.who, pk)
	if errors.Is(err, resource.ErrNotFound) {
		return nil, notFound(st, strconv.FormatInt(pk, 10))
	}
	if err != nil {
		return nil, err
	}
	return h.withID(st, rec, pk), nil
}

// withID adds "id" to a record whose primary key has another name: every
// row channels-binding sends carries id.
func (h *Handler) withID(st *Stream, rec json.RawMessage, pk int64) json.RawMessage {
	if sc, ok := h.cfg.Resources.Schema(st.Resource); ok && sc.PK() == "id" {
		return rec
	}
	out := strconv.AppendInt([]byte(`{"id":`), pk, 10)
	if len(rec) > 2 {
		out = append(out, ',')
	}
	return append(out, rec[1:]...)
}

// retrieve: the record of #uid or data.id, or the records of a list of
// ids (all of them, or an error).
func (h *Handler) retrieve(ctx context.Context, sess *session, st *Stream, r *Request, d data) error {
	if err := d.object(); err != nil && r.UID == "" {
		return err
	}
	raw, ok := d.pk(r)
	if !ok {
		return notFound(st, "None")
	}
	if r.UID == "" && len(raw) > 0 && raw[0] == '[' {
		var ids []json.RawMessage
		if err := json.Unmarshal(raw, &ids); err != nil {
			return failf("ValueError: Field 'id' expected a number but got %s.", pyRepr(raw))
		}
		if len(ids) > h.cfg.MaxRetrieveIDs {
			return failf("too many ids: at most %d per retrieve (binding.max_retrieve_ids)", h.cfg.MaxRetrieveIDs)
		}
		out := make([]json.RawMessage, 0, len(ids))
		for _, id := range ids {
			pk, err := parsePK(id)
			if err != nil {
				return err
			}
			rec, err := h.record(ctx, sess, st, pk)
			if err != nil {
				return err
			}
			out = append(out, rec)
		}
		h.reply(sess, r.Event, out)
		return nil
	}
	pk, err := parsePK(raw)
	if err != nil {
		return err
	}
	rec, err := h.record(ctx, sess, st, pk)
	if err != nil {
		return err
	}
	h.reply(sess, r.Event, rec)
	return nil
}

// pyFalsy reports whether Python's "or" skips a JSON value: null,
// false, 0, "", [] and {}.
func pyFalsy(raw json.RawMessage) bool {
	switch s := strings.TrimSpace(string(raw)); s {
	case "", "null", "false", `""`, "[]", "{}":
		return true
	default:
		var f float64
		return json.Unmarshal(raw, &f) == nil && f == 0
	}
}

// pyInt converts a JSON value as Python's int() does, with its errors.
func pyInt(raw json.RawMessage) (int64, error) {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "true":
		return 1, nil
	case s == "false":
		return 0, nil
	case s == "" || s == "null":
		return 0, failf("TypeError: int() argument must be a string, a bytes-like object or a real number, not 'NoneType'")
	}
	var num json.Number
	if json.Unmarshal(raw, &num) == nil {
		f, err := num.Float64()
		if err != nil || math.IsInf(f, 0) || math.Abs(f) > 1<<53 {
			return 0, failf("OverflowError: cannot convert %s to integer", s)
		}
		if i, err := num.Int64(); err == nil {
			return i, nil
		}
		return int64(f), nil
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		i, err := strconv.ParseInt(strings.TrimSpace(str), 10, 64)
		if err != nil {
			return 0, failf("ValueError: invalid literal for int() with base 10: '%s'", str)
		}
		return i, nil
	}
	return 0, failf("TypeError: int() argument must be a string, a bytes-like object or a real number, not %s", pyType(raw))
}

// searchReply is search's answer.
type searchReply struct {
	Page  int64             `json:"page"`
	Limit int64             `json:"limit"`
	Count int               `json:"count"`
	Order json.RawMessage   `json:"order"`
	Rows  []json.RawMessage `json:"rows"`
}

// search pages the stream's records as channels-binding's paginate does:
// per page limit (or the resource's page_size) clamped to 10..100; a page
// that is not a number is 1, one past the end or below 1 the last
// (Django's Paginator.get_page); order applied as configured (inverted
// by default, as the original); filters on equality.
func (h *Handler) search(ctx context.Context, sess *session, st *Stream, r *Request, d data) error {
	if err := d.object(); err != nil {
		return err
	}
	sc, _ := h.cfg.Resources.Schema(st.Resource)
	limit := int64(sc.PageSize())
	if raw := d.obj["limit"]; !pyFalsy(raw) {
		n, err := pyInt(raw)
		if err != nil {
			return err
		}
		limit = n
	}
	perPage := max(10, min(100, limit))
	page := int64(1) // no page, or one int() refuses
	if raw, ok := d.obj["page"]; ok {
		if n, err := pyInt(raw); err == nil {
			page = n
		}
	}
	q := resource.ListQuery{Limit: int(perPage)}
	orderEcho := json.RawMessage("null")
	if raw, ok := d.obj["order"]; ok && string(raw) != "null" {
		orderEcho = raw
		var order string
		if err := json.Unmarshal(raw, &order); err != nil {
			return failf("AttributeError: %s object has no attribute 'replace'", pyType(raw))
		}
		if order = strings.ReplaceAll(strings.TrimSpace(order), ".", "__"); order != "" {
			desc := strings.HasPrefix(order, "-")
			field := strings.TrimPrefix(order, "-")
			if h.cfg.InvertedOrdering {
				desc = !desc
			}
			o := field
			if desc {
				o = "-" + field
			}
			q.Ordering = []string{o}
			if field != sc.PK() && field != "id" {
				q.Ordering = append(q.Ordering, sc.PK()) // stable pages on ties
			}
		}
	}
	if raw, ok := d.obj["filters"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &q.Filter); err != nil {
			return failf("AttributeError: %s object has no attribute 'items'", pyType(raw))
		}
		for field, v := range q.Filter {
			if len(v) > 0 && v[0] == '[' {
				return failf("filters.%s: a list of values is not supported; filter on one value", field)
			}
		}
	}
	list := func(page int64) (resource.ListResult, error) {
		q.Offset = int((page - 1) * perPage)
		return h.cfg.Resources.List(ctx, st.Resource, sess.who, q)
	}
	// Django's get_page: a page below 1 or past the end is the last one,
	// which the count of a first query tells.
	asked := page
	if page < 1 || page > 1<<40/perPage {
		asked = 1
	}
	res, err := list(asked)
	if err != nil {
		return err
	}
	if pages := max(1, (int64(res.Count)+perPage-1)/perPage); page < 1 || page > pages {
		page = pages
	}
	if page != asked {
		if res, err = list(page); err != nil {
			return err
		}
	}
	rows := make([]json.RawMessage, len(res.Results))
	for i, rec := range res.Results {
		rows[i] = h.withID(st, rec, recordPK(sc.PK(), rec))
	}
	h.reply(sess, r.Event, searchReply{Page: page, Limit: perPage, Count: res.Count, Order: orderEcho, Rows: rows})
	return nil
}

// pyType names a JSON value's Python type, for error texts.
func pyType(raw json.RawMessage) string {
	switch s := strings.TrimSpace(string(raw)); {
	case s == "":
		return "'NoneType'"
	case s[0] == '{':
		return "'dict'"
	case s[0] == '[':
		return "'list'"
	case s == "true" || s == "false":
		return "'bool'"
	case s[0] == '"':
		return "'str'"
	case strings.ContainsAny(s, ".eE"):
		return "'float'"
	}
	return "'int'"
}

// recordPK reads the primary key of an encoded record.
func recordPK(pkField string, rec json.RawMessage) int64 {
	var m map[string]json.RawMessage
	json.Unmarshal(rec, &m)
	var pk int64
	json.Unmarshal(m[pkField], &pk)
	return pk
}

// searchSuggestions is the original's stub: the data back under "query".
func (h *Handler) searchSuggestions(ctx context.Context, sess *session, st *Stream, r *Request, d data) error {
	h.reply(sess, r.Event, map[string]json.RawMessage{"query": r.Data})
	return nil
}
