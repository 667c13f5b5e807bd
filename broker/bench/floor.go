package bench

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// Floor is the cost floor of a check measured in the same run: the CPU of
// one bare signature verification on one core, with nothing around it
// (crypto/ecdsa on P-256 over a SHA-256 digest, crypto/ed25519), so a
// report can say how much of the broker's CPU per check is the signature
// and how much everything else.
type Floor struct {
	P256VerifyUs    float64 `json:"p256_verify_cpu_us"`
	Ed25519VerifyUs float64 `json:"ed25519_verify_cpu_us"`
	Rounds          int     `json:"rounds"`
}

// measureFloor times verifications by the CPU time of the thread that runs
// them (so that time spent waiting for a core on a busy machine is not
// counted) and keeps the median of several rounds.
func measureFloor(round time.Duration, rounds int) Floor {
	msg := []byte(`{"iss":"nav-state-1","sub":"cw-1","aud":"varsel","jti":"0123456789abcdef0123"}`)
	digest := sha256.Sum256(msg)
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	r, s, err := ecdsa.Sign(rand.Reader, pk, digest[:])
	if err != nil {
		panic(err)
	}
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	esig := ed25519.Sign(ek, msg)
	epub := ek.Public().(ed25519.PublicKey)
	return Floor{
		P256VerifyUs: perOp(round, rounds, func() bool {
			d := sha256.Sum256(msg) // the digest is part of the verification
			return ecdsa.Verify(&pk.PublicKey, d[:], r, s)
		}),
		Ed25519VerifyUs: perOp(round, rounds, func() bool { return ed25519.Verify(epub, msg, esig) }),
		Rounds:          rounds,
	}
}

// perOp returns the median over rounds of the thread CPU microseconds per
// call of f, each round running for about d of wall time.
func perOp(d time.Duration, rounds int, f func() bool) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range 50 { // warm
		if !f() {
			panic("verification failed")
		}
	}
	var out []float64
	for range rounds {
		n := 0
		c0 := threadCPU()
		for end := time.Now().Add(d); time.Now().Before(end); {
			for range 20 {
				if !f() {
					panic("verification failed")
				}
			}
			n += 20
		}
		out = append(out, (threadCPU()-c0)*1e6/float64(n))
	}
	slices.Sort(out)
	return out[len(out)/2]
}

// threadCPU is the calling OS thread's CPU seconds (RUSAGE_THREAD).
func threadCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}
