package main

import (
	"flag"
	"fmt"
	"runtime/debug"

	"github.com/switchyardhq/switchyard"
)

func (c *cli) version(args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if _, err := c.parse(fs, "switchyard version", "Prints the version and the commit this binary was built from.", args); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "switchyard %s (commit %s)\n", switchyard.Version, commit())
	return nil
}

// commit is the stamped commit, else the revision the Go toolchain
// recorded when building from a checkout, else "unknown".
func commit() string {
	if switchyard.Commit != "" {
		return switchyard.Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && dirty {
			rev += "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
	return "unknown"
}
