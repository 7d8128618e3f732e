package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/signal"
)

// addSignalMethods adds the methods of the signal service and the queues
// (when the server has them): trigger, windows, queue_stats, queue_jobs,
// queue_retry, queue_discard.
func (s *Server) addSignalMethods() {
	if s.cfg.Signals != nil {
		s.methods["trigger"] = s.trigger
		s.methods["windows"] = s.windows
	}
	if s.cfg.Queue != nil {
		s.methods["queue_stats"] = s.queueStats
		s.methods["queue_jobs"] = s.queueJobs
		s.methods["queue_retry"] = s.queueRetry
		s.methods["queue_discard"] = s.queueDiscard
	}
}

// trigger: {signal, to: {windows, users, topics, broadcast}, kwargs,
// countdown (seconds), eta (RFC 3339)} → {signal_id, delivered, job_id}.
func (s *Server) trigger(r *http.Request, d *decoder) (any, error) {
	if err := d.only("signal", "to", "kwargs", "countdown", "eta"); err != nil {
		return nil, err
	}
	var t signal.Trigger
	if err := d.field("signal", &t.Signal, true); err != nil {
		return nil, err
	}
	if err := d.field("to", &t.To, true); err != nil {
		return nil, err
	}
	t.Kwargs = d.fields["kwargs"]
	var countdown float64
	if err := d.field("countdown", &countdown, false); err != nil {
		return nil, err
	}
	if countdown < 0 || countdown > 365*24*3600 {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be from 0 to one year, in seconds", "countdown")
	}
	t.Countdown = time.Duration(countdown * float64(time.Second))
	var eta string
	if err := d.field("eta", &eta, false); err != nil {
		return nil, err
	}
	if eta != "" {
		at, err := time.Parse(time.RFC3339, eta)
		if err != nil {
			return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be an RFC 3339 time, like 2026-01-02T15:04:05Z", "eta")
		}
		t.ETA = at
	}
	return s.cfg.Signals.Trigger(r.Context(), t)
}

// windows: with changes ({window, topics | add | remove | user}) sets a
// window key's topics and user → {windows: <connected windows changed on
// this process>}; without ({window?, limit?}) lists this process's
// windows → {windows: [...]}.
func (s *Server) windows(r *http.Request, d *decoder) (any, error) {
	if err := d.only("window", "topics", "add", "remove", "user", "limit"); err != nil {
		return nil, err
	}
	var u signal.WindowUpdate
	if err := d.field("window", &u.Window, false); err != nil {
		return nil, err
	}
	for name, dst := range map[string]*[]string{"topics": &u.Topics, "add": &u.Add, "remove": &u.Remove} {
		if err := d.field(name, dst, false); err != nil {
			return nil, err
		}
	}
	if _, ok := d.fields["topics"]; ok && u.Topics == nil {
		u.Topics = []string{} // "topics": [] clears
	}
	if err := d.field("user", &u.User, false); err != nil {
		return nil, err
	}
	if u.Topics == nil && u.Add == nil && u.Remove == nil && u.User == nil {
		limit := 100
		if err := d.field("limit", &limit, false); err != nil {
			return nil, err
		}
		if limit < 1 || limit > 10000 {
			return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be from 1 to 10000", "limit")
		}
		ws := s.cfg.Signals.Windows(u.Window, limit)
		if ws == nil {
			ws = []signal.WindowState{}
		}
		return map[string]any{"windows": ws, "total": s.cfg.Signals.NumWindows()}, nil
	}
	if _, ok := d.fields["limit"]; ok {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q only applies to listing windows", "limit")
	}
	if u.Window == "" {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q is required to change a window", "window")
	}
	n, err := s.cfg.Signals.SetWindow(r.Context(), u)
	if err != nil {
		return nil, err
	}
	return map[string]int{"windows": n}, nil
}

func (s *Server) queueStats(r *http.Request, d *decoder) (any, error) {
	if err := d.only(); err != nil {
		return nil, err
	}
	st, err := s.cfg.Queue.Stats(r.Context())
	if err != nil {
		return nil, err
	}
	return map[string]any{"queues": st}, nil
}

// queue_jobs: {queue, state, limit} → {jobs: [...]}, newest first.
func (s *Server) queueJobs(r *http.Request, d *decoder) (any, error) {
	if err := d.only("queue", "state", "limit"); err != nil {
		return nil, err
	}
	var p queue.ListParams
	if err := d.field("queue", &p.Queue, false); err != nil {
		return nil, err
	}
	if p.Queue != "" {
		if _, ok := s.cfg.Queue.Config(p.Queue); !ok {
			return nil, switchyard.Errorf(switchyard.CodeNotFound, "unknown queue %q", p.Queue)
		}
	}
	if err := d.field("state", &p.State, false); err != nil {
		return nil, err
	}
	if p.State != "" {
		if _, ok := queue.NormalizeState(p.State); !ok {
			return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be one of %s", "state", strings.Join(queue.States(), ", "))
		}
	}
	p.Limit = 100
	if err := d.field("limit", &p.Limit, false); err != nil {
		return nil, err
	}
	if p.Limit < 1 || p.Limit > 1000 {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be from 1 to 1000", "limit")
	}
	jobs, err := s.cfg.Queue.Jobs(r.Context(), p)
	if err != nil {
		return nil, err
	}
	if jobs == nil {
		jobs = []queue.Info{}
	}
	return map[string]any{"jobs": jobs}, nil
}

func (s *Server) queueRetry(r *http.Request, d *decoder) (any, error) {
	id, err := jobID(d)
	if err != nil {
		return nil, err
	}
	in, err := s.cfg.Queue.Retry(r.Context(), id)
	if err != nil {
		return nil, queueError(err, id)
	}
	return map[string]any{"job": in}, nil
}

func (s *Server) queueDiscard(r *http.Request, d *decoder) (any, error) {
	id, err := jobID(d)
	if err != nil {
		return nil, err
	}
	in, err := s.cfg.Queue.Discard(r.Context(), id)
	if err != nil {
		return nil, queueError(err, id)
	}
	return map[string]any{"job": in}, nil
}

func jobID(d *decoder) (int64, error) {
	if err := d.only("id"); err != nil {
		return 0, err
	}
	var id json.Number
	if err := d.field("id", &id, true); err != nil {
		return 0, err
	}
	n, err := id.Int64()
	if err != nil || n <= 0 {
		return 0, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be a job id (a positive integer)", "id")
	}
	return n, nil
}

func queueError(err error, id int64) error {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return switchyard.Errorf(switchyard.CodeNotFound, "no job %d", id)
	case errors.Is(err, queue.ErrState):
		return switchyard.Errorf(switchyard.CodeBadRequest, "%s", strings.TrimPrefix(err.Error(), "queue: "))
	}
	return err
}
