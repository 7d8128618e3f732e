package resource

import (
	"context"
	"encoding/json"
	"math"

	"github.com/switchyardhq/switchyard/store"
)

// DefaultCatchUpLimit is how many changes of one record CatchUp replays
// when its caller sets no limit.
const DefaultCatchUpLimit = 100

// CatchUp is what a subscriber that last saw a record at a position of
// the change log missed.
type CatchUp struct {
	// Seq is the position the catch-up brings the subscriber to: every
	// change of the record up to it is accounted for (in Events, or in
	// Current); the changes after it are the live ones.
	Seq int64
	// Recovered reports whether Events holds every change of the record
	// after since. It is false when the change log was trimmed past
	// since, when since is beyond this store's log (another or a restored
	// database), or when more changes than the limit are missing; Events is
	// then empty and Current says how the record is at Seq.
	Recovered bool
	// Events are the record's changes after since, oldest first, each with
	// the record as that change left it (Data nil for a delete). A change
	// that left the record in a state the user may not read (another
	// owner's) is left out.
	Events []Event
	// Current, when not Recovered, is the record as it is at Seq; nil when
	// it no longer exists.
	Current json.RawMessage
	// Watch is the subscription's live side, at Seq: live events go
	// through its Apply (those at or below Seq are Skip).
	Watch *InstanceWatch
}

// CatchUp returns the changes of a record after since, a Seq of the
// change log (0: none, only the position), for a subscriber coming back.
// It reads the record, its changes and the log's position from one
// snapshot of the store, so a change is either in the catch-up (at or
// below Seq) or after it.
//
// Permissions are retrieve's: 403 when the user may not read the
// resource, 404 when the record does not exist for them. A record deleted
// after since still exists for a user who could read its last stored
// state, so that they hear of the delete; a record that was already gone
// at since is 404, as for a plain subscribe. At most limit changes are
// replayed (limit <= 0: DefaultCatchUpLimit); when more are missing the
// result is not Recovered.
func (s *Service) CatchUp(ctx context.Context, name string, who Actor, pk, since int64, limit int) (CatchUp, error) {
	sc, err := s.schema(name)
	if err != nil {
		return CatchUp{}, err
	}
	if !sc.allowed("read", who, nil) {
		return CatchUp{}, ErrForbidden
	}
	if since < 0 {
		return CatchUp{}, &ValidationError{Fields: map[string][]string{"since": {"Ensure this value is greater than or equal to 0."}}}
	}
	if limit <= 0 {
		limit = DefaultCatchUpLimit
	}
	after := since
	if since == 0 {
		after = math.MaxInt64 // from now: no change to replay
	}
	rl, err := s.st.RowChanges(ctx, name, pk, after, limit+1)
	if err != nil {
		return CatchUp{}, s.storeError(sc, err)
	}
	gone := rl.Row == nil
	state := rl.Row
	if gone {
		state = rl.LastRow
	}
	if !sc.readable(who, state) {
		return CatchUp{}, ErrNotFound
	}
	out := CatchUp{Seq: rl.Last, Watch: &InstanceWatch{sc: sc, who: who, pk: pk, seq: rl.Last}}
	out.Recovered = since == 0 || (since >= rl.Trimmed && since <= rl.Last && len(rl.Changes) <= limit)
	if !out.Recovered {
		if !gone {
			out.Current = sc.Encode(rl.Row)
		}
		return out, nil
	}
	deleted := false
	for _, ch := range rl.Changes {
		ev := Event{Resource: name, PK: pk, Op: ch.Op, Seq: ch.Seq}
		if ch.Op == store.OpDelete {
			deleted = true
		} else {
			if !sc.readable(who, ch.Row) {
				continue
			}
			ev.Data = sc.Encode(ch.Row)
		}
		out.Events = append(out.Events, ev)
	}
	if gone && !deleted {
		return CatchUp{}, ErrNotFound // gone before since: nothing to tell
	}
	return out, nil
}
