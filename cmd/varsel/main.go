// Command varsel is the Varsel broker and its operator tools: serve the API,
// migrate the database, register agencies and their keys, make keys, sign
// requests by hand, and verify the audit log. Run "varsel help" for the list.
package main

import (
	"context"
	"errors"
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
		os.Exit(exitCodeOf(err))
	}
}

// exitCodeOf is 1 for a failure, or the code an error carries (audit verify
// --no-signatures exits 2).
func exitCodeOf(err error) int {
	var e *exitError
	if errors.As(err, &e) && e.code > 1 {
		return e.code
	}
	return 1
}
