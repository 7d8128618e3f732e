// Command sign prints a Channelstream request signature for a secret (the
// x-channelstream-secret header), for tests/nginx/check.sh.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/switchyardhq/switchyard/protocol/channelstream"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sign SECRET")
		os.Exit(2)
	}
	fmt.Println(channelstream.Sign(os.Args[1], "channelstream", time.Now()))
}
