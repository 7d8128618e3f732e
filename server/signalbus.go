package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/switchyardhq/switchyard/cluster"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/signal"
)

// signalsTopic is the cluster topic that carries triggers and window
// changes between processes.
const signalsTopic = "signals"

// newSignals builds the signal service and registers the application's
// Go handlers. With a shared broker (Redis) the service spans the
// cluster: triggers and window changes travel on a cluster topic to every
// other process, which delivers to its own windows (so each window gets a
// trigger once, deduplicated where it is connected), and what is set for
// a window key before it connects is kept in Redis with its TTL, so a
// page bootstrapped on one process may connect to any.
func newSignals(cfg config.Config, o Options, jobs *queue.Queue, node *cluster.Node, b brokerDriver, log *slog.Logger) (*signal.Service, error) {
	sc := signal.Config{Queue: jobs, Signals: cfg.Signals, Logger: log}
	windows, err := sharedWindows(b) // drivers.go
	if err != nil {
		return nil, err
	}
	// Deliveries may come before the service exists: no window is
	// attached then, so they are dropped.
	var svc atomic.Pointer[signal.Service]
	if windows != nil {
		sc.Windows = windows
		topic, err := node.Topic(context.Background(), signalsTopic, func(msg []byte) {
			if s := svc.Load(); s != nil {
				s.Receive(msg)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("server: signals: %w", err)
		}
		sc.Bus = topic
	}
	s, err := signal.New(sc)
	if err != nil {
		return nil, err
	}
	if o.Signals != nil {
		if err := o.Signals(s); err != nil {
			return nil, err
		}
	}
	svc.Store(s)
	return s, nil
}
