package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/postgres"
)

// Existing tables and capture (docs/existing-tables.md): resources with
// table: are completed from the database's catalog before the resource
// service starts; those with capture: trigger get their trigger installed
// at start and a follower that turns the changes other programs make into
// resource events.

// tableDescriber reads an existing table's columns (PostgreSQL).
type tableDescriber interface {
	Describe(ctx context.Context, table string) ([]store.CatalogColumn, error)
}

// capturer installs capture and follows what it records (PostgreSQL).
type capturer interface {
	InstallCapture(ctx context.Context, resource string) error
	FollowCaptured(ctx context.Context, o postgres.FollowOptions, fn func(ctx context.Context, chs []store.Change)) error
}

// attachTables completes the resources on existing tables from the
// catalog, logging what is served as text for want of a mapping.
func attachTables(ctx context.Context, db store.Store, rs []config.Resource, log *slog.Logger) error {
	for i := range rs {
		if !rs[i].External() {
			continue
		}
		d, ok := db.(tableDescriber)
		if !ok {
			return fmt.Errorf("server: resources.%s.table: an existing table needs store.driver: postgres", rs[i].Name)
		}
		cols, err := d.Describe(ctx, rs[i].Table)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("server: resources.%s.table: %w", rs[i].Name, err)
		}
		if err != nil {
			return fmt.Errorf("server: resources.%s.table %s: %w", rs[i].Name, rs[i].Table, err)
		}
		r, warnings, err := resource.FromCatalog(rs[i], cols)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		for _, w := range warnings {
			log.Warn(w)
		}
		rs[i] = r
		log.Info("serving an existing table", "resource", r.Name, "table", r.Table, "fields", len(r.Fields), "capture", r.Capture)
	}
	return nil
}

// startCapture installs the triggers of the resources that capture and
// returns the follower to run (nil when none captures). leader makes one
// process at a time publish (a broker shared by the processes).
func startCapture(ctx context.Context, db store.Store, rs []config.Resource, svc *resource.Service, leader bool, log *slog.Logger) (func(context.Context), error) {
	var captured []string
	for _, r := range rs {
		if r.Capture == config.CaptureTrigger {
			captured = append(captured, r.Name)
		}
	}
	if len(captured) == 0 {
		return nil, nil
	}
	c, ok := db.(capturer)
	if !ok {
		return nil, fmt.Errorf("server: capture: trigger needs store.driver: postgres")
	}
	for _, name := range captured {
		if err := c.InstallCapture(ctx, name); err != nil {
			return nil, fmt.Errorf("server: resources.%s.capture: %w", name, err)
		}
	}
	log.Info("capturing changes made by other programs", "resources", captured, "leader_election", leader)
	return func(ctx context.Context) {
		_ = c.FollowCaptured(ctx, postgres.FollowOptions{Leader: leader}, func(ctx context.Context, chs []store.Change) {
			for _, ch := range chs {
				if err := svc.Captured(ctx, ch); err != nil {
					log.Warn("captured change not published", "table", ch.Table, "seq", ch.Seq, "err", err)
				}
			}
		})
	}, nil
}
