// Command post sends an empty POST to a URL and prints the answer: the demo
// uses it to drive the fake HackerNews server's control API without curl.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: post URL")
		os.Exit(2)
	}
	resp, err := http.Post(os.Args[1], "application/json", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "post:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Fprintln(os.Stderr, "post:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s\n", resp.Status, body)
	if resp.StatusCode >= 300 {
		os.Exit(1)
	}
}
