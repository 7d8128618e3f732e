// Package rediswindows is the signal.WindowStore of a cluster: what the
// application set for a window key (its topics, its user) kept in Redis
// with the key's TTL, so that a page bootstrapped on one process may open
// its socket on any other.
//
// Each key is one Redis string, <prefix>:win:<window key>, holding the
// JSON of a signal.StoredWindow, set with PX (its TTL): Redis forgets it
// when it expires. Update reads the value and writes the new one only if
// the value is still the one read (a Lua compare-and-set), retrying when
// another process changed it meanwhile, so concurrent updates from
// several processes all apply.
package rediswindows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/signal"
)

// Store is a signal.WindowStore in Redis. Create it with New; it is safe
// for concurrent use.
type Store struct {
	client rueidis.Client
	prefix string
	cas    *rueidis.Lua
}

var _ signal.WindowStore = (*Store)(nil)

// casScript sets KEYS[1] to ARGV[2] for ARGV[3] ms if it still holds
// ARGV[1] ("" for none); 1 when it did, 0 when the value had changed.
const casScript = `
local cur = redis.call('GET', KEYS[1])
if cur == false then cur = '' end
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`

// maxTries bounds the compare-and-set retries of one Update.
const maxTries = 20

// New returns a store on client (the Redis broker's: its Client) whose
// keys start with prefix (the broker's Prefix) and ":win:".
func New(client rueidis.Client, prefix string) (*Store, error) {
	if client == nil || prefix == "" {
		return nil, errors.New("rediswindows: a client and a prefix are required")
	}
	return &Store{client: client, prefix: prefix + ":win:", cas: rueidis.NewLuaScript(casScript)}, nil
}

// Get implements signal.WindowStore.
func (s *Store) Get(ctx context.Context, key string) (signal.StoredWindow, bool, error) {
	raw, ok, err := s.get(ctx, key)
	if err != nil || !ok {
		return signal.StoredWindow{}, false, err
	}
	var w signal.StoredWindow
	if err := json.Unmarshal([]byte(raw), &w); err != nil {
		return signal.StoredWindow{}, false, fmt.Errorf("rediswindows: %s holds %q: %w", s.prefix+key, raw, err)
	}
	return w, true, nil
}

func (s *Store) get(ctx context.Context, key string) (string, bool, error) {
	raw, err := s.client.Do(ctx, s.client.B().Get().Key(s.prefix+key).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fail(ctx, err)
	}
	return raw, true, nil
}

// Update implements signal.WindowStore: fn may run more than once.
func (s *Store) Update(ctx context.Context, key string, ttl time.Duration, fn func(signal.StoredWindow) signal.StoredWindow) error {
	ms := strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)
	for range maxTries {
		raw, ok, err := s.get(ctx, key)
		if err != nil {
			return err
		}
		var cur signal.StoredWindow
		if ok && json.Unmarshal([]byte(raw), &cur) != nil {
			cur = signal.StoredWindow{} // unreadable: replaced
		}
		next, err := json.Marshal(fn(cur))
		if err != nil {
			return fmt.Errorf("rediswindows: %w", err)
		}
		set, err := s.cas.Exec(ctx, s.client, []string{s.prefix + key}, []string{raw, string(next), ms}).AsInt64()
		if err != nil {
			return fail(ctx, err)
		}
		if set == 1 {
			return nil
		}
	}
	return switchyard.Errorf(switchyard.CodeUnavailable, "window %q is being changed by too many callers at once, try again", key)
}

// fail turns a Redis error into the store's: the context's error as is,
// a Redis error reply wrapped, anything else (the network) unavailable.
func fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("rediswindows: %w", ctx.Err())
	}
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		return fmt.Errorf("rediswindows: %w", err)
	}
	return switchyard.Wrap(err, switchyard.CodeUnavailable, "the window store (Redis) is unavailable, try again")
}
