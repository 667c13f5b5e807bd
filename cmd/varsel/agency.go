package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/auth"
	"varsel/broker/postgres"
	"varsel/policies"
)

const agencyUsage = `Usage: varsel agency SUBCOMMAND [flags]

  add --id ID --kind KIND --name NAME [--office OFFICE]... --jwks FILE
  list [--json]
  disable --id ID
  enable --id ID
  key add --id ID --jwks FILE
  key retire --id ID --kid KID

KIND is one of nav-state, nav-municipal, police, health, broker. ID and
OFFICE match ^[a-z0-9][a-z0-9-]{2,63}$. A JWKS file holds public ES256
(P-256) or Ed25519 keys only, each with a unique kid.

Every change (all but list) is an audit entry, written in the same
transaction as the change, with the operator as actor and the broker
(--broker-id, default varsel) as actor agency; the success line prints its
seq. The entry names the agency, its kind and offices, and the kids; never
key material. --operator NAME (or VARSEL_OPERATOR) names the operator,
default the OS user: 1 to 64 printable characters, no spaces.
A change that would change nothing (disabling a disabled agency, enabling
an active one, retiring a retired key) is refused, and not audited.
`

func runAgency(ctx context.Context, args []string, o cmdIO) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(o.stdout, agencyUsage)
		return nil
	}
	sub, rest := args[0], args[1:]
	if sub == "key" {
		if len(rest) == 0 {
			return fmt.Errorf("agency key: want add or retire (see varsel agency --help)")
		}
		sub, rest = "key "+rest[0], rest[1:]
	}
	c := DefaultConfig()
	fs := flagSet("agency", "agency "+sub+" [flags]", o)
	c.registerDatabase(fs)
	var id, kind, name, jwksPath, kid, operator string
	var offices stringList
	var asJSON bool
	switch sub {
	case "add":
		fs.StringVar(&id, "id", "", "agency id")
		fs.StringVar(&kind, "kind", "", "nav-state, nav-municipal, police, health or broker")
		fs.StringVar(&name, "name", "", "the agency's name")
		fs.Var(&offices, "office", "an office id of the agency (repeatable, or comma-separated)")
		fs.StringVar(&jwksPath, "jwks", "", "JWKS file with the agency's public keys")
	case "list":
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	case "disable", "enable":
		fs.StringVar(&id, "id", "", "agency id")
	case "key add":
		fs.StringVar(&id, "id", "", "agency id")
		fs.StringVar(&jwksPath, "jwks", "", "JWKS file with the keys to add")
	case "key retire":
		fs.StringVar(&id, "id", "", "agency id")
		fs.StringVar(&kid, "kid", "", "kid of the key to retire")
	default:
		return fmt.Errorf("agency: unknown subcommand %q (see varsel agency --help)", sub)
	}
	if sub != "list" {
		fs.StringVar(&operator, "operator", "", "who makes the change, the actor of its audit entry (default: the OS user)")
		fs.StringVar(&c.BrokerID, "broker-id", c.BrokerID, "the broker's id: the actor agency of the audit entry")
	}
	if err := parse(fs, rest, o); err != nil {
		return handled(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("agency %s: unexpected argument %q", sub, fs.Arg(0))
	}

	// Validate everything that needs no database first.
	var a *broker.Agency
	var keys []broker.AgencyKey
	switch sub {
	case "add":
		a = &broker.Agency{ID: id, Kind: broker.AgencyKind(kind), Name: strings.TrimSpace(name), Offices: offices}
		if err := a.Validate(); err != nil {
			return fmt.Errorf("agency add: %s", broker.ErrorMessage(err))
		}
		var err error
		if keys, err = readJWKS(id, jwksPath); err != nil {
			return err
		}
	case "key add":
		if id == "" {
			return fmt.Errorf("agency key add: --id is required")
		}
		var err error
		if keys, err = readJWKS(id, jwksPath); err != nil {
			return err
		}
	case "disable", "enable", "key retire":
		if id == "" {
			return fmt.Errorf("agency %s: --id is required", sub)
		}
		if sub == "key retire" && kid == "" {
			return fmt.Errorf("agency key retire: --kid is required")
		}
	}
	var e *audit.Entry
	if sub != "list" {
		var err error
		if e, err = registryEntry(c.BrokerID, operator, o.getenv); err != nil {
			return fmt.Errorf("agency %s: %v", sub, err)
		}
		e.Action = "agency." + strings.ReplaceAll(sub, " ", ".")
		e.Reasons = []string{"agency:" + id}
		if a != nil {
			e.Reasons = append(e.Reasons, "kind:"+string(a.Kind))
			for _, off := range a.Offices {
				e.Reasons = append(e.Reasons, "office:"+off)
			}
		}
		for _, k := range keys {
			e.Reasons = append(e.Reasons, "kid:"+k.KID)
		}
		if kid != "" {
			e.Reasons = append(e.Reasons, "kid:"+kid)
		}
	}

	db, err := operatorDB(ctx, c)
	if err != nil {
		return err
	}
	defer db.Close()

	switch sub {
	case "add":
		if err := db.CreateAgency(ctx, a, keys, e); err != nil {
			return err
		}
		fmt.Fprintf(o.stdout, "agency %s added (%s, %d offices, %d keys) (audit seq %d)\n", a.ID, a.Kind, len(a.Offices), len(keys), e.Seq)
	case "list":
		return listAgencies(ctx, db, o, asJSON)
	case "disable":
		if err := db.SetAgencyStatus(ctx, id, broker.StatusDisabled, e); err != nil {
			return err
		}
		fmt.Fprintf(o.stdout, "agency %s disabled (audit seq %d)\n", id, e.Seq)
	case "enable":
		if err := db.SetAgencyStatus(ctx, id, broker.StatusActive, e); err != nil {
			return err
		}
		fmt.Fprintf(o.stdout, "agency %s enabled (audit seq %d)\n", id, e.Seq)
	case "key add":
		if err := db.AddKeys(ctx, id, keys, e); err != nil {
			return err
		}
		fmt.Fprintf(o.stdout, "%d keys added to agency %s (audit seq %d)\n", len(keys), id, e.Seq)
	case "key retire":
		if err := db.RetireKey(ctx, id, kid, e); err != nil {
			return err
		}
		fmt.Fprintf(o.stdout, "key %s of agency %s retired (audit seq %d)\n", kid, id, e.Seq)
	}
	return nil
}

