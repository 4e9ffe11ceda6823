// Command hnindex keeps the recent HackerNews threads, with their whole
// comment trees, in a full-text searchable table, fetching only what
// changed on each update. Run `hnindex --help` for the commands.
package main

import (
	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/hnindex"
)

func main() {
	cli.Main(hnindex.App(nil))
}
