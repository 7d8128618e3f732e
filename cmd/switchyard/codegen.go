package main

import (
	"context"
	"errors"
	"flag"

	"github.com/switchyardhq/switchyard/clients/codegen"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/server"
)

const codegenAbout = `Prints TypeScript declarations for @switchyard/client: an interface per
resource of the configuration, and the augmentation that makes
client.resource("name") and client.liveQuery("name") typed (docs/clients.md).
The configuration is found as serve finds it (--config, SWITCHYARD_CONFIG,
./switchyard.yaml, else the embedded default).`

// codegen runs `switchyard codegen ts`.
func (c *cli) codegen(args []string) error {
	fs := flag.NewFlagSet("codegen", flag.ContinueOnError)
	cfgFile := fs.String("config", "", "configuration file (YAML)")
	pos, err := c.parse(fs, "switchyard codegen ts [--config FILE]", codegenAbout, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "ts" {
		return errUsage{errors.New("usage: switchyard codegen ts [--config FILE] (TypeScript is the only target; see switchyard codegen --help)")}
	}
	path := configPath(*cfgFile, c.environ)
	cfg, err := config.Load(path, c.environ)
	if err != nil {
		return err
	}
	// Resources on existing tables take their fields from the database.
	if cfg, err = server.ResolveTables(context.Background(), cfg); err != nil {
		return err
	}
	return codegen.TypeScript(c.stdout, cfg, path)
}
