package live

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/resource"
)

// resource runs a DCRF action on a resource stream (specs/dcrf.md §1.4):
// create 201, retrieve/list/update/patch 200, delete 204 with data null.
func (h *Handler) resource(ctx context.Context, sess *session, stream string, req request) {
	svc := h.cfg.Resources
	user := sess.hs.User()
	fail := func(err error) { h.dcrfError(sess, stream, req, err) }
	reply := func(status int, data any) {
		h.sendReply(sess, encode(stream, dcrfReply{Errors: []any{}, Data: data, Action: req.Action, ResponseStatus: status, RequestID: requestID(req)}), fail)
	}
	if req.Action == "" {
		fail(switchyard.Errorf(switchyard.CodeMethodNotAllowed, "Unable to find action in message body."))
		return
	}
	switch req.Action {
	case "create":
		out, err := svc.Create(ctx, stream, user, req.Data)
		if err != nil {
			fail(err)
			return
		}
		reply(201, out)
	case "retrieve", "update", "patch", "delete":
		pk, err := parsePK(req.PK)
		if err != nil {
			fail(err)
			return
		}
		switch req.Action {
		case "retrieve":
			out, err := svc.Retrieve(ctx, stream, user, pk)
			if err != nil {
				fail(err)
				return
			}
			reply(200, out)
		case "update", "patch":
			mode := resource.Update
			if req.Action == "patch" {
				mode = resource.Patch
			}
			out, err := svc.Write(ctx, stream, user, pk, req.Data, mode)
			if err != nil {
				fail(err)
				return
			}
			reply(200, out)
		case "delete":
			if err := svc.Delete(ctx, stream, user, pk); err != nil {
				fail(err)
				return
			}
			reply(204, nil)
		}
	case "list":
		q, err := listQuery(req)
		if err == nil {
			err = h.checkSearch(q.Search)
		}
		if err != nil {
			fail(err)
			return
		}
		sc, _ := svc.Schema(stream)
		paginated := req.Limit != nil || req.Offset != nil
		if paginated && req.Limit == nil {
			q.Limit = sc.PageSize()
		}
		res, err := svc.List(ctx, stream, user, q)
		if err != nil {
			fail(err)
			return
		}
		if !paginated {
			reply(200, res.Results) // DCRF's list: a bare array
			return
		}
		reply(200, pageReply{Count: res.Count, Results: res.Results, Limit: q.Limit, Offset: q.Offset})
	case "subscribe_instance", "unsubscribe_instance":
		pk, err := parsePK(req.PK)
		if err != nil {
			fail(err)
			return
		}
		if len(req.RequestID) == 0 || string(req.RequestID) == "null" {
			fail(&resource.ValidationError{Fields: map[string][]string{"request_id": {"This field is required."}}})
			return
		}
		ch := InstanceChannel(stream, pk)
		if req.Action == "unsubscribe_instance" {
			if !sess.removeInstance(ch, req.RequestID) {
				fail(switchyard.Errorf(switchyard.CodeNotFound, "Subscription not found"))
				return
			}
			if sess.instanceCount(ch) == 0 {
				h.cfg.Hub.UnsubscribeSilent(ctx, sess.hs, ch)
			}
			reply(204, nil)
			return
		}
		since, withSince, err := parseSince(req.Since)
		if err == nil {
			err = sess.admit()
		}
		if err != nil {
			fail(err)
			return
		}
		if withSince {
			h.subscribeSince(ctx, sess, stream, ch, pk, since, req)
			return
		}
		if _, err := svc.Retrieve(ctx, stream, user, pk); err != nil {
			fail(err)
			return
		}
		if n, added := sess.addInstance(ch, req.RequestID); added && n == 1 {
			if err := h.cfg.Hub.SubscribeSilent(ctx, sess.hs, ch); err != nil {
				sess.removeInstance(ch, req.RequestID)
				fail(err)
				return
			}
		}
		reply(201, nil)
	case "subscribe_list", "subscribe_many":
		if len(req.RequestID) == 0 || string(req.RequestID) == "null" {
			fail(&resource.ValidationError{Fields: map[string][]string{"request_id": {"This field is required."}}})
			return
		}
		sc, _ := svc.Schema(stream)
		ls := listSub{rid: req.RequestID, many: req.Action == "subscribe_many"}
		verr := &resource.ValidationError{Fields: map[string][]string{}}
		for field, raw := range req.Filter {
			if _, ok := sc.Field(field); !ok && field != sc.PK() {
				verr.Fields[field] = append(verr.Fields[field], "Unknown field to filter on.")
				continue
			}
			var v any
			json.Unmarshal(raw, &v)
			if ls.filter == nil {
				ls.filter = map[string]any{}
			}
			ls.filter[field] = v
		}
		if len(verr.Fields) > 0 {
			fail(verr)
			return
		}
		if req.Things != nil {
			ls.pks = map[int64]bool{}
			for _, pk := range req.Things {
				ls.pks[pk] = true
			}
		}
		// dcrf-client 1.x sends a custom subscription to one record with
		// the pk under pkField: {"action": "subscribe_many", "id": 5}.
		pkRaw := req.PK
		if sc.PK() == "id" {
			pkRaw = req.ID
		}
		if len(pkRaw) > 0 && string(pkRaw) != "null" {
			pk, err := parsePK(pkRaw)
			if err != nil {
				fail(err)
				return
			}
			ls.pks = map[int64]bool{pk: true}
		}
		if err := sess.admit(); err != nil {
			fail(err)
			return
		}
		ch := CollectionChannel(stream)
		if sess.addList(ch, ls) == 1 {
			if err := h.cfg.Hub.SubscribeSilent(ctx, sess.hs, ch); err != nil {
				sess.removeList(ch, req.RequestID)
				fail(err)
				return
			}
		}
		reply(201, nil)
	case "unsubscribe_list", "unsubscribe_many":
		ch := CollectionChannel(stream)
		if !sess.removeList(ch, req.RequestID) {
			fail(switchyard.Errorf(switchyard.CodeNotFound, "Subscription not found"))
			return
		}
		if sess.listCount(ch) == 0 {
			h.cfg.Hub.UnsubscribeSilent(ctx, sess.hs, ch)
		}
		reply(204, nil)
	default:
		fail(switchyard.Errorf(switchyard.CodeMethodNotAllowed, "Method %q not allowed.", req.Action))
	}
}

