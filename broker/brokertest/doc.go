// Package brokertest is the contract suite that every broker.Broker and
// broker.PresenceManager must pass: Run for brokers, RunPresence for
// presence managers. An implementation's tests call them with a factory:
//
//	func TestBroker(t *testing.T) {
//		brokertest.Run(t, func(t *testing.T) broker.Broker { return memory.New(memory.Config{}) })
//	}
//
// Subtests run in parallel, each with its own broker from the factory and
// channel names unique to the subtest and the run, so brokers that share
// a backend (one Redis) do not see each other's channels; a factory must
// not clear shared state. The suite calls Run with its own Handler, which
// is safe for concurrent use, and Close when the subtest ends.
//
// Deliveries are awaited by polling, so asynchronous brokers pass too.
// Proving that something was not delivered relies on per-channel order:
// the suite publishes a marker on the same channel after subscribing and,
// once the marker arrives, expects nothing else before it.
//
// Semantics the suite pins down where package broker leaves a choice:
//   - A positive HistoryOptions.Limit returns the first (oldest) Limit of
//     the selected publications, with or without Since.
//   - With Since, the publications returned are those still kept with an
//     offset above Since.Offset; if some were trimmed, the first returned
//     offset is above Since.Offset+1 and the caller sees the gap.
//   - With Reverse, publications come newest first: the last Limit kept
//     without Since, those below Since.Offset with it (none below offset
//     0 or in another epoch).
//   - A publication with HistorySize 0 gets offset 0 and leaves the
//     channel's history and position unchanged.
//   - A history lost to HistoryTTL or RemoveHistory restarts at offset 1
//     in a new epoch, which History calls that follow return unchanged.
//   - PresenceStats.NumUsers counts distinct non-empty users: anonymous
//     clients (User "") count in NumClients only.
//   - Presence returns a map the caller owns.
//   - Operations with a context that is already done fail with an error
//     that wraps ctx.Err().
package brokertest
