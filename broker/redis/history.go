package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
)

// Publish keeps (when opts.HistorySize > 0) and publishes a publication,
// atomically per channel; see broker.Broker. A publication that is not
// kept has the zero position.
func (b *Broker) Publish(ctx context.Context, ch string, data []byte, opts broker.PublishOptions) (switchyard.StreamPosition, error) {
	if err := b.check(ctx); err != nil {
		return switchyard.StreamPosition{}, err
	}
	if opts.HistorySize < 0 {
		return switchyard.StreamPosition{}, fmt.Errorf("broker/redis: HistorySize must be >= 0, got %d", opts.HistorySize)
	}
	if opts.HistoryTTL < 0 {
		return switchyard.StreamPosition{}, fmt.Errorf("broker/redis: HistoryTTL must be >= 0, got %s", opts.HistoryTTL)
	}
	body := encodeBody(make([]byte, 0, len(data)+16), data, opts.Info, opts.Audience, opts.Sequence)
	if opts.HistorySize == 0 {
		msg := append(append(make([]byte, 0, len(body)+4), "p0::"...), body...)
		err := b.client.Do(ctx, b.client.B().Publish().Channel(b.key("c", ch)).Message(rueidis.BinaryString(msg)).Build()).Error()
		return switchyard.StreamPosition{}, b.fail(ctx, "publish", err)
	}
	res, err := b.publish.Exec(ctx, b.client,
		[]string{b.key("s", ch), b.key("m", ch)},
		[]string{rueidis.BinaryString(body), strconv.Itoa(opts.HistorySize), ms(opts.HistoryTTL), b.key("c", ch), newEpoch()},
	).ToArray()
	if err != nil {
		return switchyard.StreamPosition{}, b.fail(ctx, "publish", err)
	}
	b.ok()
	if len(res) != 2 {
		return switchyard.StreamPosition{}, fmt.Errorf("broker/redis: publish: %d replies, want 2", len(res))
	}
	top, err := res[0].AsInt64()
	if err != nil {
		return switchyard.StreamPosition{}, fmt.Errorf("broker/redis: publish: offset: %w", err)
	}
	epoch, err := res[1].ToString()
	if err != nil {
		return switchyard.StreamPosition{}, fmt.Errorf("broker/redis: publish: epoch: %w", err)
	}
	return switchyard.StreamPosition{Offset: uint64(top), Epoch: epoch}, nil
}

// History returns kept publications, oldest first (newest first with
// Reverse), and the channel's position; see broker.Broker and
// broker.HistoryOptions.
func (b *Broker) History(ctx context.Context, ch string, opts broker.HistoryOptions) ([]switchyard.Publication, switchyard.StreamPosition, error) {
	if err := b.check(ctx); err != nil {
		return nil, switchyard.StreamPosition{}, err
	}
	sinceOffset, sinceEpoch := "0", ""
	if opts.Since != nil {
		sinceOffset, sinceEpoch = strconv.FormatUint(opts.Since.Offset, 10), opts.Since.Epoch
		if sinceEpoch == "" {
			sinceEpoch = "-" // matches no epoch
		}
	}
	limit := opts.Limit
	if limit < 0 {
		limit = -1
	}
	reverse := "0"
	if opts.Reverse {
		reverse = "1"
	}
	res, err := b.history.Exec(ctx, b.client,
		[]string{b.key("s", ch), b.key("m", ch)},
		[]string{sinceOffset, sinceEpoch, strconv.Itoa(limit), newEpoch(), ms(emptyEpochTTL), reverse},
	).ToArray()
	if err != nil {
		return nil, switchyard.StreamPosition{}, b.fail(ctx, "history", err)
	}
	b.ok()
	if len(res) != 3 {
		return nil, switchyard.StreamPosition{}, fmt.Errorf("broker/redis: history: %d replies, want 3", len(res))
	}
	top, err := res[0].AsInt64()
	if err != nil {
		return nil, switchyard.StreamPosition{}, fmt.Errorf("broker/redis: history: offset: %w", err)
	}
	epoch, err := res[1].ToString()
	if err != nil {
		return nil, switchyard.StreamPosition{}, fmt.Errorf("broker/redis: history: epoch: %w", err)
	}
	sp := switchyard.StreamPosition{Offset: uint64(top), Epoch: epoch}
	entries, err := res[2].ToArray()
	if err != nil {
		return nil, sp, fmt.Errorf("broker/redis: history: entries: %w", err)
	}
	var pubs []switchyard.Publication
	if len(entries) > 0 {
		pubs = make([]switchyard.Publication, 0, len(entries))
	}
	for _, e := range entries {
		pub, err := decodeEntry(e)
		if err != nil {
			return nil, sp, fmt.Errorf("broker/redis: history of %s: %w", ch, err)
		}
		pubs = append(pubs, pub)
	}
	return pubs, sp, nil
}

// decodeEntry reads one stream entry: [id, [field, value]].
func decodeEntry(e rueidis.RedisMessage) (switchyard.Publication, error) {
	parts, err := e.ToArray()
	if err != nil || len(parts) != 2 {
		return switchyard.Publication{}, errMalformed
	}
	id, err := parts[0].ToString()
	if err != nil {
		return switchyard.Publication{}, errMalformed
	}
	fields, err := parts[1].ToArray()
	if err != nil || len(fields) != 2 {
		return switchyard.Publication{}, errMalformed
	}
	body, err := fields[1].ToString()
	if err != nil {
		return switchyard.Publication{}, errMalformed
	}
	off, _, _ := strings.Cut(id, "-")
	offset, err := strconv.ParseUint(off, 10, 64)
	if err != nil {
		return switchyard.Publication{}, errMalformed
	}
	pub, err := decodeBody([]byte(body))
	pub.Offset = offset
	return pub, err
}

// RemoveHistory drops the channel's publications; its next position is
// offset 0 in a new epoch.
func (b *Broker) RemoveHistory(ctx context.Context, ch string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	return b.fail(ctx, "remove history", b.client.Do(ctx, b.client.B().Del().Key(b.key("s", ch), b.key("m", ch)).Build()).Error())
}

// PublishJoin delivers a join to the processes subscribed to the channel.
func (b *Broker) PublishJoin(ctx context.Context, ch string, info switchyard.ClientInfo) error {
	return b.publishPresence(ctx, ch, 'j', info)
}

// PublishLeave delivers a leave to the processes subscribed to the
// channel.
func (b *Broker) PublishLeave(ctx context.Context, ch string, info switchyard.ClientInfo) error {
	return b.publishPresence(ctx, ch, 'l', info)
}

func (b *Broker) publishPresence(ctx context.Context, ch string, kind byte, info switchyard.ClientInfo) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	msg := encodeInfo(kind, info)
	return b.fail(ctx, "publish presence", b.client.Do(ctx, b.client.B().Publish().Channel(b.key("c", ch)).Message(rueidis.BinaryString(msg)).Build()).Error())
}
