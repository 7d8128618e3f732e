package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/server"
)

const configUsage = `Usage:
  switchyard config check FILE          validate FILE against this build, without starting
  switchyard config init [FILE]         write a commented starting configuration with new secrets

switchyard config check --help and switchyard config init --help show their flags.
`

func (c *cli) configCmd(args []string) error {
	if len(args) == 0 {
		return errUsage{errors.New("usage: switchyard config check FILE | switchyard config init [FILE] (see switchyard config --help)")}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, configUsage)
		return nil
	case "check":
		return c.configCheck(args[1:])
	case "init":
		return c.configInit(args[1:])
	}
	return errUsage{fmt.Errorf("unknown config command %q (have: check, init)", args[0])}
}

const checkAbout = `Loads FILE and the SWITCHYARD_* variables exactly as serve does, and fails
(exit 2) on anything serve would refuse: unknown keys, bad values, drivers this
build does not serve, a JWT key file that does not parse, a data_dir this user
cannot write. Prints "FILE: ok" otherwise.`

func (c *cli) configCheck(args []string) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	pos, err := c.parse(fs, "switchyard config check FILE", checkAbout, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errUsage{errors.New("usage: switchyard config check FILE")}
	}
	path := pos[0]
	if _, err := os.Stat(path); err != nil {
		return errUsage{fmt.Errorf("config check: %w", err)}
	}
	cfg, err := config.Load(path, c.environ)
	if err != nil {
		return err
	}
	if err := server.CheckConfig(cfg); err != nil {
		var ce config.Errors
		if errors.As(err, &ce) {
			for _, e := range ce {
				if e.Source == "" {
					e.Source = path
				}
			}
		}
		return err
	}
	// Resources on existing tables: their tables, as serve would check
	// them (this connects to the database).
	if err := server.CheckTables(context.Background(), cfg); err != nil {
		var ce config.Errors
		if errors.As(err, &ce) {
			for _, e := range ce {
				e.Source = path
			}
		}
		return err
	}
	fmt.Fprintf(c.stdout, "%s: ok\n", path)
	return nil
}

const initAbout = `Writes a commented starting configuration to FILE (default switchyard.yaml;
"-" for standard output) with a newly generated JWT secret, API key and
Channelstream secret. The file is created readable by its owner only, and an
existing file is kept unless --force is given.`

func (c *cli) configInit(args []string) error {
	fset := flag.NewFlagSet("config init", flag.ContinueOnError)
	force := fset.Bool("force", false, "overwrite FILE if it exists")
	pos, err := c.parse(fset, "switchyard config init [FILE] [--force]", initAbout, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return errUsage{errors.New("usage: switchyard config init [FILE] [--force]")}
	}
	path := "switchyard.yaml"
	if len(pos) == 1 {
		path = pos[0]
	}
	text := starterConfig(rand.Text(), rand.Text()+rand.Text()[:6], rand.Text())
	// What is written must pass the check it is meant to pass.
	if _, err := config.Parse(path, []byte(text), nil); err != nil {
		return fmt.Errorf("config init: the generated configuration is invalid (a bug): %w", err)
	}
	if path == "-" {
		_, err := fmt.Fprint(c.stdout, text)
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return errUsage{fmt.Errorf("config init: %s exists; keep it, or overwrite it with --force", path)}
	}
	if err != nil {
		return fmt.Errorf("config init: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("config init: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("config init: %w", err)
	}
	fmt.Fprintf(c.stdout, "wrote %s (it holds secrets: keep it out of version control)\nnext: switchyard config check %s && switchyard serve --config %s\n", path, shellQuote(path), shellQuote(path))
	return nil
}

// starterConfig is the file config init writes, with its secrets.
func starterConfig(jwtSecret, apiKey, channelstreamSecret string) string {
	r := strings.NewReplacer("JWT_SECRET", jwtSecret, "API_KEY", apiKey, "CS_SECRET", channelstreamSecret)
	return r.Replace(starterTemplate)
}

const starterTemplate = `# Switchyard configuration, written by "switchyard config init".
#
# Every key is described in docs/configuration.md; keys left out keep their
# defaults. Any key can also come from the environment: SWITCHYARD_ + the
# upper-cased key path with "." replaced by "_" (SWITCHYARD_LISTEN, ...).
# This file holds secrets generated for you: keep it out of version control
# (or move them to the environment) and readable by the server's user only.
#
# Check it with:   switchyard config check switchyard.yaml
# Run with:        switchyard serve --config switchyard.yaml

# Address to listen on; ":8000" listens on every interface.
listen: 127.0.0.1:8000

# Where the embedded SQLite database lives.
data_dir: ./switchyard-data

log:
  format: text          # text for people, json for log collectors
  level: info           # debug | info | warn | error

store:
  driver: sqlite
  change_log:           # what lets reconnecting clients catch up on records
    max_age: 168h       # keep a week of changes
    max_rows: 1000000   # and at most this many

auth:
  # Clients without a token connect as anonymous users. Set to false when
  # every client has a token (a token without the user claim is then
  # refused too).
  anonymous: true
  jwt:
    # Your application signs tokens with this secret (HS256); mint one for
    # development with: switchyard token --user alice
    hmac_secret: "JWT_SECRET"
    # The claim holding the user id: sub, or user_id for Django REST
    # framework's simplejwt (integers are accepted).
    user_claim: sub

# Keys your backend sends to the server API: Authorization: apikey <key>.
api_keys:
  - "API_KEY"

websocket:
  # Browser origins allowed to open WebSockets besides the server's own,
  # e.g. ["https://app.example.com", "http://localhost:3000"].
  allowed_origins: []

limits:
  max_message_size: 64KiB
  max_connections: 0        # 0 = unlimited
  messages_per_second: 0    # per connection, 0 = unlimited

# The Channelstream-compatible API, off until enabled.
channelstream:
  enabled: false
  secret: "CS_SECRET"

channels:
  namespaces:
    # Channels named "chat:..." keep presence and the last 100 messages for
    # an hour, so reconnecting clients recover what they missed.
    chat:
      presence: true
      history_size: 100
      history_ttl: 1h
      recover: true
      permissions: {subscribe: anyone, publish: authenticated, presence: anyone, history: anyone}

# Live data: uncomment to serve a "todos" resource over /live and
# /api/resources/todos/ (docs/resources.md).
# resources:
#   todos:
#     fields:
#       title: {type: string, required: true, max_length: 200}
#       done:  {type: bool, default: false}
#     search: [title]
#     ordering: [-id]
#     permissions: {read: anyone, create: authenticated, update: authenticated, delete: authenticated}
`
