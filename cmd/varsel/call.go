package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"varsel/broker/client"
)

func runCall(ctx context.Context, args []string, o cmdIO) error {
	fs := flagSet("call", "call METHOD PATH [--body FILE] --key PRIVATE.jwk --agency ID --sub SUB --role ROLE [--office OFFICE]", o)
	url := fs.String("url", "http://127.0.0.1:8080", "the broker's base URL")
	bodyPath := fs.String("body", "", `file with the JSON body ("-" for standard input)`)
	keyPath := fs.String("key", "", "the agency's private JWK (from varsel keygen)")
	agency := fs.String("agency", "", "the calling agency's id (iss)")
	sub := fs.String("sub", "", "the employee's id in the agency's own IAM (sub)")
	role := fs.String("role", "", "the employee's role")
	office := fs.String("office", "", "the employee's office (required for caseworker, reception, security-coordinator)")
	aud := fs.String("broker-id", "varsel", "the broker's id (aud)")
	// Flags may follow METHOD and PATH, as in the synopsis.
	var positional []string
	rest := args
	for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		positional, rest = append(positional, rest[0]), rest[1:]
	}
	if err := parse(fs, rest, o); err != nil {
		return handled(err)
	}
	positional = append(positional, fs.Args()...)
	if len(positional) != 2 {
		return fmt.Errorf("call: want METHOD PATH (see varsel call --help)")
	}
	method, path := strings.ToUpper(positional[0]), positional[1]
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("call: PATH must start with /")
	}
	if *keyPath == "" || *agency == "" || *sub == "" || *role == "" {
		return fmt.Errorf("call: --key, --agency, --sub and --role are required")
	}
	signer, err := client.LoadSigner(*agency, *keyPath)
	if err != nil {
		return fmt.Errorf("call: %w", err)
	}
	signer.Audience = *aud
	var body []byte
	switch *bodyPath {
	case "":
	case "-":
		if body, err = readAll(os.Stdin); err != nil {
			return err
		}
	default:
		if body, err = readFile(*bodyPath); err != nil {
			return err
		}
	}
	c := &client.Client{BaseURL: *url, HTTP: http.DefaultClient, Signer: signer,
		Employee: client.Employee{Sub: *sub, Role: *role, Office: *office}}
	resp, err := c.Do(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("call: %w", err)
	}
	o.stdout.Write(resp.Body)
	if len(resp.Body) > 0 && resp.Body[len(resp.Body)-1] != '\n' {
		fmt.Fprintln(o.stdout)
	}
	if resp.Status/100 != 2 {
		return fmt.Errorf("call: %s %s answered %d", method, path, resp.Status)
	}
	return nil
}
