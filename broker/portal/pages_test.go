package portal

import (
	"testing"
	"time"
)

// TestDayTime: a decision dated today is never sent as one in the future
// (the broker refuses those, so a flag decided this morning could not be
// issued before noon), and other days stand for their noon.
func TestDayTime(t *testing.T) {
	day := func(s string) time.Time {
		d, err := time.ParseInLocation("2006-01-02", s, oslo)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	at := func(s string) time.Time {
		d, err := time.ParseInLocation("2006-01-02 15:04", s, oslo)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	morning := at("2026-12-02 02:16")
	for _, c := range []struct {
		day  string
		now  time.Time
		want time.Time
	}{
		{"2026-12-02", morning, morning},                               // today, before noon: now
		{"2026-12-02", at("2026-12-02 15:00"), at("2026-12-02 12:00")}, // today, afternoon: noon
		{"2026-12-01", morning, at("2026-12-01 12:00")},                // yesterday: its noon
		{"2026-12-03", morning, at("2026-12-03 12:00")},                // tomorrow stays in the future
	} {
		if got := dayTime(day(c.day), c.now); !got.Equal(c.want) {
			t.Errorf("dayTime(%s) at %s = %s, want %s", c.day, c.now, got, c.want)
		}
	}
}
