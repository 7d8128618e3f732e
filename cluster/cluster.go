// Package cluster makes the processes that share one broker act as one
// service: a node registry (each process's entry in the presence of a
// reserved channel, refreshed as a heartbeat, gone within the presence
// expiry when the process dies) and control operations that reach every
// process (the server API's subscribe, unsubscribe, disconnect, refresh,
// info and channels).
//
// It carries everything over the broker.Broker contract, so it works the
// same on the in-memory broker (one process: the node sees only itself)
// and on Redis. A Node wraps the broker given to the hub: deliveries on
// the reserved channels $cluster:control and $cluster:node:<id> go to the
// node, every other to the hub.
//
// A control operation is a survey: the caller publishes a request on
// $cluster:control; every node runs the operation's handler on its own
// sessions and answers on the caller's node channel; the caller waits for
// an answer from every node in the registry, or until its context or the
// survey timeout ends, and gets the answers it has. Handlers run on one
// worker goroutine per node, never on the broker's delivery path.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
)

// Reserved channels.
const (
	ControlChannel = "$cluster:control"
	NodesChannel   = "$cluster:nodes"
	nodeChannelPre = "$cluster:node:"
)

// Config configures a Node.
type Config struct {
	// Broker and Presence are the process's broker (the Node wraps the
	// broker: give the Node to the hub in its place).
	Broker   broker.Broker
	Presence broker.PresenceManager
	// Name is shown in the registry (default: the host name and the
	// node ID).
	Name string
	// TTL is how long a node stays in the registry without a heartbeat
	// (default 60 s; beats every third of it).
	TTL time.Duration
	// SurveyTimeout bounds how long a survey waits for the nodes that
	// have not answered (default 2 s).
	SurveyTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Handler runs a control operation on this process and returns its
// answer (encoded as JSON).
type Handler func(ctx context.Context, args json.RawMessage) (any, error)

// NodeInfo is a node's entry in the registry.
type NodeInfo struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
}

// Node is this process's member of the cluster. It implements
// broker.Broker (wrapping Config.Broker) so the hub can be given it.
type Node struct {
	broker.Broker
	cfg  Config
	log  *slog.Logger
	id   string
	info NodeInfo

	handler broker.Handler // the hub
	peers   atomic.Int32   // live nodes at the last heartbeat, this one included

	mu       sync.Mutex
	handlers map[string]Handler
	pending  map[string]chan reply
	topics   sync.Map // channel → func([]byte) (topic.go)

	work chan request
	stop chan struct{}
	wg   sync.WaitGroup
}

var _ broker.Broker = (*Node)(nil)

