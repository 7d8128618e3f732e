package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

const migrateUsage = `Usage:
  switchyard migrate drop-column RESOURCE FIELD [--config FILE] [--data-dir DIR] [--yes]

serve refuses to start when a field was removed from the configuration, since
that would drop its data; drop-column drops it deliberately.
switchyard migrate drop-column --help shows its flags.
`

const dropAbout = `Drops the column of FIELD, which the configuration no longer declares, and
all its data from RESOURCE's table, in one transaction. Stop the server
first. Without --yes it only says what it would do (exit 2).`

func (c *cli) migrate(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errUsage{errors.New("usage: switchyard migrate drop-column RESOURCE FIELD [--yes] (see switchyard migrate --help)")}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, migrateUsage)
		return nil
	case "drop-column":
		return c.dropColumn(ctx, args[1:])
	}
	return errUsage{fmt.Errorf("unknown migrate command %q (have: drop-column)", args[0])}
}

func (c *cli) dropColumn(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("migrate drop-column", flag.ContinueOnError)
	cfgFile := fset.String("config", "", "configuration file (default: $SWITCHYARD_CONFIG, else ./switchyard.yaml)")
	dataDir := fset.String("data-dir", "", "directory of the database (config key data_dir)")
	yes := fset.Bool("yes", false, "drop the column and its data (without it, only say what would be done)")
	pos, err := c.parse(fset, "switchyard migrate drop-column RESOURCE FIELD [--config FILE] [--data-dir DIR] [--yes]", dropAbout, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errUsage{errors.New("usage: switchyard migrate drop-column RESOURCE FIELD [--config FILE] [--data-dir DIR] [--yes]")}
	}
	resource, field := pos[0], pos[1]
	cfg, err := config.Load(configPath(*cfgFile, c.environ), c.environ)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if cfg.Store.Driver != config.StoreSQLite {
		return errUsage{fmt.Errorf("migrate drop-column: store.driver %s is not available in this build (sqlite is)", cfg.Store.Driver)}
	}
	for _, r := range cfg.Resources {
		if _, declared := r.Field(field); r.Name == resource && declared {
			return errUsage{fmt.Errorf("migrate drop-column: resources.%s.fields.%s is still declared: remove it from the configuration first", resource, field)}
		}
	}
	path := filepath.Join(cfg.DataDir, "switchyard.db")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("migrate drop-column: no database at %s (check data_dir)", path)
	}
	if !*yes {
		fmt.Fprintf(c.stdout, "would drop column %s of %s, and its data, from %s\nrun again with --yes to do it\n", field, resource, path)
		return errUsage{errors.New("migrate drop-column: nothing done without --yes")}
	}
	db, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.DropColumn(ctx, resource, field); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errUsage{fmt.Errorf("migrate drop-column: %s has no stored field %s", resource, field)}
		}
		return err
	}
	fmt.Fprintf(c.stdout, "dropped column %s of %s from %s\n", field, resource, path)
	return nil
}
