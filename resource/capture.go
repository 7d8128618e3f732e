package resource

import (
	"context"
	"fmt"

	"github.com/switchyardhq/switchyard/store"
)

// Captured emits the events of changes another program made to a
// resource's table (recorded by a capture trigger, see
// docs/existing-tables.md), in the order given (the change log's): the
// same events as a write through the service, so every wire filters them
// and checks read permissions at delivery as it does for those. Hooks do
// not run for them (the write did not go through Switchyard). A change of
// a table no resource serves is an error and emits nothing.
func (s *Service) Captured(ctx context.Context, ch store.Change) error {
	sc, ok := s.schemas[ch.Table]
	if !ok {
		return fmt.Errorf("resource: captured change of %q, which is not a resource", ch.Table)
	}
	if s.onChange != nil {
		s.onChange(ctx, s.event(sc, ch, ch.Before))
	}
	return nil
}
