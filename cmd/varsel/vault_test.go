package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"varsel/broker/keys"
	"varsel/schema/schematest"
)

// devVault is a real Vault dev server (deploy/vault/dev.sh), set up with the
// broker's least-privilege policy. These tests never skip: a machine that
// cannot build or run Vault fails them.
type devVault struct {
	dir, addr, root, token string
	pid                    int
}

func startVault(t *testing.T) *devVault {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "vault")
	script := filepath.Join(schematest.RepoRoot(), "deploy", "vault", "dev.sh")
	cmd := exec.Command(script, "start", dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("start Vault dev server: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command(script, "stop", dir).Run() })
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	v := &devVault{dir: dir, addr: strings.TrimSpace(string(out)), root: read("root-token"), token: read("varsel-token")}
	if v.pid, err = strconv.Atoi(read("pid")); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.addr, "http://127.0.0.1:") {
		t.Fatalf("vault address %q", v.addr)
	}
	return v
}

func (v *devVault) rootClient(t *testing.T) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = v.addr
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.root)
	return c
}

func vaultConfig(v *devVault, token string) keys.VaultConfig {
	return keys.VaultConfig{Address: v.addr, Token: token}
}

func TestVaultKeys(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	w := newWorld(t, func(c *Config) {
		c.Keys = "vault"
		c.Vault = vaultConfig(v, v.token)
		c.OfficeHours = ""
	})
	// Checks work with the subject key from KV.
	flag, resp := w.issue(w.liaison(), flagBody(personA))
	if resp.Status != 201 {
		t.Fatalf("issue: %d %s", resp.Status, resp.Body)
	}
	if r, _ := w.check(w.caseworker(), map[string]any{"subject": personA, "purpose": "meeting"}); r.Result != "precautions" {
		t.Fatalf("check: %+v", r)
	}
	// The subject key really is Vault's: the ref is HMAC under its key.
	secret, err := v.rootClient(t).KVv2("secret").Get(ctx, "varsel/subject-key")
	if err != nil {
		t.Fatal(err)
	}
	if w.main.SubjectKeys.Keys().Hasher().Version != strconv.Itoa(secret.VersionMetadata.Version) {
		t.Fatalf("subject key version %q, Vault has %d", w.main.SubjectKeys.Keys().Hasher().Version, secret.VersionMetadata.Version)
	}

	// A checkpoint signed by Transit verifies with GET /v1/audit/key and varsel audit verify.
	checkpointNow(t, w.main)
	key, _ := w.caseworker().Do(ctx, "GET", "/v1/audit/key", nil)
	cp, _ := w.caseworker().Do(ctx, "GET", "/v1/audit/checkpoint", nil)
	if key.Status != 200 || cp.Status != 200 {
		t.Fatalf("key %d, checkpoint %d %s", key.Status, cp.Status, cp.Body)
	}
	pub, _, err := keys.PublicKey(string(key.Body))
	if err != nil {
		t.Fatal(err)
	}
	tk, err := v.rootClient(t).Logical().Read("transit/keys/varsel-checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	vaultPub := tk.Data["keys"].(map[string]any)["1"].(map[string]any)["public_key"].(string)
	if base64.StdEncoding.EncodeToString(pub) != vaultPub {
		t.Fatal("GET /v1/audit/key is not Transit's public key")
	}
	keyFile := filepath.Join(t.TempDir(), "key.pub")
	os.WriteFile(keyFile, key.Body, 0o644)
	out, err := cliOn(t, w.db, "audit", "verify", "--checkpoint-key", keyFile, "--origin", "varsel/audit")
	if err != nil || !strings.Contains(out, "ok:") {
		t.Fatalf("verify: %v %s", err, out)
	}

	// Vault goes away (the process is paused): checks go on, /readyz is
	// degraded, signing waits; when it returns, signing resumes.
	if err := syscall.Kill(v.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = syscall.Kill(v.pid, syscall.SIGCONT)
		}
	}()
	before, _ := w.main.AuditStore.LatestCheckpoint(ctx)
	for i := 0; i < 3; i++ {
		if r, resp := w.check(w.caseworker(), map[string]any{"subject": personA, "purpose": "meeting"}); resp.Status != 200 || r.Result != "precautions" {
			t.Fatalf("check with Vault away: %d %s", resp.Status, resp.Body)
		}
	}
	// Sign a checkpoint of those checks now, as the next tick would: the
	// Transit call waits for Vault. The readiness check below takes its
	// own timeout (Vault does not answer), time enough for a signer that
	// did not wait to have signed.
	signed := make(chan error, 1)
	go func() { _, err := w.main.Checkpointer.Checkpoint(context.Background()); signed <- err }()
	code, body := readyStatus(t, w.base)
	if code != 200 || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, `"keys":"degraded"`) {
		t.Fatalf("readyz with Vault away: %d %s", code, body)
	}
	select {
	case err := <-signed:
		t.Fatalf("checkpointing did not wait for Vault: %v", err)
	default:
	}
	if after, _ := w.main.AuditStore.LatestCheckpoint(ctx); after.Count != before.Count {
		t.Fatal("a checkpoint was signed while Vault was away")
	}
	mresp, _ := http.Get(w.base + "/metrics")
	mb, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(mb), "varsel_audit_seconds_since_checkpoint") {
		t.Fatal("no checkpoint age gauge")
	}
	_ = syscall.Kill(v.pid, syscall.SIGCONT)
	resumed = true
	// Vault answers the waiting call; had it timed out meanwhile, the next
	// tick's attempt (made here) signs.
	select {
	case err := <-signed:
		if err != nil {
			t.Logf("the waiting checkpoint failed (%v); signing again", err)
			if _, err := w.main.Checkpointer.Checkpoint(ctx); err != nil {
				t.Fatalf("signing after Vault returned: %v", err)
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting checkpoint did not end 30 s after Vault returned")
	}
	if after, _ := w.main.AuditStore.LatestCheckpoint(ctx); after.Count <= before.Count {
		t.Fatalf("no checkpoint after Vault returned: latest covers %d, as before", after.Count)
	}
	if code, body := readyStatus(t, w.base); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("readyz after Vault returned: %d %s", code, body)
	}

	// Rotation: a new subject key version, every flag still findable.
	newKey := make([]byte, 32)
	_, _ = rand.Read(newKey)
	if _, err := v.rootClient(t).KVv2("secret").Put(ctx, "varsel/subject-key", map[string]any{"key": base64.StdEncoding.EncodeToString(newKey)}); err != nil {
		t.Fatal(err)
	}
	oldRef := ""
	w.countInto(&oldRef, `SELECT subject_ref FROM flags WHERE id = '`+flag.ID+`'`)
	// The rotation records the new version as pending, gives replicas its
	// grace to learn of it, then re-keys. This replica learns of it when
	// told it is pending (what the follower's next tick does), and finds
	// the flag under the pending chain before the re-key and after.
	var rotOut strings.Builder
	rotErr := &logBuffer{}
	rotated := make(chan error, 1)
	go func() {
		rotated <- run(context.Background(), []string{"keys", "rotate-subject", "--keys", "vault", "--unsafe-grace", "--grace", "3s"},
			&rotOut, rotErr, func(k string) string {
				return map[string]string{"VARSEL_DATABASE_URL": w.db, "VAULT_ADDR": v.addr, "VAULT_TOKEN": v.token}[k]
			})
	}()
	rotErr.waitFor(t, "pending")
	if err := w.main.SubjectKeys.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if h := w.main.SubjectKeys.Keys().Hasher(); h.PendingVersion == "" {
		t.Fatalf("this replica did not learn of the pending key: %+v", h)
	}
	if r, _ := w.check(w.caseworker(), map[string]any{"subject": personA, "purpose": "meeting"}); r.Result != "precautions" {
		t.Fatalf("flag lost while the new key is pending: %+v", r)
	}
	select {
	case err := <-rotated:
		if out := rotOut.String(); err != nil || !strings.Contains(out, "re-keyed") {
			t.Fatalf("rotate: %v %s %s", err, out, rotErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("rotation did not end within 60 s")
	}
	newRef := ""
	w.countInto(&newRef, `SELECT subject_ref FROM flags WHERE id = '`+flag.ID+`'`)
	if newRef == oldRef || len(newRef) != 64 {
		t.Fatalf("flag not re-keyed: %s -> %s", oldRef, newRef)
	}
	if err := w.main.SubjectKeys.Reload(ctx); err != nil { // what its next tick does
		t.Fatal(err)
	}
	if r, _ := w.check(w.caseworker(), map[string]any{"subject": personA, "purpose": "meeting"}); r.Result != "precautions" {
		t.Fatalf("flag lost after rotation: %+v", r)
	}
	// New flags use the new chain and are found too; the rotation is audited.
	if _, resp := w.issue(w.liaison(), flagBody(personB)); resp.Status != 201 {
		t.Fatal(resp.Status)
	}
	if r, _ := w.check(w.caseworker(), map[string]any{"subject": personB, "purpose": "meeting"}); r.Result != "precautions" {
		t.Fatalf("new flag after rotation: %+v", r)
	}
	if n := w.count(`SELECT count(*) FROM audit_entries WHERE action = 'keys.rotate-subject'`); n != 1 {
		t.Fatalf("rotation audited %d times", n)
	}
	// A person's report still lists disclosures made before the rotation.
	var rep struct{ Disclosures []any }
	if _, err := w.as(w.police, "po", "privacy-officer", "").JSON(ctx, "POST", "/v1/audit/subject-report", map[string]any{"subject": personA}, &rep); err != nil || len(rep.Disclosures) < 5 {
		t.Fatalf("report after rotation: %v %d", err, len(rep.Disclosures))
	}
}

func TestVaultLeastPrivilege(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	// The varsel token can do exactly what the broker needs…
	src, err := keys.OpenVault(ctx, keys.VaultConfig{Address: v.addr, Token: v.token, Name: "varsel"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.SubjectKey(ctx, ""); err != nil {
		t.Fatalf("subject key with the varsel token: %v", err)
	}
	signer, _, err := src.CheckpointSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signer.Sign([]byte("hello")); err != nil {
		t.Fatalf("sign with the varsel token: %v", err)
	}
	// …and nothing else.
	c := v.rootClient(t)
	c.SetToken(v.token)
	if _, err := c.Logical().Write("secret/data/other", map[string]any{"data": map[string]any{"x": "y"}}); err == nil {
		t.Fatal("the varsel token can write other secrets")
	}
	if _, err := c.Logical().Read("sys/mounts"); err == nil {
		t.Fatal("the varsel token can list mounts")
	}
	if _, err := c.Logical().Write("transit/keys/varsel-checkpoint/rotate", nil); err == nil {
		t.Fatal("the varsel token can rotate the signing key")
	}
	// A token without the policy: the broker refuses to start, in one clear line.
	root := v.rootClient(t)
	weak, err := root.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binaryPath, "serve", "--keys", "vault", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "VARSEL_DATABASE_URL="+testURL, "VAULT_ADDR="+v.addr, "VAULT_TOKEN="+weak.Auth.ClientToken)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	lines := strings.Split(msg, "\n")
	last := lines[len(lines)-1]
	if err == nil || !strings.HasPrefix(last, "varsel: ") || !strings.Contains(last, "vault") || !strings.Contains(last, "403") {
		t.Fatalf("start with a weak token: %v, stderr %q", err, msg)
	}
	// Vault unreachable at start: one clear line too.
	cmd = exec.Command(binaryPath, "serve", "--keys", "vault", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "VARSEL_DATABASE_URL="+testURL, "VAULT_ADDR=http://127.0.0.1:1", "VAULT_TOKEN=x")
	stderr.Reset()
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "varsel: vault") {
		t.Fatalf("start without Vault: %v %q", err, stderr.String())
	}
}

func TestVaultAppRoleLogin(t *testing.T) {
	v := startVault(t)
	ctx := context.Background()
	root := v.rootClient(t)
	if err := root.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/approle/role/varsel", map[string]any{
		"token_policies": "varsel", "token_no_default_policy": true, "token_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().Read("auth/approle/role/varsel/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().Write("auth/approle/role/varsel/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := keys.OpenVault(ctx, keys.VaultConfig{Address: v.addr, Name: "varsel",
		RoleID: rid.Data["role_id"].(string), SecretID: sid.Data["secret_id"].(string)})
	if err != nil {
		t.Fatalf("approle login: %v", err)
	}
	if _, _, err := src.SubjectKey(ctx, ""); err != nil {
		t.Fatalf("subject key after approle login: %v", err)
	}
	if err := src.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if _, err := keys.OpenVault(ctx, keys.VaultConfig{Address: v.addr, Name: "varsel", RoleID: "nope", SecretID: "nope"}); err == nil ||
		!strings.Contains(err.Error(), "login") {
		t.Fatalf("bad approle credentials: %v", err)
	}
}
