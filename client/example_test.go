package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/switchyardhq/switchyard/client"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/server"
)

// exampleServer runs a Switchyard server for the examples and returns the
// URL of its /live socket.
func exampleServer() (url string, stop func()) {
	cfg, err := config.Parse("example.yaml", []byte(`
resources:
  todos:
    fields:
      title: {type: string, required: true}
      done: {type: bool, default: false}
channels:
  namespaces:
    chat: {history_size: 100, history_ttl: 1h, recover: true, permissions: {publish: anyone}}
`), nil)
	if err != nil {
		log.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "switchyard-example")
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", dir
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	return "ws://" + srv.Addr().String() + "/live", func() { cancel(); <-done; os.RemoveAll(dir) }
}

type Todo struct {
	ID    int64  `json:"id"`
	Title string `json:"title"`
	Done  bool   `json:"done"`
}

// Resources with a typed handle.
func Example() {
	url, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	todos := client.Resource[Todo](c, "todos")
	t, _ := todos.Create(ctx, map[string]any{"title": "Buy milk"})
	t, _ = todos.Patch(ctx, t.ID, map[string]any{"done": true})
	fmt.Printf("%+v\n", t)
	_, err = todos.Create(ctx, map[string]any{})
	fmt.Println(err)
	// Output:
	// {ID:1 Title:Buy milk Done:true}
	// client: 400 bad_request: title: This field is required.
}

// A live query: the rows now, then every change.
func ExampleClient_LiveQuery() {
	url, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	changes := make(chan client.Change, 10)
	q, err := c.LiveQuery(ctx, "todos", client.LiveQueryOptions{
		Filter:   map[string]any{"done": false},
		OnChange: func(ch client.Change) { changes <- ch },
	})
	if err != nil {
		log.Fatal(err)
	}
	todos := client.Resource[Todo](c, "todos")
	t, _ := todos.Create(ctx, map[string]any{"title": "Buy milk"})
	todos.Patch(ctx, t.ID, map[string]any{"done": true}) // leaves the filter
	for range 2 {
		ch := <-changes
		var row Todo
		json.Unmarshal(ch.Row, &row)
		fmt.Println(ch.Kind, row.Title, row.Done)
	}
	fmt.Println(len(q.Rows()), "rows")
	// Output:
	// enter Buy milk false
	// leave Buy milk false
	// 0 rows
}

// A channel subscription: messages in order; after a reconnect the missed
// ones come first (or OnGap says they cannot).
func ExampleClient_Subscribe() {
	url, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	got := make(chan client.Publication, 10)
	ch, err := c.Subscribe(ctx, "chat:lobby", client.ChannelHandlers{
		OnMessage: func(p client.Publication) { got <- p },
		OnGap:     func(g client.Gap) { fmt.Println("missed messages since", g.Since.Offset) },
	})
	if err != nil {
		log.Fatal(err)
	}
	ch.Publish(ctx, map[string]string{"text": "hello"})
	select {
	case p := <-got:
		fmt.Println(p.Offset, string(p.Data))
	case <-time.After(5 * time.Second):
		fmt.Println("no message")
	}
	fmt.Println(ch.Position().Offset)
	// Output:
	// 1 {"text":"hello"}
	// 1
}