// listSub is a live query: the rows of a resource matching filter (and,
// for subscribe_many with things, one of pks).
type listSub struct {
	rid    json.RawMessage
	filter map[string]any
	pks    map[int64]bool
	many   bool // subscribe_many: a delete carries the whole record, as dcrf-client's test app sends it
}

// matches reports whether a record (decoded JSON) belongs to the query.
func (l *listSub) matches(pk int64, rec map[string]any) bool {
	if rec == nil {
		return false
	}
	if l.pks != nil && !l.pks[pk] {
		return false
	}
	for k, v := range l.filter {
		if !reflect.DeepEqual(rec[k], v) {
			return false
		}
	}
	return true
}

// CollectionChannel is the hub channel of every change of a resource.
func CollectionChannel(resourceName string) string { return "$resource:" + resourceName }

func (s *session) addList(ch string, ls listSub) int {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.lists == nil {
		s.lists = map[string][]listSub{}
	}
	subs := s.lists[ch]
	for i := range subs {
		if string(subs[i].rid) == string(ls.rid) {
			subs[i] = ls // a resubscribe with the same request_id replaces it
			return len(subs)
		}
	}
	s.lists[ch] = append(subs, ls)
	s.nsubs.Add(1)
	return len(s.lists[ch])
}

func (s *session) removeList(ch string, rid json.RawMessage) bool {
	s.smu.Lock()
	defer s.smu.Unlock()
	subs := s.lists[ch]
	for i := range subs {
		if string(subs[i].rid) == string(rid) {
			s.lists[ch] = append(subs[:i:i], subs[i+1:]...)
			if len(s.lists[ch]) == 0 {
				delete(s.lists, ch)
			}
			s.nsubs.Add(-1)
			return true
		}
	}
	return false
}

func (s *session) listCount(ch string) int {
	s.smu.Lock()
	defer s.smu.Unlock()
	return len(s.lists[ch])
}

// InstanceChannel is the hub channel of one record's changes.
func InstanceChannel(resourceName string, pk int64) string {
	return "$resource:" + resourceName + ":" + strconv.FormatInt(pk, 10)
}

