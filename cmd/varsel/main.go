// Command varsel is the Varsel broker and its operator tools: serve the API,
// migrate the database, register agencies and their keys, make keys, sign
// requests by hand, and verify the audit log. Run "varsel help" for the list.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"varsel/broker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "varsel: "+oneLine(broker.ErrorMessage(err)))
		os.Exit(1)
	}
}
