package app_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLayers keeps the house reading top to bottom:
// cmd → app → api → service → {policies, audit, postgres, keys} → broker,
// with nothing below importing anything above it.
func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", "varsel/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		imports[p.ImportPath] = p.Imports
	}
	if len(imports) < 10 {
		t.Fatalf("only %d packages listed", len(imports))
	}
	// forbidden[pkg] lists import prefixes pkg must not use.
	forbidden := map[string][]string{
		"varsel/broker":          {"varsel/"},
		"varsel/policies":        {"varsel/"},
		"varsel/audit":           {"varsel/broker"},
		"varsel/audit/postgres":  {"varsel/broker"},
		"varsel/broker/postgres": {"varsel/broker/service", "varsel/broker/api", "varsel/broker/app"},
		"varsel/broker/keys":     {"varsel/broker/service", "varsel/broker/api", "varsel/broker/app", "varsel/broker/postgres"},
		"varsel/broker/service":  {"varsel/broker/api", "varsel/broker/app", "varsel/broker/postgres", "varsel/audit/postgres", "net/url"},
		"varsel/broker/api":      {"varsel/broker/app", "varsel/broker/postgres", "varsel/audit/postgres"},
		"varsel/broker/portal":   {"varsel/broker/app", "varsel/broker/service", "varsel/broker/postgres", "varsel/audit/postgres"},
	}
	for pkg, bad := range forbidden {
		deps, ok := imports[pkg]
		if !ok {
			t.Errorf("package %s not found", pkg)
			continue
		}
		for _, d := range deps {
			for _, b := range bad {
				if d == b || (strings.HasSuffix(b, "/") && strings.HasPrefix(d, b)) || strings.HasPrefix(d, b+"/") {
					t.Errorf("%s imports %s: the layers point one way", pkg, d)
				}
			}
		}
	}
	// Only commands wire the broker together.
	for pkg, deps := range imports {
		if slices.Contains(deps, "varsel/broker/app") && !strings.HasPrefix(pkg, "varsel/cmd/") {
			t.Errorf("%s imports varsel/broker/app: only cmd/ may", pkg)
		}
	}
}
