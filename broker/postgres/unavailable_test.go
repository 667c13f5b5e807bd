package postgres_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"testing"
	"time"

	"varsel/audit"
	"varsel/broker"
	"varsel/broker/postgres"
)

// TestAuditedChangeWithoutDatabase: a change with its audit entry that
// cannot reach a writable database (no server, as during a failover, or a
// server that accepts no writes, as a standby) is 503 audit_unavailable,
// never a 500.
func TestAuditedChangeWithoutDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "postgres://postgres@" + ln.Addr().String() + "/varsel?sslmode=disable&connect_timeout=2"
	ln.Close() // nobody listens there now
	readOnly, _ := url.Parse(testURL)
	q := readOnly.Query()
	q.Set("options", "-c default_transaction_read_only=on")
	readOnly.RawQuery = q.Encode()

	for name, u := range map[string]string{"no server": gone, "read-only server": readOnly.String()} {
		db, err := postgres.Open(ctx, u, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		e := &audit.Entry{TS: audit.FormatTime(time.Now()), ActorAgency: "agency-x", Actor: "sec-1", Role: "security-coordinator",
			Office: "nav-a", Action: "warning.ack", Decision: audit.Allow, PolicyVersion: "test", RequestJTI: "jti-unavailable-0123456789"}
		_, err = db.AckWarning(ctx, "w-none", "nav-a", "sec-1", e)
		var be *broker.Error
		if !errors.As(err, &be) || be.Kind != broker.EUNAVAILABLE || (name == "no server" && be.Code != broker.CodeAuditUnavailable) {
			t.Errorf("%s: ack: %v, want 503 audit_unavailable", name, err)
		}
		if _, err := db.WarningFlag(ctx, "w-none"); name == "no server" && (!errors.As(err, &be) || be.Kind != broker.EUNAVAILABLE) {
			t.Errorf("%s: read: %v, want unavailable", name, err)
		}
		db.Close()
	}
}
