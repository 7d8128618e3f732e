package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyardhq/switchyard/config"
)

const dashboardUsage = `Usage:
  switchyard dashboard hash-password [--cost N]   read a password on stdin, print its bcrypt hash for dashboard.password_hash

switchyard dashboard hash-password --help shows its flags.
`

func (c *cli) dashboardCmd(args []string) error {
	if len(args) == 0 {
		return errUsage{errors.New("usage: switchyard dashboard hash-password (see switchyard dashboard --help)")}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, dashboardUsage)
		return nil
	case "hash-password":
		return c.hashPassword(args[1:])
	}
	return errUsage{fmt.Errorf("unknown dashboard command %q (have: hash-password)", args[0])}
}

const hashPasswordAbout = `Reads the dashboard's admin password from the first line of stdin (so that
it stays out of the shell's history and the process list) and prints its
bcrypt hash, the value of dashboard.password_hash (docs/dashboard.md). The
password must be at least 12 characters.

  printf '%s\n' 'a long admin password' | switchyard dashboard hash-password
  SWITCHYARD_DASHBOARD_PASSWORD_HASH="$(switchyard dashboard hash-password < password.txt)"`

func (c *cli) hashPassword(args []string) error {
	fs := flag.NewFlagSet("dashboard hash-password", flag.ContinueOnError)
	cost := fs.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt cost, %d to %d: each step doubles the time a sign-in (and a guess) takes", bcrypt.MinCost, bcrypt.MaxCost))
	pos, err := c.parse(fs, "switchyard dashboard hash-password [--cost N] < PASSWORD", hashPasswordAbout, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errUsage{errors.New("dashboard hash-password: the password is read from stdin, not from the arguments")}
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		return errUsage{fmt.Errorf("dashboard hash-password: --cost must be from %d to %d (got %d)", bcrypt.MinCost, bcrypt.MaxCost, *cost)}
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return errUsage{errors.New("dashboard hash-password: no password on stdin")}
	}
	pw := strings.TrimRight(line, "\r\n")
	if n := len([]rune(pw)); n < config.MinDashboardPassword {
		return errUsage{fmt.Errorf("dashboard hash-password: the password must be at least %d characters (got %d)", config.MinDashboardPassword, n)}
	}
	if len(pw) > 72 {
		return errUsage{errors.New("dashboard hash-password: bcrypt uses at most 72 bytes of a password: use a shorter one")}
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), *cost)
	if err != nil {
		return fmt.Errorf("dashboard hash-password: %w", err)
	}
	fmt.Fprintln(c.stdout, string(h))
	return nil
}
