package redis

import "github.com/redis/rueidis"

// Client returns the broker's Redis client, for other state that lives
// in the same Redis beside the broker's (the signal window store). The
// broker owns it: closing the broker closes it.
func (b *Broker) Client() rueidis.Client { return b.client }

// Prefix returns the prefix of the broker's keys and channels; state kept
// beside them uses it too, so that one deployment's keys share it.
func (b *Broker) Prefix() string { return b.cfg.Prefix }
