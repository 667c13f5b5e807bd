package main

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"varsel/broker"
)

// ksStatistic is the two-sample Kolmogorov–Smirnov statistic: the largest
// distance between the two samples' empirical distribution functions.
func ksStatistic(a, b []time.Duration) float64 {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	var i, j int
	d := 0.0
	for i < len(a) && j < len(b) {
		x := min(a[i], b[j])
		for i < len(a) && a[i] <= x {
			i++
		}
		for j < len(b) && b[j] <= x {
			j++
		}
		d = math.Max(d, math.Abs(float64(i)/float64(len(a))-float64(j)/float64(len(b))))
	}
	return d
}

func median(s []time.Duration) time.Duration {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestHiddenFlagsCannotBeTimed drives interleaved checks of a person
// without flags and of a person with a flag the caller may not see, as a
// caller measuring response times would, and finds no difference: the two
// samples' Kolmogorov–Smirnov statistic stays under the critical value at
// α = 0.001 (1.949·√(2/n)), and the medians within 2 ms. The floor is set
// above what a check costs under the race detector, as production's 10 ms
// is above what it costs there. Without the floor (tried: --check-floor 0)
// the hidden person's median is about 3 ms slower here and the test fails.
func TestHiddenFlagsCannotBeTimed(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.CheckFloor = 60 * time.Millisecond; c.AnomalyRepeats = 1000 })
	if _, resp := w.issue(w.liaison(), flagBody(personA)); resp.Status != 201 {
		t.Fatal(resp.Status)
	}
	hw := w.as(w.health, "lege-timing", "health-worker", "")
	ctx := context.Background()
	const pairs, workers = 50, 2
	var mu sync.Mutex
	var clear, hidden []time.Duration
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range pairs {
				order := []string{personB, personA}
				if i%2 == 1 {
					order = []string{personA, personB}
				}
				for _, person := range order {
					var r struct{ Result string }
					start := time.Now()
					resp, err := hw.JSON(ctx, "POST", "/v1/checks", map[string]any{"subject": person, "purpose": "meeting"}, &r)
					d := time.Since(start)
					if err != nil || r.Result != "clear" {
						t.Errorf("check: %v %s", err, describe(resp, err))
						return
					}
					mu.Lock()
					if person == personA {
						hidden = append(hidden, d)
					} else {
						clear = append(clear, d)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	n := len(clear)
	crit := 1.949 * math.Sqrt(2/float64(n))
	ks := ksStatistic(clear, hidden)
	dm := median(hidden) - median(clear)
	t.Logf("n=%d each: median clear %v, hidden %v; KS D=%.3f (critical %.3f)", n, median(clear), median(hidden), ks, crit)
	if ks >= crit || dm.Abs() > 2*time.Millisecond {
		t.Fatalf("hidden flags can be told apart by timing: KS D=%.3f (critical %.3f), median difference %v", ks, crit, dm)
	}
}

// TestRepeatedChecksOfOnePerson: checking the same person more often than
// --anomaly-repeats within an hour raises one anomaly review.
func TestRepeatedChecksOfOnePerson(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.AnomalyRepeats = 3; c.OfficeHours = "" })
	cw := w.as(w.navState, "probe-1", "caseworker", "nav-grorud")
	for range 4 {
		if _, resp := w.check(cw, map[string]any{"subject": personC, "purpose": "meeting"}); resp.Status != 200 {
			t.Fatal(resp.Status)
		}
	}
	// Another employee, and another person, below the limit: no signal.
	for range 3 {
		w.check(w.caseworker(), map[string]any{"subject": personC, "purpose": "meeting"})
		w.check(cw, map[string]any{"subject": personD, "purpose": "meeting"})
	}
	ctx := context.Background()
	if err := w.main.Sweeper.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	po := w.as(w.navState, "po-nav", "privacy-officer", "")
	var l struct{ Reviews []broker.Review }
	if _, err := po.JSON(ctx, "GET", "/v1/audit/reviews?kind=anomaly", nil, &l); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range l.Reviews {
		got = append(got, r.Actor+":"+r.Reason)
	}
	if !slices.Equal(got, []string{"probe-1:repeated_subject"}) {
		t.Fatalf("anomaly reviews %v, want one repeated_subject for probe-1", got)
	}
	// More checks in the same hour raise no second review.
	w.check(cw, map[string]any{"subject": personC, "purpose": "meeting"})
	if err := w.main.Sweeper.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := w.count(`SELECT count(*) FROM reviews WHERE reason = 'repeated_subject'`); n != 1 {
		t.Fatalf("%d repeated_subject reviews", n)
	}
}
