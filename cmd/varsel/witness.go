package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"varsel/audit/witness"
)

const witnessUsage = `Usage: varsel witness --listen ADDR --key FILE --log ORIGIN=VKEYFILE... --state FILE
       varsel witness keygen --name NAME --out FILE [--vkey-out FILE]

  (no subcommand)
      Serve a C2SP tlog-witness: POST /add-checkpoint cosigns a log's
      checkpoint (an Ed25519 C2SP tlog-cosignature line) only when it is
      signed by the log's key and a consistency proof links it to the last
      checkpoint this witness cosigned for that log; otherwise it answers
      403 (signature), 404 (unknown origin), 409 (old size is not the
      witness's, which the body names), 422 (fork or proof) or 400. GET
      /<sha256 hex of the origin>/checkpoint serves the latest cosigned one.
      --log names each log: its origin line (a Varsel broker's is
      BROKER-ID/audit) and a file with its note verifier key (GET
      /v1/audit/key). --state keeps the latest size and root per log; it is
      replaced atomically before each cosignature is returned. Run it apart
      from the broker: by someone else, on other machines.
  keygen --name NAME --out FILE [--vkey-out FILE]
      Make a witness key named NAME (e.g. witness.example.org/varsel):
      writes the private key to FILE (mode 0600; refuses to overwrite) and
      prints the verifier key (vkey) that brokers (--witness URL=VKEYFILE)
      and verifiers (audit verify --witness-key) are given.
`

func runWitness(ctx context.Context, args []string, o cmdIO) error {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(o.stdout, witnessUsage)
		return nil
	}
	if len(args) > 0 && args[0] == "keygen" {
		return runWitnessKeygen(args[1:], o)
	}
	fs := flagSet("witness", "witness --listen ADDR --key FILE --log ORIGIN=VKEYFILE... --state FILE", o)
	listen := fs.String("listen", "127.0.0.1:8090", "address to serve HTTP on")
	keyFile := fs.String("key", "", "the witness's private key (varsel witness keygen)")
	var logs stringList
	fs.Var(&logs, "log", "a log to witness, as ORIGIN=VKEYFILE: its origin line and a file with its note verifier key (repeatable)")
	state := fs.String("state", "", "file keeping the latest cosigned checkpoint of each log")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	if *keyFile == "" || *state == "" || len(logs) == 0 {
		return fmt.Errorf("witness: --key, --state and at least one --log are required (see varsel witness --help)")
	}
	b, err := readFile(*keyFile)
	if err != nil {
		return err
	}
	signer, err := witness.NewSigner(string(b))
	if err != nil {
		return fmt.Errorf("witness: %s: %v", *keyFile, err)
	}
	cfg := witness.Config{Signer: signer, StatePath: *state}
	for _, spec := range logs {
		origin, file, ok := strings.Cut(spec, "=")
		if !ok || origin == "" {
			return fmt.Errorf("witness: --log %q: want ORIGIN=VKEYFILE", spec)
		}
		b, err := readFile(file)
		if err != nil {
			return err
		}
		v, err := note.NewVerifier(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("witness: --log %s: %s is not a note verifier key: %v", origin, file, err)
		}
		cfg.Logs = append(cfg.Logs, witness.Log{Origin: origin, Verifiers: []note.Verifier{v}})
	}
	if *logFormat != "text" && *logFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", *logFormat)
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	srv, err := witness.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("witness: listen: %w", err)
	}
	log.Info("varsel witness serving", "addr", ln.Addr().String(), "name", signer.Name(), "logs", len(cfg.Logs))
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func runWitnessKeygen(args []string, o cmdIO) error {
	fs := flagSet("witness keygen", "witness keygen --name NAME --out FILE [--vkey-out FILE]", o)
	name := fs.String("name", "", "the witness's key name, e.g. witness.example.org/varsel")
	out := fs.String("out", "", "file to write the private key to (mode 0600; refuses to overwrite)")
	vkeyOut := fs.String("vkey-out", "", "file to write the verifier key to as well")
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	if *name == "" || *out == "" {
		return fmt.Errorf("witness keygen: --name and --out are required")
	}
	skey, vkey, err := witness.GenerateKey(*name)
	if err != nil {
		return fmt.Errorf("witness keygen: %w", err)
	}
	if err := writeExclusive(*out, []byte(skey+"\n"), 0o600); err != nil {
		return err
	}
	if *vkeyOut != "" {
		if err := writeExclusive(*vkeyOut, []byte(vkey+"\n"), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintln(o.stdout, vkey)
	return nil
}
