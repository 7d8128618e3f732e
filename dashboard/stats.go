package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/switchyardhq/switchyard"
)

// Node is one server process as the overview shows it.
type Node struct {
	ID      string    `json:"id"`
	Address string    `json:"address"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Connections, Users and Channels are the node's own figures.
	Connections int `json:"connections"`
	Users       int `json:"users"`
	Channels    int `json:"channels"`
	// LastSeen is when the node last reported (zero: now, this process).
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// NodeSource lists the nodes of the cluster. The dashboard shows this
// process alone without one; a cluster-wide registry (nodes heartbeating
// into the broker) implements it to show every node, and the overview's
// node count is then the cluster's.
type NodeSource interface {
	Nodes(ctx context.Context) ([]Node, error)
}

// Sample is one point of the overview's charts: the process's figures
// at At, rates per second over the interval before it.
type Sample struct {
	At           time.Time `json:"at"`
	Connections  int       `json:"connections"`
	Users        int       `json:"users"`
	Channels     int       `json:"channels"`
	MessagesIn   float64   `json:"messages_in"`
	MessagesOut  float64   `json:"messages_out"`
	Publications float64   `json:"publications"`
	Deliveries   float64   `json:"deliveries"`
}

// sampler keeps the last samples in a ring.
type sampler struct {
	mu    sync.Mutex
	ring  []Sample
	next  int
	full  bool
	last  counters
	lastT time.Time
}

// counters are the cumulative figures rates are computed from.
type counters struct {
	in, out, pubs, deliveries uint64
}

func newSampler(n int) *sampler { return &sampler{ring: make([]Sample, n)} }

// add records the figures at now.
func (s *sampler) add(now time.Time, c counters, conns, users, channels int) Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	sm := Sample{At: now, Connections: conns, Users: users, Channels: channels}
	if !s.lastT.IsZero() {
		if dt := now.Sub(s.lastT).Seconds(); dt > 0 {
			rate := func(cur, prev uint64) float64 {
				if cur < prev {
					return 0
				}
				return float64(cur-prev) / dt
			}
			sm.MessagesIn = rate(c.in, s.last.in)
			sm.MessagesOut = rate(c.out, s.last.out)
			sm.Publications = rate(c.pubs, s.last.pubs)
			sm.Deliveries = rate(c.deliveries, s.last.deliveries)
		}
	}
	s.last, s.lastT = c, now
	s.ring[s.next] = sm
	s.next = (s.next + 1) % len(s.ring)
	if s.next == 0 {
		s.full = true
	}
	return sm
}

// samples returns the kept samples, oldest first.
func (s *sampler) samples() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full {
		return append([]Sample(nil), s.ring[:s.next]...)
	}
	return append(append([]Sample(nil), s.ring[s.next:]...), s.ring[:s.next]...)
}

// latest returns the newest sample (zero before the first).
func (s *sampler) latest() Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full && s.next == 0 {
		return Sample{}
	}
	return s.ring[(s.next+len(s.ring)-1)%len(s.ring)]
}

// sample runs the sampler until Close.
func (d *Dashboard) sample() {
	t := time.NewTicker(d.cfg.SampleInterval)
	defer t.Stop()
	d.takeSample()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.takeSample()
		}
	}
}

func (d *Dashboard) takeSample() Sample {
	st := d.cfg.Hub.Stats()
	var tr Traffic
	if d.cfg.Traffic != nil {
		tr = d.cfg.Traffic()
	}
	return d.sampler.add(d.cfg.Now(), counters{in: tr.MessagesIn, out: tr.MessagesOut, pubs: st.Publications, deliveries: st.Deliveries}, st.Sessions, st.Users, st.Channels)
}

// localNode describes this process.
func (d *Dashboard) localNode() Node {
	var n Node
	if d.cfg.Node != nil {
		n = d.cfg.Node()
	} else {
		host, _ := os.Hostname()
		n = Node{ID: fmt.Sprintf("%s/%d", host, os.Getpid()), Version: switchyard.Version}
	}
	st := d.cfg.Hub.Stats()
	n.Connections, n.Users, n.Channels = st.Sessions, st.Users, st.Channels
	return n
}

// nodes lists the cluster's nodes (this process alone without a
// NodeSource); an error of the source is shown, with this process.
func (d *Dashboard) nodes(ctx context.Context) ([]Node, error) {
	if d.cfg.Nodes == nil {
		return []Node{d.localNode()}, nil
	}
	ns, err := d.cfg.Nodes.Nodes(ctx)
	if err != nil {
		return []Node{d.localNode()}, err
	}
	return ns, nil
}

// overviewData is the overview page's and /stats' content.
type overviewData struct {
	Now     Sample   `json:"now"`
	Samples []Sample `json:"samples"`
	Nodes   []Node   `json:"nodes"`
	// NodesError says why the cluster's nodes could not be listed.
	NodesError string `json:"nodes_error,omitempty"`
	// NodesNote says where the node list comes from.
	NodesNote string `json:"-"`
	Interval  int    `json:"interval_ms"`
}

func (d *Dashboard) overviewData(r *http.Request) overviewData {
	ctx, cancel := requestContext(r)
	defer cancel()
	o := overviewData{Samples: d.sampler.samples(), Interval: int(d.cfg.SampleInterval / time.Millisecond)}
	// The rates of the newest sample, the counts of now.
	o.Now = d.sampler.latest()
	st := d.cfg.Hub.Stats()
	o.Now.Connections, o.Now.Users, o.Now.Channels = st.Sessions, st.Users, st.Channels
	ns, err := d.nodes(ctx)
	if err != nil {
		o.NodesError = err.Error()
		d.log.Warn("dashboard: listing the nodes failed", "err", err)
	}
	o.Nodes = ns
	o.NodesNote = "cluster-wide"
	if d.cfg.Nodes == nil {
		o.NodesNote = "this process (no node registry)"
	}
	return o
}

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request, s *session) {
	d.render(w, r, s, http.StatusOK, "overview.html", "Overview", "overview", d.overviewData(r))
}

func (d *Dashboard) statsJSON(w http.ResponseWriter, r *http.Request, s *session) {
	writeJSON(w, d.overviewData(r))
}

// statsEvents streams the newest sample once per interval (Server-Sent
// Events, event "sample").
func (d *Dashboard) statsEvents(w http.ResponseWriter, r *http.Request, s *session) {
	st, ok := d.startStream(w, r)
	if !ok {
		return
	}
	t := time.NewTicker(d.cfg.SampleInterval)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-d.stop:
			return
		case <-t.C:
			if !d.cfg.Now().Before(s.expires) || st.send("sample", d.sampler.latest()) != nil {
				return
			}
		}
	}
}