// addInstance records a plain subscription and returns how many the
// channel now has on this connection, and whether this request_id is new
// (a repeated subscribe with the same request_id changes nothing, as in
// DCRF).
func (s *session) addInstance(ch string, rid json.RawMessage) (int, bool) {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.instances == nil {
		s.instances = map[string][]*instanceSub{}
	}
	for _, is := range s.instances[ch] {
		if string(is.rid) == string(rid) {
			return len(s.instances[ch]), false
		}
	}
	s.instances[ch] = append(s.instances[ch], &instanceSub{rid: rid})
	s.nsubs.Add(1)
	return len(s.instances[ch]), true
}

func (s *session) removeInstance(ch string, rid json.RawMessage) bool {
	s.smu.Lock()
	defer s.smu.Unlock()
	subs := s.instances[ch]
	for i, is := range subs {
		if string(is.rid) == string(rid) {
			s.instances[ch] = append(subs[:i:i], subs[i+1:]...)
			if len(s.instances[ch]) == 0 {
				delete(s.instances, ch)
			}
			s.nsubs.Add(-1)
			return true
		}
	}
	return false
}

func (s *session) instanceCount(ch string) int {
	s.smu.Lock()
	defer s.smu.Unlock()
	return len(s.instances[ch])
}

// ResourceEvent is what the server publishes on a record's and a
// resource's hub channels.
type ResourceEvent struct {
	Op     string          `json:"op"` // create, update, delete
	PK     int64           `json:"pk"`
	Seq    int64           `json:"seq"`              // the change's place in the store's change log
	Data   json.RawMessage `json:"data,omitempty"`   // the record; absent for a delete
	Before json.RawMessage `json:"before,omitempty"` // the record before an update or delete
}

// EncodeForSession implements hub.SessionEncoder: a record's change goes
// to this connection once per request_id that subscribed to it, as DCRF
// sends it — update with the record and status 200, delete with
// {"pk": …} and status 204 — plus its seq for subscriptions made with
// since. A subscription whose catch-up is being built holds the event
// instead (see subscribeSince).
func (*encoder) EncodeForSession(hs *hub.Session, ch string, pub switchyard.Publication) ([][]byte, bool) {
	rest, ok := strings.CutPrefix(ch, "$resource:")
	if !ok {
		return nil, false
	}
	sess, ok := hs.Value().(*session)
	if !ok {
		return nil, true
	}
	var ev ResourceEvent
	if json.Unmarshal(pub.Data, &ev) != nil {
		return nil, true
	}
	if !strings.Contains(rest, ":") {
		return sess.listFrames(ch, rest, ev), true
	}
	stream := rest[:strings.LastIndexByte(rest, ':')]
	type target struct {
		rid     json.RawMessage
		withSeq bool
	}
	sess.smu.Lock()
	subs := sess.instances[ch]
	targets := make([]target, 0, len(subs))
	for _, is := range subs {
		switch {
		case is.holding:
			is.hold(ev)
		case !is.seq:
			targets = append(targets, target{rid: is.rid})
		case ev.Seq > is.after: // at or below: the catch-up had it
			targets = append(targets, target{rid: is.rid, withSeq: true})
		}
	}
	sess.smu.Unlock()
	frames := make([][]byte, 0, len(targets))
	for _, t := range targets {
		frames = append(frames, instanceFrame(stream, t.rid, ev, t.withSeq))
	}
	return frames, true
}

// instanceFrame is a record's change as an instance subscription's event:
// DCRF's five keys, and seq after them when withSeq.
func instanceFrame(stream string, rid json.RawMessage, ev ResourceEvent, withSeq bool) []byte {
	r := dcrfReply{Errors: []any{}, Data: ev.Data, Action: ev.Op, ResponseStatus: 200, RequestID: rid}
	if ev.Op == "delete" {
		r.Data, r.ResponseStatus = map[string]int64{"pk": ev.PK}, 204
	}
	if !withSeq {
		return encode(stream, r)
	}
	return encode(stream, seqReply{dcrfReply: r, Seq: ev.Seq})
}

// dcrfReply is a DCRF response payload, for every stream: the keys and
// their order are DCRF's; errors may hold objects (validation errors) and
// action is null when the request had none.
type dcrfReply struct {
	Errors         []any           `json:"errors"`
	Data           any             `json:"data"`
	Action         any             `json:"action"` // null when the request had none
	ResponseStatus int             `json:"response_status"`
	RequestID      json.RawMessage `json:"request_id"`
}

