package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"varsel/broker/client"
)

// clientFlags are the flags of the commands that act as an agency's employee.
type clientFlags struct {
	url, key, agency, sub, role, office, brokerID string
}

func (cf *clientFlags) register(fs *flag.FlagSet, defaultRole string) {
	fs.StringVar(&cf.url, "url", "http://127.0.0.1:8080", "the broker's base URL")
	fs.StringVar(&cf.key, "key", "", "the agency's private JWK (from varsel keygen)")
	fs.StringVar(&cf.agency, "agency", "", "the calling agency's id (iss)")
	fs.StringVar(&cf.sub, "sub", "", "the employee's id in the agency's own IAM (sub)")
	fs.StringVar(&cf.role, "role", defaultRole, "the employee's role")
	fs.StringVar(&cf.office, "office", "", "the employee's office (required for caseworker, reception, security-coordinator)")
	fs.StringVar(&cf.brokerID, "broker-id", "varsel", "the broker's id (aud)")
}

func (cf *clientFlags) client(cmd string) (*client.Client, error) {
	if cf.key == "" || cf.agency == "" || cf.sub == "" || cf.role == "" {
		return nil, fmt.Errorf("%s: --key, --agency, --sub and --role are required", cmd)
	}
	signer, err := client.LoadSigner(cf.agency, cf.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	signer.Audience = cf.brokerID
	return &client.Client{BaseURL: cf.url, HTTP: &http.Client{Timeout: 60 * time.Second}, Signer: signer,
		Employee: client.Employee{Sub: cf.sub, Role: cf.role, Office: cf.office}}, nil
}

func readBody(path string) ([]byte, error) {
	switch path {
	case "":
		return nil, nil
	case "-":
		return readAll(os.Stdin)
	default:
		return readFile(path)
	}
}

// printResponse writes the answer's body and turns a non-2xx into an error.
func printResponse(o cmdIO, method, path string, resp *client.Response) error {
	o.stdout.Write(resp.Body)
	if len(resp.Body) > 0 && resp.Body[len(resp.Body)-1] != '\n' {
		fmt.Fprintln(o.stdout)
	}
	if resp.Status/100 != 2 {
		return fmt.Errorf("%s %s answered %d", method, path, resp.Status)
	}
	return nil
}

func runCall(ctx context.Context, args []string, o cmdIO) error {
	fs := flagSet("call", "call METHOD PATH [--body FILE] --key PRIVATE.jwk --agency ID --sub SUB --role ROLE [--office OFFICE]", o)
	var cf clientFlags
	cf.register(fs, "")
	bodyPath := fs.String("body", "", `file with the JSON body ("-" for standard input)`)
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
	c, err := cf.client("call")
	if err != nil {
		return err
	}
	body, err := readBody(*bodyPath)
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("call: %w", err)
	}
	return printResponse(o, method, path, resp)
}

func runWarn(ctx context.Context, args []string, o cmdIO) error {
	fs := flagSet("warn", "warn --body WARNING.json --key PRIVATE.jwk --agency ID --sub SUB", o)
	var cf clientFlags
	cf.register(fs, "police-liaison")
	bodyPath := fs.String("body", "", `file with the warning: a flag plus "targets": {"offices": [...]} ("-" for standard input)`)
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	if *bodyPath == "" {
		return fmt.Errorf("warn: --body is required")
	}
	c, err := cf.client("warn")
	if err != nil {
		return err
	}
	body, err := readBody(*bodyPath)
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, "POST", "/v1/warnings", body)
	if err != nil {
		return fmt.Errorf("warn: %w", err)
	}
	return printResponse(o, "POST", "/v1/warnings", resp)
}

func runInbox(ctx context.Context, args []string, o cmdIO) error {
	fs := flagSet("inbox", "inbox --key PRIVATE.jwk --agency ID --sub SUB --office OFFICE [--after CURSOR] [--wait 30s] [--follow] [--ack]", o)
	var cf clientFlags
	cf.register(fs, "security-coordinator")
	after := fs.String("after", "", "cursor: show warnings after it")
	wait := fs.Duration("wait", 0, "long-poll up to this long (at most 30s) for a new warning")
	follow := fs.Bool("follow", false, "keep long-polling and print warnings as they arrive, until interrupted")
	ack := fs.Bool("ack", false, "acknowledge each warning shown")
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	c, err := cf.client("inbox")
	if err != nil {
		return err
	}
	if *follow && *wait == 0 {
		*wait = 30 * time.Second
	}
	cursor := *after
	for {
		q := url.Values{}
		if cursor != "" {
			q.Set("after", cursor)
		}
		if *wait > 0 {
			q.Set("wait", wait.String())
		}
		path := "/v1/warnings/inbox"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		var page struct {
			Warnings []json.RawMessage `json:"warnings"`
			Next     string            `json:"next"`
		}
		if _, err := c.JSON(ctx, "GET", path, nil, &page); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("inbox: %w", err)
		}
		for _, w := range page.Warnings {
			fmt.Fprintln(o.stdout, string(w))
			if *ack {
				var item struct {
					ID string `json:"id"`
				}
				_ = json.Unmarshal(w, &item)
				if _, err := c.JSON(ctx, "POST", "/v1/warnings/"+item.ID+"/ack", nil, nil); err != nil {
					return fmt.Errorf("inbox: ack %s: %w", item.ID, err)
				}
			}
		}
		cursor = page.Next
		if !*follow {
			fmt.Fprintf(o.stderr, "next cursor: %s\n", cursor)
			return nil
		}
	}
}
