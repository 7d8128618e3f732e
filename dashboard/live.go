package dashboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/resource"
)

// keepAlive is the time between two comments on an idle stream, so that
// proxies keep it open and a browser that went away is noticed.
const keepAlive = 15 * time.Second

// stream writes Server-Sent Events. Each write gets the server's write
// timeout afresh: a stream lasts, but a browser that stops reading is cut
// off like any slow HTTP client.
type stream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
}

// startStream answers a request with an event stream.
func (d *Dashboard) startStream(w http.ResponseWriter, r *http.Request) (*stream, bool) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	st := &stream{w: w, rc: http.NewResponseController(w), timeout: d.writeTimeout}
	st.rc.SetWriteDeadline(time.Now().Add(st.timeout))
	w.WriteHeader(http.StatusOK)
	if err := st.comment("open"); err != nil {
		return nil, false
	}
	return st, true
}

// send writes one event whose data is v as JSON (raw bytes when v is
// json.RawMessage or []byte).
func (st *stream) send(event string, v any) error {
	var data []byte
	switch v := v.(type) {
	case json.RawMessage:
		data = v
	case []byte:
		data = v
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			return err
		}
	}
	st.buf.Reset()
	if event != "" {
		st.buf.WriteString("event: " + event + "\n")
	}
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		st.buf.WriteString("data: ")
		st.buf.Write(line)
		st.buf.WriteByte('\n')
	}
	st.buf.WriteByte('\n')
	return st.write(st.buf.Bytes())
}

func (st *stream) comment(text string) error { return st.write([]byte(": " + text + "\n\n")) }

func (st *stream) write(b []byte) error {
	st.rc.SetWriteDeadline(time.Now().Add(st.timeout))
	if _, err := st.w.Write(b); err != nil {
		return err
	}
	return st.rc.Flush()
}

// errTapClosed ends an observer's writes once its stream is gone.
var errTapClosed = errors.New("dashboard: stream closed")

// tap is an observer session's transport: the hub's writer goroutine
// hands it frames, the stream's handler writes them out.
type tap struct {
	frames chan [][]byte
	closed chan struct{} // the hub closed the session (slow consumer)
	done   chan struct{} // the handler returned
	once   sync.Once
	code   int
}

func newTap() *tap {
	return &tap{frames: make(chan [][]byte), closed: make(chan struct{}), done: make(chan struct{})}
}

// WriteFrames implements hub.Writer. It blocks until the handler takes
// the frames: the hub's bounded outbox stands behind it, and closes the
// session when the browser falls too far behind.
func (t *tap) WriteFrames(ctx context.Context, frames [][]byte) error {
	batch := append([][]byte(nil), frames...)
	select {
	case t.frames <- batch:
		return nil
	case <-t.closed:
	case <-t.done:
	}
	return errTapClosed
}

// Close implements hub.Writer.
func (t *tap) Close(code int, reason string) error {
	t.once.Do(func() { t.code = code; close(t.closed) })
	return nil
}

// tapEncoder encodes what an observer receives as the JSON the live
// views read: {"kind": "publication" | "join" | "leave", ...}. It is a
// comparable value, as hub.Encoder requires.
type tapEncoder struct{}

func (tapEncoder) EncodePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) []byte {
	b, _ := json.Marshal(struct {
		Kind    string                 `json:"kind"`
		Channel string                 `json:"channel"`
		Offset  uint64                 `json:"offset,omitempty"`
		Epoch   string                 `json:"epoch,omitempty"`
		Data    json.RawMessage        `json:"data"`
		Info    *switchyard.ClientInfo `json:"info,omitempty"`
		At      time.Time              `json:"at"`
	}{"publication", ch, pub.Offset, sp.Epoch, pub.Data, pub.Info, time.Now().UTC()})
	return b
}

func (tapEncoder) EncodeJoin(ch string, info switchyard.ClientInfo) []byte {
	return presenceEvent("join", ch, info)
}

func (tapEncoder) EncodeLeave(ch string, info switchyard.ClientInfo) []byte {
	return presenceEvent("leave", ch, info)
}

func presenceEvent(kind, ch string, info switchyard.ClientInfo) []byte {
	b, _ := json.Marshal(struct {
		Kind    string                `json:"kind"`
		Channel string                `json:"channel"`
		Info    switchyard.ClientInfo `json:"info"`
		At      time.Time             `json:"at"`
	}{kind, ch, info, time.Now().UTC()})
	return b
}

// An observer is never told of subscriptions: it makes them itself.
func (tapEncoder) EncodeSubscribed(hub.SubscribeResult) []byte { return nil }
func (tapEncoder) EncodeUnsubscribed(string) []byte            { return nil }

var _ hub.Encoder = tapEncoder{}

// observe streams what a channel carries to the browser, as events named
// event, until the browser goes, the session expires or the dashboard
// closes.
func (d *Dashboard) observe(w http.ResponseWriter, r *http.Request, s *session, ch, event string) {
	t := newTap()
	o := d.cfg.Hub.Observe("dashboard-"+rand.Text(), t, tapEncoder{})
	defer func() {
		close(t.done)
		d.cfg.Hub.Disconnect(o)
	}()
	ctx, cancel := requestContext(r)
	err := d.cfg.Hub.SubscribeSilent(ctx, o, ch)
	cancel()
	if err != nil {
		code := switchyard.ErrorCode(err)
		d.fail(w, r, s, switchyard.HTTPStatus(code), string(code), switchyard.ErrorMessage(err))
		return
	}
	st, ok := d.startStream(w, r)
	if !ok {
		return
	}
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case frames := <-t.frames:
			for _, f := range frames {
				if st.send(event, json.RawMessage(f)) != nil {
					return
				}
			}
		case <-ping.C:
			if !d.cfg.Now().Before(s.expires) || st.comment("ping") != nil {
				return
			}
		case <-t.closed:
			// Too far behind (4008): say so; the page reconnects.
			st.send("end", map[string]any{"reason": "the browser fell behind the channel", "code": t.code})
			return
		case <-r.Context().Done():
			return
		case <-d.stop:
			return
		}
	}
}

// channelEvents is the live tail of a channel (?name=).
func (d *Dashboard) channelEvents(w http.ResponseWriter, r *http.Request, s *session) {
	d.observe(w, r, s, r.URL.Query().Get("name"), "message")
}

// resourceEvents streams the change events of a resource (its collection
// channel): the table reloads its page when one arrives.
func (d *Dashboard) resourceEvents(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	if _, ok := d.cfg.Resources.Schema(name); !ok {
		d.fail(w, r, s, http.StatusNotFound, "not_found", "There is no resource "+name+".")
		return
	}
	d.observe(w, r, s, resource.CollectionChannel(name), "change")
}
