package binding

import (
	"log/slog"
	"strconv"
	"strings"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/resource"
)

// encoder is the hub.Encoder (and hub.SessionEncoder, for resource
// events) of the channels-binding wire; one value serves every session.
type encoder struct {
	svc     *resource.Service
	seq     *resource.Sequencer
	streams map[string]*Stream // by resource name
	log     *slog.Logger
}

// EncodePublication: a group's publication is a frame already (Send
// builds it); the wire subscribes its sessions to nothing else.
func (*encoder) EncodePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) []byte {
	if strings.HasPrefix(ch, Namespace+":") {
		return pub.Data
	}
	return nil
}

// The wire has no presence and tells nothing of server subscriptions.
func (*encoder) EncodeJoin(string, switchyard.ClientInfo) []byte  { return nil }
func (*encoder) EncodeLeave(string, switchyard.ClientInfo) []byte { return nil }
func (*encoder) EncodeSubscribed(hub.SubscribeResult) []byte      { return nil }
func (*encoder) EncodeUnsubscribed(string) []byte                 { return nil }

// prepared is a resource event decoded once per broadcast, with the two
// frames its subscribers may get.
type prepared struct {
	view             *resource.View
	st               *Stream
	updated, deleted []byte
}

// Prepare implements hub.SessionEncoder: a resource event is decoded once
// per broadcast and passed through the wire's Sequencer.
func (e *encoder) Prepare(ch string, pub switchyard.Publication) (any, bool) {
	name, _, instance, ok := resource.ParseChannel(ch)
	if !ok {
		return nil, false // a group: the shared frame
	}
	st := e.streams[name]
	if e.svc == nil || instance || st == nil {
		return (*prepared)(nil), true
	}
	ev, err := e.svc.DecodeEvent(pub.Data)
	if err != nil || ev.Resource != name {
		e.log.Error("binding: resource event dropped", "channel", ch, "err", err)
		return (*prepared)(nil), true
	}
	if ev, ok = e.seq.Admit(ev); !ok {
		return (*prepared)(nil), true
	}
	return &prepared{view: resource.NewView(ev), st: st}, true
}

// EncodeForSession implements hub.SessionEncoder: what the resource
// service lets through to this session's user — <stream>.updated#<pk>
// when a record it may read was created or changed, <stream>.deleted#<pk>
// when one it could read was deleted or left what it may read.
func (e *encoder) EncodeForSession(hs *hub.Session, ch string, p any, frames [][]byte) [][]byte {
	pe, _ := p.(*prepared)
	sess, _ := hs.Value().(*session)
	if pe == nil || sess == nil {
		return frames
	}
	sess.smu.Lock()
	q := sess.changes[ch]
	sess.smu.Unlock()
	if q == nil {
		return frames
	}
	switch d := q.Apply(pe.view); d.Action {
	case resource.Created, resource.Updated:
		if pe.st.PostSave {
			if pe.updated == nil {
				pe.updated = changeFrame(pe.st.Name, "updated", d.PK)
			}
			frames = append(frames, pe.updated)
		}
	case resource.Deleted:
		if pe.st.PostDelete {
			if pe.deleted == nil {
				pe.deleted = changeFrame(pe.st.Name, "deleted", d.PK)
			}
			frames = append(frames, pe.deleted)
		}
	}
	return frames
}

// changeFrame is {"event": "<stream>.<what>#<pk>", "data": true}.
func changeFrame(stream, what string, pk int64) []byte {
	return encodeFrame(frameOut{Event: stream + "." + what + "#" + strconv.FormatInt(pk, 10), Data: true})
}
