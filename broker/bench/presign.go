package bench

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"time"

	"varsel/broker/auth"
)

// presign builds n POST /v1/checks requests for host, each with its own
// freshly signed token (a fresh jti, the longest lifetime the broker
// accepts), on every core at once. seed picks the people and employees.
func presign(ctx context.Context, w *world, host string, n int, flaggedShare float64, seed uint64) ([][]byte, error) {
	for _, e := range w.caseworker {
		e.signer.Lifetime = auth.MaxLifetime
	}
	reqs := make([][]byte, n)
	workers := runtime.NumCPU()
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for k := range workers {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(seed, uint64(k)))
			for i := k; i < n; i += workers {
				if i%1024 == k && ctx.Err() != nil {
					errs[k] = ctx.Err()
					return
				}
				e := w.caseworker[r.IntN(len(w.caseworker))]
				subject := pick(r, w.unflagged)
				if r.Float64() < flaggedShare {
					subject = pick(r, w.flagged)
				}
				body := []byte(`{"subject":"` + subject + `","purpose":"meeting"}`)
				tok, err := e.signer.Token(e.emp, "POST", "/v1/checks", body)
				if err != nil {
					errs[k] = fmt.Errorf("sign: %w", err)
					return
				}
				reqs[i] = rawRequest(host, "/v1/checks", tok, body)
			}
		}(k)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return reqs, nil
}

// tokenBudget is how long pre-signed tokens may wait before they are all
// sent: the broker refuses them from MaxLifetime (plus its clock skew)
// after signing; this keeps a margin.
const tokenBudget = auth.MaxLifetime - 20*time.Second
