package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard/config"
)

const healthAbout = `Asks the server's /healthz and exits 0 when it answers 200, 1 otherwise: the
container HEALTHCHECK of an image without a shell or curl. The URL defaults to
/healthz on the configured listen address (0.0.0.0 and :: become loopback).`

func (c *cli) healthcheck(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	target := fs.String("url", "", "URL to ask (default: http://LISTEN/healthz from the configuration)")
	cfgFile := fs.String("config", "", "configuration file (default: $SWITCHYARD_CONFIG, else ./switchyard.yaml)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	pos, err := c.parse(fs, "switchyard healthcheck [--url URL] [--config FILE] [--timeout DURATION]", healthAbout, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errUsage{fmt.Errorf("healthcheck: unexpected arguments: %s", strings.Join(pos, " "))}
	}
	u := *target
	if u == "" {
		cfg, err := config.Load(configPath(*cfgFile, c.environ), c.environ)
		if err != nil {
			return err
		}
		u = "http://" + loopback(cfg.Listen) + "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return errUsage{fmt.Errorf("healthcheck: %w", err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", u, resp.Status)
	}
	fmt.Fprintf(c.stdout, "%s: ok\n", u)
	return nil
}

// loopback turns a listen address into one to connect to: an unspecified
// host (all interfaces) becomes the loopback address.
func loopback(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