// request is a control message.
type request struct {
	ID   string          `json:"id"`
	From string          `json:"from"`
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// reply is a node's answer to a request.
type reply struct {
	ID    string          `json:"id"`
	Node  string          `json:"node"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error string          `json:"error,omitempty"`
	Code  switchyard.Code `json:"code,omitempty"`
}

// Answer is one node's answer to a survey.
type Answer struct {
	Node string
	Data json.RawMessage
	// Err is the node's error, if any: a *switchyard.Error with the code
	// and client-safe message the node's handler returned.
	Err error
}

// New returns a Node; give it to the hub as its Broker, then call Start.
func New(cfg Config) (*Node, error) {
	if cfg.Broker == nil || cfg.Presence == nil {
		return nil, errors.New("cluster: Broker and Presence are required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Minute
	}
	if cfg.SurveyTimeout <= 0 {
		cfg.SurveyTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	id := rand.Text()[:12]
	if cfg.Name == "" {
		cfg.Name = id
	}
	n := &Node{
		Broker:   cfg.Broker,
		cfg:      cfg,
		log:      cfg.Logger,
		id:       id,
		info:     NodeInfo{ID: id, Name: cfg.Name, Version: switchyard.Version, Started: time.Now().UTC()},
		handlers: map[string]Handler{},
		pending:  map[string]chan reply{},
		work:     make(chan request, 1024),
		stop:     make(chan struct{}),
	}
	return n, nil
}

// Self returns this node's registry entry.
func (n *Node) Self() NodeInfo { return n.info }

// ID returns the node's ID, unique to this process's life.
func (n *Node) ID() string { return n.id }

// Handle registers the handler of an operation on this node.
func (n *Node) Handle(op string, h Handler) {
	n.mu.Lock()
	n.handlers[op] = h
	n.mu.Unlock()
}

// Run implements broker.Broker: the hub's deliveries go through the node.
func (n *Node) Run(h broker.Handler) error {
	n.handler = h
	return n.Broker.Run(split{n})
}

// Start subscribes the node's channels, joins the registry and starts the
// heartbeat and the worker. Call it after the hub was built.
func (n *Node) Start(ctx context.Context) error {
	for _, ch := range []string{ControlChannel, nodeChannelPre + n.id} {
		if err := n.Broker.Subscribe(ctx, ch); err != nil {
			return fmt.Errorf("cluster: subscribe %s: %w", ch, err)
		}
	}
	if err := n.beat(ctx); err != nil {
		return fmt.Errorf("cluster: join the registry: %w", err)
	}
	n.wg.Go(n.heartbeat)
	n.wg.Go(n.worker)
	return nil
}

// Stop leaves the registry and stops the node's goroutines; call it
// before closing the broker.
func (n *Node) Stop(ctx context.Context) {
	select {
	case <-n.stop:
		return
	default:
	}
	close(n.stop)
	n.wg.Wait()
	if err := n.cfg.Presence.RemovePresence(ctx, NodesChannel, n.id); err != nil {
		n.log.Warn("cluster: leaving the registry failed", "err", err)
	}
}

func (n *Node) beat(ctx context.Context) error {
	raw, _ := json.Marshal(n.info)
	if err := n.cfg.Presence.AddPresence(ctx, NodesChannel, n.id, switchyard.ClientInfo{ClientID: n.id, Info: raw}, n.cfg.TTL); err != nil {
		return err
	}
	nodes, err := n.Nodes(ctx)
	if err != nil {
		return err
	}
	n.peers.Store(int32(len(nodes)))
	return nil
}

// Peers returns how many nodes were live at the last heartbeat, this one
// included (at least 1). It reads memory only.
func (n *Node) Peers() int { return max(int(n.peers.Load()), 1) }

func (n *Node) heartbeat() {
	t := time.NewTicker(n.cfg.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.TTL/3)
		if err := n.beat(ctx); err != nil {
			n.log.Warn("cluster: heartbeat failed", "err", err)
		}
		cancel()
	}
}

// Nodes returns the live nodes of the registry.
func (n *Node) Nodes(ctx context.Context) ([]NodeInfo, error) {
	p, err := n.cfg.Presence.Presence(ctx, NodesChannel)
	if err != nil {
		return nil, err
	}
	out := make([]NodeInfo, 0, len(p))
	for id, ci := range p {
		var info NodeInfo
		if err := json.Unmarshal(ci.Info, &info); err != nil {
			info = NodeInfo{ID: id}
		}
		out = append(out, info)
	}
	return out, nil
}

// Survey runs op on every node and returns their answers: one per node
// that answered before ctx or the survey timeout ended. It fails only when
// the request cannot be sent (the broker is unavailable).
func (n *Node) Survey(ctx context.Context, op string, args any) ([]Answer, error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", op, err)
	}
	nodes, err := n.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{n.id: true}
	for _, nd := range nodes {
		want[nd.ID] = true
	}
	req := request{ID: rand.Text()[:16], From: n.id, Op: op, Args: raw}
	replies := make(chan reply, len(want)+8)
	n.mu.Lock()
	n.pending[req.ID] = replies
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.pending, req.ID)
		n.mu.Unlock()
	}()
	msg, _ := json.Marshal(req)
	if _, err := n.Broker.Publish(ctx, ControlChannel, msg, broker.PublishOptions{}); err != nil {
		return nil, err
	}
	timeout := time.NewTimer(n.cfg.SurveyTimeout)
	defer timeout.Stop()
	var out []Answer
	got := map[string]bool{}
	for len(got) < len(want) {
		select {
		case r := <-replies:
			if got[r.Node] {
				continue
			}
			got[r.Node] = true
			a := Answer{Node: r.Node, Data: r.Data}
			if r.Error != "" {
				a.Err = &switchyard.Error{Code: r.Code, Message: r.Error}
			}
			out = append(out, a)
		case <-timeout.C:
			n.log.Warn("cluster: survey timed out", "op", op, "answered", len(got), "nodes", len(want))
			return out, nil
		case <-ctx.Done():
			return out, nil
		}
	}
	return out, nil
}

// worker runs the requests of other nodes (and this one's) in turn.
func (n *Node) worker() {
	for {
		select {
		case <-n.stop:
			return
		case req := <-n.work:
			n.run(req)
		}
	}
}

func (n *Node) run(req request) {
	n.mu.Lock()
	h := n.handlers[req.Op]
	n.mu.Unlock()
	rep := reply{ID: req.ID, Node: n.id}
	if h == nil {
		rep.Error, rep.Code = fmt.Sprintf("operation %q is not known to node %s", req.Op, n.id), switchyard.CodeInternal
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.SurveyTimeout)
		res, err := h(ctx, req.Args)
		cancel()
		if err != nil {
			rep.Error, rep.Code = switchyard.ErrorMessage(err), switchyard.ErrorCode(err)
			if switchyard.ErrorCode(err) == switchyard.CodeInternal {
				n.log.Error("cluster: operation failed", "op", req.Op, "err", err)
			}
		} else if rep.Data, err = json.Marshal(res); err != nil {
			rep.Error, rep.Code = "cannot encode the answer", switchyard.CodeInternal
		}
	}
	msg, _ := json.Marshal(rep)
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.SurveyTimeout)
	defer cancel()
	if _, err := n.Broker.Publish(ctx, nodeChannelPre+req.From, msg, broker.PublishOptions{}); err != nil {
		n.log.Warn("cluster: answer not sent", "op", req.Op, "to", req.From, "err", err)
	}
}

// split routes the broker's deliveries: the node's channels to the node,
// the rest to the hub. It never blocks.
type split struct{ n *Node }

func (s split) HandlePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) {
	n := s.n
	switch ch {
	case ControlChannel:
		var req request
		if err := json.Unmarshal(pub.Data, &req); err != nil {
			n.log.Error("cluster: malformed request dropped", "err", err)
			return
		}
		select {
		case n.work <- req:
		default:
			n.log.Warn("cluster: too many requests queued; one dropped", "op", req.Op)
		}
	case nodeChannelPre + n.id:
		var rep reply
		if err := json.Unmarshal(pub.Data, &rep); err != nil {
			n.log.Error("cluster: malformed answer dropped", "err", err)
			return
		}
		n.mu.Lock()
		c := n.pending[rep.ID]
		n.mu.Unlock()
		if c != nil {
			select {
			case c <- rep:
			default:
			}
		}
	default:
		if strings.HasPrefix(ch, topicPre) {
			n.deliverTopic(ch, pub.Data)
			return
		}
		n.handler.HandlePublication(ch, pub, sp)
	}
}

func (s split) HandleJoin(ch string, info switchyard.ClientInfo)  { s.n.handler.HandleJoin(ch, info) }
func (s split) HandleLeave(ch string, info switchyard.ClientInfo) { s.n.handler.HandleLeave(ch, info) }
