package signal

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/queue"
)

// Target chooses windows; a window chosen several ways receives a
// trigger once.
type Target struct {
	// Windows are client ids or window keys.
	Windows []string `json:"windows,omitempty"`
	// Users reach every window of each user.
	Users []string `json:"users,omitempty"`
	// Topics reach every window in each topic.
	Topics []string `json:"topics,omitempty"`
	// Broadcast reaches every window.
	Broadcast bool `json:"broadcast,omitempty"`
}

// IsZero reports whether the target chooses nothing.
func (t Target) IsZero() bool {
	return len(t.Windows) == 0 && len(t.Users) == 0 && len(t.Topics) == 0 && !t.Broadcast
}

// Trigger is a signal sent from the server to windows.
type Trigger struct {
	Signal string
	To     Target
	// Kwargs is a JSON object (nil: {}).
	Kwargs json.RawMessage
	// Countdown or ETA delay the delivery: the trigger becomes a durable
	// job (queue "default") delivered when it comes due (within the
	// queue scheduler's few seconds).
	Countdown time.Duration
	ETA       time.Time
}

// TriggerResult says what a trigger did.
type TriggerResult struct {
	// SignalID is the trigger's id, the same in every window's frame.
	SignalID string `json:"signal_id"`
	// Delivered counts the windows of this process it was queued to
	// (0 for a delayed trigger).
	Delivered int `json:"delivered"`
	// JobID is the job of a delayed trigger (0 otherwise).
	JobID int64 `json:"job_id,omitempty"`
}

// maxTargets bounds each list of a Target.
const maxTargets = 10000

// Trigger sends a signal to windows: now, or as a durable job when it is
// delayed. Server-side triggers are not subject to access rules.
func (s *Service) Trigger(ctx context.Context, t Trigger) (TriggerResult, error) {
	if !NameRE.MatchString(t.Signal) || len(t.Signal) > MaxNameLength {
		return TriggerResult{}, switchyard.Errorf(switchyard.CodeBadRequest, "signal must be dotted identifiers (%s), at most %d characters", NameRE, MaxNameLength)
	}
	if len(t.Kwargs) > s.maxArgs {
		return TriggerResult{}, switchyard.Errorf(switchyard.CodeTooLarge, "kwargs over %d bytes (signals.max_kwargs_bytes)", s.maxArgs)
	}
	args, err := parseKwargs(t.Kwargs)
	if err != nil {
		return TriggerResult{}, err
	}
	if t.To.IsZero() {
		return TriggerResult{}, switchyard.Errorf(switchyard.CodeBadRequest, "to must name windows, users, topics or broadcast")
	}
	for what, list := range map[string][]string{"window": t.To.Windows, "user": t.To.Users, "topic": t.To.Topics} {
		if len(list) > maxTargets {
			return TriggerResult{}, switchyard.Errorf(switchyard.CodeBadRequest, "at most %d %ss", maxTargets, what)
		}
		for _, n := range list {
			if err := checkName(what, n); err != nil {
				return TriggerResult{}, err
			}
		}
	}
	if t.Countdown < 0 {
		return TriggerResult{}, switchyard.Errorf(switchyard.CodeBadRequest, "countdown must not be negative")
	}
	canon, _ := json.Marshal(args)
	p := Push{Signal: t.Signal, Kwargs: canon, SignalID: uuid4()}
	runAt := t.ETA
	if t.Countdown > 0 {
		runAt = s.cfg.Now().Add(t.Countdown)
	}
	if !runAt.IsZero() && runAt.After(s.cfg.Now()) {
		payload, _ := json.Marshal(busMessage{Push: &p, To: &t.To})
		id, err := s.cfg.Queue.Enqueue(ctx, queue.Params{Queue: config.DefaultQueue, Kind: kindTrigger, Payload: payload, RunAt: runAt})
		if err != nil {
			return TriggerResult{}, fmt.Errorf("signal: delayed trigger: %w", err)
		}
		return TriggerResult{SignalID: p.SignalID, JobID: id}, nil
	}
	n := s.deliver(p, t.To)
	if s.cfg.Bus != nil {
		if err := s.publish(ctx, busMessage{Push: &p, To: &t.To}); err != nil {
			return TriggerResult{SignalID: p.SignalID, Delivered: n}, err
		}
	}
	return TriggerResult{SignalID: p.SignalID, Delivered: n}, nil
}

// busMessage is what travels between processes (and in delayed-trigger
// jobs): a push and its target, or a window update.
type busMessage struct {
	Push   *Push         `json:"push,omitempty"`
	To     *Target       `json:"to,omitempty"`
	Window *WindowUpdate `json:"window,omitempty"`
}

func (s *Service) publish(ctx context.Context, m busMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := s.cfg.Bus.Publish(ctx, b); err != nil {
		return fmt.Errorf("signal: bus: %w", err)
	}
	return nil
}

// Receive applies what another process published on the Bus.
func (s *Service) Receive(msg []byte) {
	var m busMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		s.log.Warn("signal: bad bus message", "err", err)
		return
	}
	switch {
	case m.Push != nil && m.To != nil:
		s.deliver(*m.Push, *m.To)
	case m.Window != nil:
		s.applyWindow(*m.Window)
	}
}

// runTrigger delivers a delayed trigger that came due, with the
// signal_id it was given when it was made.
func (s *Service) runTrigger(ctx context.Context, j queue.Job) error {
	var m busMessage
	if err := json.Unmarshal(j.Payload, &m); err != nil || m.Push == nil || m.To == nil {
		return fmt.Errorf("signal: bad delayed trigger payload")
	}
	s.deliver(*m.Push, *m.To)
	if s.cfg.Bus != nil {
		return s.publish(ctx, m)
	}
	return nil
}

// deliver queues a push to this process's windows chosen by to, each
// once, encoding it once per protocol. It returns how many windows.
func (s *Service) deliver(p Push, to Target) int {
	var wins []*window
	s.mu.RLock()
	if to.Broadcast {
		wins = make([]*window, 0, len(s.windows))
		for _, w := range s.windows {
			wins = append(wins, w)
		}
	} else {
		seen := map[*window]struct{}{}
		add := func(set map[*window]struct{}) {
			for w := range set {
				if _, dup := seen[w]; !dup {
					seen[w] = struct{}{}
					wins = append(wins, w)
				}
			}
		}
		for _, id := range to.Windows {
			if w := s.windows[id]; w != nil {
				add(map[*window]struct{}{w: {}})
			}
			add(s.byKey[id])
		}
		for _, u := range to.Users {
			add(s.byUser[u])
		}
		for _, t := range to.Topics {
			add(s.byTopic[t])
		}
	}
	s.mu.RUnlock()
	var cache frameCache
	for _, w := range wins {
		w.sender.Send(cache.get(w.enc, p))
	}
	return len(wins)
}

// frameCache holds a push's frame per protocol.
type frameCache struct {
	encs   [4]Encoder
	frames [4][]byte
	n      int
	more   map[Encoder][]byte
}

func (c *frameCache) get(enc Encoder, p Push) []byte {
	for i := range c.n {
		if c.encs[i] == enc {
			return c.frames[i]
		}
	}
	if f, ok := c.more[enc]; ok {
		return f
	}
	f := enc.EncodeSignal(p)
	if c.n < len(c.encs) {
		c.encs[c.n], c.frames[c.n] = enc, f
		c.n++
	} else {
		if c.more == nil {
			c.more = map[Encoder][]byte{}
		}
		c.more[enc] = f
	}
	return f
}