// pageReply is the paginated list of DCRF's limit/offset pagination.
type pageReply struct {
	Count   int               `json:"count"`
	Results []json.RawMessage `json:"results"`
	Limit   int               `json:"limit"`
	Offset  int               `json:"offset"`
}

// dcrfError answers with DCRF's error shapes: validation errors as
// [{"field": ["msg"]}], a missing record as ["Not found"].
func (h *Handler) dcrfError(sess *session, stream string, req request, err error) {
	code := switchyard.ErrorCode(err)
	var errs []any
	var ve *resource.ValidationError
	switch {
	case errors.As(err, &ve):
		errs = []any{ve.Fields}
	case code == switchyard.CodeNotFound && switchyard.ErrorMessage(err) == "Not found.":
		errs = []any{"Not found"}
	case code == switchyard.CodeInternal:
		h.log.Error("live: resource request failed", "resource", stream, "action", req.Action, "err", err)
		errs = []any{"internal error"}
	default:
		errs = []any{switchyard.ErrorMessage(err)}
	}
	var action any = req.Action
	if req.Action == "" {
		action = nil
	}
	sess.hs.Send(encode(stream, dcrfReply{Errors: errs, Action: action, ResponseStatus: switchyard.HTTPStatus(code), RequestID: requestID(req)}))
}

// parsePK reads a primary key given as a number or a numeric string.
func parsePK(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, &resource.ValidationError{Fields: map[string][]string{"pk": {"This field is required."}}}
	}
	var n int64
	if json.Unmarshal(raw, &n) == nil {
		return n, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, &resource.ValidationError{Fields: map[string][]string{"pk": {"A valid integer is required."}}}
}

// listQuery reads list's data: {search, ordering, filter} and the
// top-level limit and offset.
func listQuery(req request) (resource.ListQuery, error) {
	var q resource.ListQuery
	if req.Limit != nil {
		q.Limit = *req.Limit
	}
	if req.Offset != nil {
		q.Offset = *req.Offset
	}
	if len(req.Data) == 0 || string(req.Data) == "null" {
		return q, nil
	}
	var d struct {
		Search   string                     `json:"search"`
		Ordering json.RawMessage            `json:"ordering"`
		Filter   map[string]json.RawMessage `json:"filter"`
	}
	if err := json.Unmarshal(req.Data, &d); err != nil {
		return q, &resource.ValidationError{Fields: map[string][]string{"data": {"Expected {\"search\", \"ordering\", \"filter\"}."}}}
	}
	q.Search, q.Filter = d.Search, d.Filter
	if len(d.Ordering) > 0 && string(d.Ordering) != "null" {
		var one string
		var many []string
		switch {
		case json.Unmarshal(d.Ordering, &one) == nil:
			for part := range strings.SplitSeq(one, ",") {
				if part = strings.TrimSpace(part); part != "" {
					many = append(many, part)
				}
			}
		case json.Unmarshal(d.Ordering, &many) == nil:
		default:
			return q, &resource.ValidationError{Fields: map[string][]string{"ordering": {"Expected a string or a list of field names."}}}
		}
		q.Ordering = many
	}
	return q, nil
}

// listFrames turns a resource's change into the events of this
// connection's live queries: update while the row matches, create when it
// starts matching, delete when it stops.
func (s *session) listFrames(ch, stream string, ev ResourceEvent) [][]byte {
	s.smu.Lock()
	subs := append([]listSub(nil), s.lists[ch]...)
	s.smu.Unlock()
	if len(subs) == 0 {
		return nil
	}
	var before, after map[string]any
	if len(ev.Before) > 0 {
		json.Unmarshal(ev.Before, &before)
	}
	if len(ev.Data) > 0 {
		json.Unmarshal(ev.Data, &after)
	}
	var frames [][]byte
	for i := range subs {
		l := &subs[i]
		was, is := l.matches(ev.PK, before), l.matches(ev.PK, after)
		var action string
		status := 200
		var data any = ev.Data
		switch {
		case was && is:
			action = "update"
		case is:
			action = "create"
		case was:
			action, status = "delete", 204
			data = map[string]int64{"pk": ev.PK}
			if l.many {
				data = ev.Before
			}
		default:
			continue
		}
		frames = append(frames, encode(stream, dcrfReply{Errors: []any{}, Data: data, Action: action, ResponseStatus: status, RequestID: l.rid}))
	}
	return frames
}
