package live

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/signal"
)

// The $signals stream: a connection is a window of the signal service
// (package signal) from open to close.
//
//	call {signal, kwargs, request_id} → 202 {job_id, job_ids} (queued),
//	  200 {result, job_ids} (a sync signal), 404 unknown, 403 not allowed,
//	  400 with {"<arg>": ["<problem>"]} in errors, 413, 429
//	pushed: {"action": "signal", "signal", "kwargs", "signal_id"}
const signalsStream = "$signals"

// signalEncoder is the /live wire of pushed signals; one value serves
// every connection.
type signalEncoder struct{}

type pushSignal struct {
	Action   string          `json:"action"`
	Signal   string          `json:"signal"`
	Kwargs   json.RawMessage `json:"kwargs"`
	SignalID string          `json:"signal_id"`
}

func (signalEncoder) EncodeSignal(p signal.Push) []byte {
	return encode(signalsStream, pushSignal{Action: "signal", Signal: p.Signal, Kwargs: p.Kwargs, SignalID: p.SignalID})
}

// attachSignals makes the connection a window (when the server has
// signals).
func (h *Handler) attachSignals(sess *session, s *opening) {
	if h.cfg.Signals == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
	defer cancel()
	err := h.cfg.Signals.Attach(ctx, signal.Window{
		ID: sess.hs.ID(), User: s.p.User, Info: s.p.Info, Transport: "live",
		RemoteAddr: s.remoteAddr, UserAgent: s.userAgent,
		Claims: s.p.Claims, Topics: s.p.Topics,
		Sender: sess.hs, Encoder: signalEncoder{},
	})
	if err != nil {
		h.log.Error("live: window not attached to signals", "conn", sess.hs.ID(), "err", err)
	}
}

func (h *Handler) detachSignals(sess *session) {
	if h.cfg.Signals != nil {
		h.cfg.Signals.Detach(sess.hs.ID())
	}
}

// signals runs a $signals action; payload is the request's payload.
func (h *Handler) signals(ctx context.Context, sess *session, req request, payload json.RawMessage) {
	if h.cfg.Signals == nil {
		h.replyError(sess, signalsStream, req, switchyard.Errorf(switchyard.CodeNotFound, "signals are not enabled on this server"))
		return
	}
	if req.Action != "call" {
		h.replyError(sess, signalsStream, req, switchyard.Errorf(switchyard.CodeMethodNotAllowed, "unknown action %q on $signals", req.Action))
		return
	}
	var call struct {
		Signal string          `json:"signal"`
		Kwargs json.RawMessage `json:"kwargs"`
	}
	if err := json.Unmarshal(payload, &call); err != nil {
		h.replyError(sess, signalsStream, req, switchyard.Errorf(switchyard.CodeBadRequest, "invalid payload: %s", jsonProblem(err)))
		return
	}
	if call.Signal == "" {
		h.replyError(sess, signalsStream, req, switchyard.Errorf(switchyard.CodeBadRequest, "signal is required"))
		return
	}
	res, err := h.cfg.Signals.Call(ctx, sess.hs.ID(), call.Signal, call.Kwargs)
	if err != nil {
		var ae *signal.ArgsError
		if errors.As(err, &ae) {
			fields := make(map[string][]string, len(ae.Args))
			for k, v := range ae.Args {
				fields[k] = []string{v}
			}
			sess.hs.Send(encode(signalsStream, dcrfReply{Errors: []any{fields}, Action: req.Action, ResponseStatus: 400, RequestID: requestID(req)}))
			return
		}
		h.replyError(sess, signalsStream, req, err)
		return
	}
	jobIDs := res.JobIDs
	if jobIDs == nil {
		jobIDs = []int64{}
	}
	if res.Sync {
		sess.hs.Send(encode(signalsStream, dcrfReply{Errors: []any{}, Data: map[string]any{"result": res.Result, "job_ids": jobIDs}, Action: req.Action, ResponseStatus: 200, RequestID: requestID(req)}))
		return
	}
	sess.hs.Send(encode(signalsStream, dcrfReply{Errors: []any{}, Data: map[string]any{"job_id": jobIDs[0], "job_ids": jobIDs}, Action: req.Action, ResponseStatus: 202, RequestID: requestID(req)}))
}
