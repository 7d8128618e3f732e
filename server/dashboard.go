package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/cluster"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/dashboard"
)

// clusterNodes lists the live nodes of the cluster for the dashboard:
// each answers the "info" survey with its own figures.
type clusterNodes struct{ n *cluster.Node }

func (c clusterNodes) Nodes(ctx context.Context) ([]dashboard.Node, error) {
	answers, err := c.n.Survey(ctx, "info", nil)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.Node, 0, len(answers))
	for _, a := range answers {
		if a.Err != nil {
			continue // a node that could not answer is left out
		}
		var info struct {
			cluster.NodeInfo
			Connections int `json:"connections"`
			Channels    int `json:"channels"`
		}
		if json.Unmarshal(a.Data, &info) != nil {
			continue
		}
		out = append(out, dashboard.Node{ID: info.ID, Address: info.Name, Version: info.Version, Started: info.Started,
			Connections: info.Connections, Channels: info.Channels})
	}
	return out, nil
}

// mountDashboard serves the admin dashboard at /dashboard/ when
// dashboard.enabled is set (the configuration then has its password).
func (s *Server) mountDashboard(o Options) error {
	if !s.cfg.Dashboard.Enabled {
		return nil
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s/%d", host, os.Getpid())
	nodes := o.Nodes
	if nodes == nil && s.node != nil && s.cfg.Broker.Driver != config.BrokerMemory {
		nodes = clusterNodes{s.node} // the node registry of the Redis broker
	}
	d, err := dashboard.New(dashboard.Config{
		Config:    s.cfg,
		Hub:       s.hub,
		Resources: s.resources,
		Signals:   s.signals,
		Queue:     s.jobs,
		Traffic: func() dashboard.Traffic {
			st := s.engine.Stats()
			return dashboard.Traffic{MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut}
		},
		Nodes: nodes,
		Node: func() dashboard.Node {
			addr := s.cfg.Listen
			if a := s.Addr(); a != nil {
				addr = a.String()
			}
			return dashboard.Node{ID: id, Address: addr, Version: switchyard.Version, Started: s.started}
		},
		Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.dashboard = d
	d.Register(s.mux)
	s.log.Info("serving the dashboard", "path", dashboard.Prefix)
	return nil
}
