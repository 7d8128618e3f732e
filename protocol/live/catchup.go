package live

import (
	"context"
	"encoding/json"

	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/store"
)

// instanceSub is one request_id's subscription to a record: the
// resource service's InstanceWatch decides what it receives.
type instanceSub struct {
	rid json.RawMessage
	w   *resource.InstanceWatch // nil while holding
	// seq: made with since; its events carry their change's seq.
	seq bool
	// holding: the catch-up is being built; the record's live events wait
	// in held until it is sent, then go through w (which skips those the
	// catch-up covered).
	holding bool
	held    []*resource.Event
}

// parseSince reads subscribe_instance's since: absent (or null) for a
// plain DCRF subscription, otherwise a change-log position, a
// non-negative integer.
func parseSince(raw json.RawMessage) (since int64, ok bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	if json.Unmarshal(raw, &since) != nil {
		return 0, false, &resource.ValidationError{Fields: map[string][]string{"since": {"A valid integer is required."}}}
	}
	if since < 0 {
		return 0, false, &resource.ValidationError{Fields: map[string][]string{"since": {"Ensure this value is greater than or equal to 0."}}}
	}
	return since, true, nil
}

// position is the data of the reply to a subscribe_instance with since.
type position struct {
	Seq       int64 `json:"seq"`
	Recovered bool  `json:"recovered"`
}

// subscribeSince runs subscribe_instance {pk, since}: the 201 reply with
// the position {seq, recovered}, then the record's changes after since,
// oldest first, then its live events, none lost and none repeated.
//
// The request_id is registered as holding before the catch-up is read, so
// every live event from then on waits in its held list. The catch-up
// (resource.CatchUp) reads one snapshot of the store, after that
// registration: a change at or below its seq is in the catch-up, and a
// change after it committed later, so it is published later, reaches the
// held list and is sent after the catch-up. Held events the catch-up
// already covered are dropped, and so are late live events at or below
// its seq.
func (h *Handler) subscribeSince(ctx context.Context, sess *session, stream, ch string, pk, since int64, req request) {
	is, first := sess.holdInstance(ch, req.RequestID)
	if first {
		if err := h.subscribeEvents(ctx, sess, ch); err != nil {
			sess.removeInstance(ch, req.RequestID)
			h.dcrfError(sess, stream, req, err)
			return
		}
	}
	cu, err := h.cfg.Resources.CatchUp(ctx, stream, resource.As(sess.hs.User()), pk, since, h.cfg.MaxCatchUp)
	if err != nil {
		sess.removeInstance(ch, req.RequestID)
		if sess.instanceCount(ch) == 0 {
			h.cfg.Hub.UnsubscribeSilent(ctx, sess.hs, ch)
		}
		h.dcrfError(sess, stream, req, err)
		return
	}
	frames := [][]byte{encode(stream, dcrfReply{Errors: []any{}, Data: position{Seq: cu.Seq, Recovered: cu.Recovered}, Action: req.Action, ResponseStatus: 201, RequestID: req.RequestID})}
	switch {
	case cu.Recovered:
		for _, ev := range cu.Events {
			d := resource.Delivery{Action: resource.Updated, PK: ev.PK, Seq: ev.Seq, Record: ev.Data}
			switch ev.Op {
			case store.OpCreate:
				d.Action = resource.Created
			case store.OpDelete:
				d.Action, d.Record = resource.Deleted, nil
			}
			frames = append(frames, instanceFrame(stream, req.RequestID, d, true))
		}
	case cu.Current != nil: // the record as it is, in place of the changes the log no longer holds
		frames = append(frames, instanceFrame(stream, req.RequestID, resource.Delivery{Action: resource.Updated, PK: pk, Seq: cu.Seq, Record: cu.Current}, true))
	default: // gone meanwhile
		frames = append(frames, instanceFrame(stream, req.RequestID, resource.Delivery{Action: resource.Deleted, PK: pk, Seq: cu.Seq}, true))
	}
	sess.release(stream, is, cu.Watch, frames)
}

// holdInstance registers a request_id's subscription made with since, or
// resets that request_id's subscription (a repeated subscribe catches up
// again), holding its live events. first reports whether the channel had
// no subscription on this connection before.
func (s *session) holdInstance(ch string, rid json.RawMessage) (is *instanceSub, first bool) {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.instances == nil {
		s.instances = map[string][]*instanceSub{}
	}
	for _, is := range s.instances[ch] {
		if string(is.rid) == string(rid) {
			is.seq, is.holding, is.held = true, true, nil
			return is, false
		}
	}
	is = &instanceSub{rid: rid, seq: true, holding: true}
	first = len(s.instances[ch]) == 0
	s.instances[ch] = append(s.instances[ch], is)
	s.nsubs.Add(1)
	return is, first
}

// release sends the reply and catch-up frames, then the events held
// meanwhile that the watch lets through (it skips those at or below the
// catch-up's position), and lets live events through.
func (s *session) release(stream string, is *instanceSub, w *resource.InstanceWatch, frames [][]byte) {
	s.smu.Lock()
	is.w = w
	s.smu.Unlock()
	s.sendHeld(frames, func(frames [][]byte) [][]byte {
		held := is.held
		is.held = nil
		for _, ev := range held {
			if d := w.Apply(ev); d.Action != resource.Skip {
				frames = append(frames, instanceFrame(stream, is.rid, d, true))
			}
		}
		return frames
	}, func() { is.holding = false })
}

// sendHeld queues frames, then those more adds (the events a subscription
// held meanwhile), round after round, and calls live once a round finds
// nothing: more and live run under smu, the lock every event takes, so
// the frames go out before the subscription stops holding and no live
// event is queued ahead of them.
func (s *session) sendHeld(frames [][]byte, more func([][]byte) [][]byte, live func()) {
	s.smu.Lock()
	for {
		if frames = more(frames); len(frames) == 0 {
			live()
			s.smu.Unlock()
			return
		}
		s.smu.Unlock()
		for _, f := range frames {
			s.hs.Send(f)
		}
		frames = frames[:0]
		s.smu.Lock()
	}
}
