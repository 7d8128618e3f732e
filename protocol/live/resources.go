package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	who := resource.As(sess.hs.User())
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
		out, err := svc.Create(ctx, stream, who, req.Data)
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
			out, err := svc.Retrieve(ctx, stream, who, pk)
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
			out, err := svc.Write(ctx, stream, who, pk, req.Data, mode)
			if err != nil {
				fail(err)
				return
			}
			reply(200, out)
		case "delete":
			if err := svc.Delete(ctx, stream, who, pk); err != nil {
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
		res, err := svc.List(ctx, stream, who, q)
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
		ch := resource.InstanceChannel(stream, pk)
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
		w, err := svc.WatchInstance(ctx, stream, who, pk)
		if err != nil {
			fail(err)
			return
		}
		if n, added := sess.addInstance(ch, req.RequestID, w); added && n == 1 {
			if err := h.subscribeEvents(ctx, sess, ch); err != nil {
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
		var f resource.LiveFilter
		f.Filter = req.Filter
		if req.Things != nil {
			f.PKs = req.Things
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
			f.PKs = []int64{pk}
		}
		if err := sess.admit(); err != nil {
			fail(err)
			return
		}
		q, err := svc.LiveQuery(stream, who, f)
		if err != nil {
			fail(err)
			return
		}
		ch := resource.CollectionChannel(stream)
		ls := &listSub{rid: req.RequestID, q: q, many: req.Action == "subscribe_many", holding: true}
		if sess.addList(ch, ls) == 1 {
			if err := h.subscribeEvents(ctx, sess, ch); err != nil {
				sess.removeList(ch, req.RequestID)
				fail(err)
				return
			}
		}
		// The reply first, then the events that came meanwhile (a DCRF
		// consumer answers the subscribe before it handles any event).
		sess.releaseList(ls, encode(stream, dcrfReply{Errors: []any{}, Action: req.Action, ResponseStatus: 201, RequestID: requestID(req)}))
	case "unsubscribe_list", "unsubscribe_many":
		ch := resource.CollectionChannel(stream)
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

// subscribeEvents subscribes the connection to a resource event channel,
// with the store's position as the hub's ordering floor: a record's
// change made from now on that reaches this process after its successor
// is waited for, not lost.
func (h *Handler) subscribeEvents(ctx context.Context, sess *session, ch string) error {
	pos, err := h.cfg.Resources.Position(ctx)
	if err != nil {
		return err
	}
	return h.cfg.Hub.SubscribeSilentFrom(ctx, sess.hs, ch, pos+1)
}

// listSub is a live query of one request_id: the resource service's
// LiveQuery decides what it receives.
type listSub struct {
	rid  json.RawMessage
	q    *resource.LiveQuery
	many bool // subscribe_many: a delete carries the whole record, as dcrf-client's test app sends it
	// holding: the subscribe reply is not queued yet; the query's events
	// wait in held (guarded by smu), so none reaches the client before
	// the reply (releaseList).
	holding bool
	held    [][]byte
}

// releaseList queues the subscribe reply, then the events held
// meanwhile, and lets the query's events through (sendHeld).
func (s *session) releaseList(l *listSub, reply []byte) {
	s.sendHeld([][]byte{reply}, func(frames [][]byte) [][]byte {
		frames = append(frames, l.held...)
		l.held = nil
		return frames
	}, func() { l.holding = false })
}

func (s *session) addList(ch string, ls *listSub) int {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.lists == nil {
		s.lists = map[string][]*listSub{}
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

// addInstance records a plain subscription and returns how many the
// channel now has on this connection, and whether this request_id is new
// (a repeated subscribe with the same request_id changes nothing, as in
// DCRF — except that it revives a subscription that ended when the record
// became unreadable, since the caller checked it is readable again).
func (s *session) addInstance(ch string, rid json.RawMessage, w *resource.InstanceWatch) (int, bool) {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.instances == nil {
		s.instances = map[string][]*instanceSub{}
	}
	for _, is := range s.instances[ch] {
		if string(is.rid) == string(rid) {
			if !is.holding && is.w.Ended() {
				is.w, is.seq = w, false
			}
			return len(s.instances[ch]), false
		}
	}
	s.instances[ch] = append(s.instances[ch], &instanceSub{rid: rid, w: w})
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

// Prepare implements hub.SessionEncoder: a resource event is decoded once
// per broadcast, and EncodeForSession hands the decoded event to each
// subscription of the session.
func (e *encoder) Prepare(ch string, pub switchyard.Publication) (any, bool) {
	name, _, instance, ok := resource.ParseChannel(ch)
	if !ok || e.svc == nil {
		return nil, false
	}
	ev, err := e.svc.DecodeEvent(pub.Data)
	if err != nil || ev.Resource != name {
		// Nobody receives what the service cannot read: a publish that
		// bypassed it (the server API refuses those) or a bug.
		e.log.Error("live: resource event dropped", "channel", ch, "err", err)
		return (*prepared)(nil), true
	}
	if !instance {
		// A collection's events in per-record commit order (an instance
		// watch orders its own record's).
		if ev, ok = e.seq.Admit(ev); !ok {
			return (*prepared)(nil), true
		}
	}
	return &prepared{ev: ev, view: resource.NewView(ev), instance: instance, stream: mustJSON(name)}, true
}

// EncodeForSession implements hub.SessionEncoder: the frames of one
// session's subscriptions to the event's channel, one per request_id that
// the resource service lets the event through to. A subscription whose
// catch-up is being built holds the event instead (see subscribeSince).
func (e *encoder) EncodeForSession(hs *hub.Session, ch string, p any, frames [][]byte) [][]byte {
	pe, _ := p.(*prepared)
	sess, _ := hs.Value().(*session)
	if pe == nil || sess == nil {
		return frames
	}
	sess.smu.Lock()
	defer sess.smu.Unlock()
	if pe.instance {
		for _, is := range sess.instances[ch] {
			if is.holding {
				is.held = append(is.held, pe.ev)
				continue
			}
			if d := is.w.Apply(pe.ev); d.Action != resource.Skip {
				frames = append(frames, pe.frame(d, is.rid, is.seq, false))
			}
		}
		return frames
	}
	for _, l := range sess.lists[ch] {
		if d := l.q.Apply(pe.view); d.Action != resource.Skip {
			if l.holding {
				l.held = append(l.held, pe.frame(d, l.rid, false, l.many))
				continue
			}
			frames = append(frames, pe.frame(d, l.rid, false, l.many))
		}
	}
	return frames
}

// prepared is a resource event decoded once per broadcast, with the
// frame heads its subscribers share (the frames differ only by
// request_id and seq, at their end).
type prepared struct {
	ev       *resource.Event
	view     *resource.View // what the live queries share of it
	instance bool
	stream   []byte // the stream's name as JSON
	heads    [4][3][]byte
}

// Kinds of data an event frame carries.
const (
	dataRecord = iota // the record
	dataPK            // {"pk": …}
	dataBefore        // the record before the change (subscribe_many deletes)
)

// frame is one subscription's event: DCRF's five keys, and seq after them
// when withSeq. An instance delete carries {"pk": …}, a live query's too
// except subscribe_many's, which carries the record as it was when the
// service lets the subscriber read it.
func (p *prepared) frame(d resource.Delivery, rid json.RawMessage, withSeq, many bool) []byte {
	kind := dataRecord
	if d.Action == resource.Deleted {
		kind = dataPK
		if many && d.Record != nil {
			kind = dataBefore
		}
	}
	head := p.heads[d.Action][kind]
	if head == nil {
		var data []byte
		switch kind {
		case dataRecord, dataBefore:
			data = d.Record
		default:
			data = fmt.Appendf(nil, `{"pk":%d}`, d.PK)
		}
		head = eventHead(p.stream, d.Action, data)
		p.heads[d.Action][kind] = head
	}
	return eventFrame(head, rid, d.Seq, withSeq)
}

// eventHead is the start of an event frame, up to its request_id:
// {"stream":S,"payload":{"errors":[],"data":D,"action":A,"response_status":N,"request_id":
func eventHead(stream []byte, a resource.Action, data []byte) []byte {
	status := 200
	if a == resource.Deleted {
		status = 204
	}
	b := make([]byte, 0, len(stream)+len(data)+96)
	b = append(b, `{"stream":`...)
	b = append(b, stream...)
	b = append(b, `,"payload":{"errors":[],"data":`...)
	b = append(b, data...)
	b = append(b, `,"action":"`...)
	b = append(b, a.String()...)
	b = append(b, `","response_status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"request_id":`...)
	return b
}

// eventFrame completes a frame head with the request_id (and the seq).
func eventFrame(head []byte, rid json.RawMessage, seq int64, withSeq bool) []byte {
	b := make([]byte, 0, len(head)+len(rid)+32)
	b = append(b, head...)
	b = append(b, rid...)
	if withSeq {
		b = append(b, `,"seq":`...)
		b = strconv.AppendInt(b, seq, 10)
	}
	return append(b, "}}"...)
}

// instanceFrame is a record's change as an instance subscription's event,
// outside a broadcast (catch-up).
func instanceFrame(stream string, rid json.RawMessage, d resource.Delivery, withSeq bool) []byte {
	p := prepared{stream: mustJSON(stream)}
	return p.frame(d, rid, withSeq, false)
}

func mustJSON(s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return b
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
	case errors.Is(err, resource.ErrNotFound):
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
