package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	mrand "math/rand/v2"
	"testing"
)

// derSignature must give the DER that encoding/asn1 gives for the two
// integers, for every shape of r and s: leading zero bytes, a high bit, zero.
func TestDERSignature(t *testing.T) {
	r := mrand.New(mrand.NewPCG(3, 4))
	var cases [][]byte
	for range 5000 {
		rs := make([]byte, 64)
		for i := range rs {
			rs[i] = byte(r.Uint32())
		}
		// Leading zero bytes and high bits in either half, often.
		for _, half := range []int{0, 32} {
			switch r.IntN(4) {
			case 0:
				for i := range r.IntN(33) {
					rs[half+i] = 0
				}
			case 1:
				rs[half] |= 0x80
			case 2:
				rs[half] = 0
				rs[half+1] |= 0x80
			}
		}
		cases = append(cases, rs)
	}
	cases = append(cases, make([]byte, 64), bytes.Repeat([]byte{0xff}, 64))
	for _, rs := range cases {
		want, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:32]), new(big.Int).SetBytes(rs[32:])})
		if err != nil {
			t.Fatal(err)
		}
		var buf [derSigMax]byte
		if got := derSignature(buf[:0], rs); !bytes.Equal(got, want) {
			t.Fatalf("derSignature(%x) = %x, want %x", rs, got, want)
		}
	}
}

// A signature verifies through derSignature exactly when ecdsa.Verify
// accepts it: genuine ones, and each with one bit flipped.
func TestVerifySignatureES256(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		msg := []byte{byte(i), 'x'}
		d := sha256.Sum256(msg)
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		rs := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
		for _, flip := range []int{-1, i, 32 + i, 63} {
			sig := bytes.Clone(rs)
			if flip >= 0 {
				sig[flip] ^= 1 << (i % 8)
			}
			want := ecdsa.Verify(&k.PublicKey, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
			var der [derSigMax]byte
			if got := ecdsa.VerifyASN1(&k.PublicKey, d[:], derSignature(der[:0], sig)); got != want || (flip < 0) != got {
				t.Fatalf("flip %d: verified %v, ecdsa.Verify %v", flip, got, want)
			}
		}
	}
}