// registryEntry starts the audit entry of a registry change: the operator
// (flag, OS user or $USER) acting for the broker, under the embedded policy
// bundle's version. The caller sets the action and reasons.
func registryEntry(brokerID, operatorFlag string, getenv env) (*audit.Entry, error) {
	if brokerID == "" {
		return nil, fmt.Errorf("--broker-id must not be empty")
	}
	operator, err := operatorName(operatorFlag, getenv)
	if err != nil {
		return nil, err
	}
	version, err := policies.Version()
	if err != nil {
		return nil, err
	}
	return &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: brokerID, Actor: operator, Role: "operator",
		Decision: audit.Allow, PolicyVersion: version}, nil
}

func readJWKS(agencyID, path string) ([]broker.AgencyKey, error) {
	if path == "" {
		return nil, fmt.Errorf("--jwks FILE is required")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	keys, err := auth.ParseJWKS(agencyID, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, broker.ErrorMessage(err))
	}
	return keys, nil
}

func listAgencies(ctx context.Context, db *postgres.DB, o cmdIO, asJSON bool) error {
	agencies, err := db.Agencies(ctx)
	if err != nil {
		return err
	}
	type row struct {
		*broker.Agency
		Keys []broker.AgencyKey `json:"keys"`
	}
	rows := make([]row, 0, len(agencies))
	for _, a := range agencies {
		keys, err := db.Keys(ctx, a.ID)
		if err != nil {
			return err
		}
		for i := range keys {
			if k, err := auth.ParsePublicJWK(keys[i].JWK); err == nil {
				keys[i].Alg, _ = auth.KeyAlg(k)
			}
		}
		rows = append(rows, row{a, keys})
	}
	if asJSON {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(o.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSTATUS\tOFFICES\tKEYS\tNAME")
	for _, r := range rows {
		var ks []string
		for _, k := range r.Keys {
			ks = append(ks, fmt.Sprintf("%s(%s,%s)", k.KID, k.Alg, k.Status))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Kind, r.Status, strings.Join(r.Offices, ","), strings.Join(ks, " "), r.Name)
	}
	return tw.Flush()
}
