package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchyardhq/switchyard/broker"
)

// topicPre starts the reserved channels of topics.
const topicPre = "$cluster:topic:"

// Topic carries messages from a node to every other node of the cluster
// that subscribed to it, over the broker: fire and forget, in publication
// order per publishing node, nothing kept for a node that was not
// subscribed when a message was published. A node does not receive its
// own messages.
type Topic struct {
	n  *Node
	ch string
}

// Topic subscribes this node to the topic name and returns it; h receives
// what the other nodes publish on it. h runs on the broker's delivery
// path: it must not block and must not call the broker. A name has one
// handler per node; call it after Start.
func (n *Node) Topic(ctx context.Context, name string, h func(msg []byte)) (*Topic, error) {
	if name == "" || h == nil {
		return nil, errors.New("cluster: Topic needs a name and a handler")
	}
	ch := topicPre + name
	if _, dup := n.topics.LoadOrStore(ch, h); dup {
		return nil, fmt.Errorf("cluster: topic %q already has a handler", name)
	}
	if err := n.Broker.Subscribe(ctx, ch); err != nil {
		n.topics.Delete(ch)
		return nil, fmt.Errorf("cluster: subscribe %s: %w", ch, err)
	}
	return &Topic{n: n, ch: ch}, nil
}

// Publish sends msg to the other nodes' handlers of the topic. It fails
// when the broker cannot take it (the broker's error).
func (t *Topic) Publish(ctx context.Context, msg []byte) error {
	data := make([]byte, 0, len(t.n.id)+len(msg))
	data = append(append(data, t.n.id...), msg...)
	_, err := t.n.Broker.Publish(ctx, t.ch, data, broker.PublishOptions{})
	return err
}

// deliverTopic hands a topic's message from another node to its handler
// (every message starts with the publishing node's ID, of fixed length).
func (n *Node) deliverTopic(ch string, data []byte) {
	if len(data) < len(n.id) || string(data[:len(n.id)]) == n.id {
		return
	}
	if h, ok := n.topics.Load(ch); ok {
		h.(func([]byte))(data[len(n.id):])
	}
}
