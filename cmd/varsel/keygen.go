package main

import (
	"context"
	"fmt"
	"os"

	"varsel/broker/auth"
)

func runKeygen(_ context.Context, args []string, o cmdIO) error {
	fs := flagSet("keygen", "keygen --alg ES256|EdDSA --kid KID --out PRIVATE.jwk [--jwks-out PUBLIC.jwks]", o)
	alg := fs.String("alg", "ES256", "ES256 or EdDSA")
	kid := fs.String("kid", "", "key id, unique within the agency")
	out := fs.String("out", "", "file to write the private JWK to (mode 0600; refuses to overwrite)")
	jwksOut := fs.String("jwks-out", "", "file to write the public JWKS to (to register with varsel agency)")
	if err := parse(fs, args, o); err != nil {
		return handled(err)
	}
	if *kid == "" || *out == "" {
		return fmt.Errorf("keygen: --kid and --out are required")
	}
	priv, pub, err := auth.GenerateKey(*alg, *kid)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := writeExclusive(*out, priv, 0o600); err != nil {
		return err
	}
	if *jwksOut != "" {
		if err := writeExclusive(*jwksOut, pub, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.stdout, "wrote %s key %q to %s\n", *alg, *kid, *out)
	return nil
}

func writeExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
