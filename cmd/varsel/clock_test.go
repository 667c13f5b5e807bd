package main

import (
	"strings"
	"testing"
	"time"
)

// TestClockOffsetIsForTestsOnly: --clock-offset (the fault harness's skewed
// replica) needs --test-subjects, and moves both the decision clock and
// the clock tokens are checked against.
func TestClockOffsetIsForTestsOnly(t *testing.T) {
	c := DefaultConfig()
	c.DatabaseURL = "postgres://localhost/x"
	c.ClockOffset = 30 * time.Second
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "--test-subjects") {
		t.Fatalf("offset without --test-subjects: %v", err)
	}
	c.TestSubjects = true
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	ac := c.app()
	if ac.Now == nil || ac.TokenNow == nil {
		t.Fatal("offset not applied to both clocks")
	}
	if d := ac.Now().Sub(time.Now()); d < 29*time.Second || d > 31*time.Second {
		t.Fatalf("decision clock off by %v", d)
	}
	if c.ClockOffset = 0; c.app().Now != nil || c.app().TokenNow != nil {
		t.Fatal("no offset must leave the clocks to the app")
	}
}
