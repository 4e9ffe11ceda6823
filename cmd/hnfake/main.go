// Command hnfake serves a fake HackerNews Search API (hn.algolia.com/api/v1)
// on a local address, from recorded items files or a generated dataset, with
// optional injected faults: an offline stand-in for the real API in demos
// and in tests driven from outside Go.
//
//	hnfake -threads 1000 -comments 30          # generated
//	hnfake -data testdata/items                # recorded items/{id} files
//	hnfake -rate-429 0.1 -retry-after 2s       # with faults
//	hnindex update --hn-url http://127.0.0.1:8081/api/v1
//
// A generated dataset is the same on every run: its times are anchored at
// -start (default hnfake.DefaultStart), and its clock, which edits and
// added threads read, stands there; -now anchors it at the current time
// and lets the clock run.
//
// Besides the API it serves a small control API under /_fake/ (edit,
// delete, hide and add threads, set faults, read request counts; see
// hnfake.ControlEndpoints). Run hnfake -h for the flags and the control
// endpoints. It stops on SIGINT or SIGTERM. Exit codes: 0 stopped cleanly,
// 1 failed, 2 bad flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "hnfake:", err)
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprintln(os.Stderr, "Run hnfake -h for the flags.")
		os.Exit(2)
	}
	os.Exit(1)
}
