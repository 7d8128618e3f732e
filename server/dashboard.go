package server

import (
	"fmt"
	"os"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/dashboard"
)

// mountDashboard serves the admin dashboard at /dashboard/ when
// dashboard.enabled is set (the configuration then has its password).
func (s *Server) mountDashboard(o Options) error {
	if !s.cfg.Dashboard.Enabled {
		return nil
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s/%d", host, os.Getpid())
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
		Nodes: o.Nodes,
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
