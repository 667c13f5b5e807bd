package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// ConflictError is a witness's 409: the size it has cosigned for the log
// is not the old size sent. Resubmit with a proof from Size.
type ConflictError struct{ Size uint64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("the witness has cosigned the log at size %d (409)", e.Size)
}

// RefusedError is any other answer than 200 and 409: the witness's status
// and the sentence it gave. 403, 404, 422 and 400 mean it will not cosign
// this checkpoint (the log misbehaves, or is not configured there); 5xx
// that it failed.
type RefusedError struct {
	Status  int
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the witness refused the checkpoint (%d): %s", e.Status, e.Message)
}

// Client submits checkpoints to witnesses.
type Client struct {
	HTTP *http.Client // nil: a client with a 10 s timeout
}

var defaultHTTP = &http.Client{Timeout: 10 * time.Second}

// Submit sends a checkpoint to the witness at witnessURL (its submission
// prefix) with the consistency proof from oldSize, per C2SP tlog-witness,
// and returns its cosignature line(s). A 409 is a *ConflictError naming
// the witness's size; other refusals are a *RefusedError.
func Submit(ctx context.Context, witnessURL string, oldSize uint64, proof [][]byte, checkpoint []byte) ([]byte, error) {
	return (&Client{}).Submit(ctx, witnessURL, oldSize, proof, checkpoint)
}

// Submit is the package's Submit with c's HTTP client.
func (c *Client) Submit(ctx context.Context, witnessURL string, oldSize uint64, proof [][]byte, checkpoint []byte) ([]byte, error) {
	var body bytes.Buffer
	fmt.Fprintf(&body, "old %d\n", oldSize)
	for _, h := range proof {
		body.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	body.WriteString("\n")
	body.Write(checkpoint)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(witnessURL, "/")+"/add-checkpoint", &body)
	if err != nil {
		return nil, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("read the witness's answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := checkSignatureLines(b); err != nil {
			return nil, err
		}
		return b, nil
	case http.StatusConflict:
		size, err := parseSize(strings.TrimSuffix(string(b), "\n"))
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return nil, &RefusedError{Status: resp.StatusCode, Message: fmt.Sprintf("409 without a size: %q", firstLine(b))}
		}
		return nil, &ConflictError{Size: size}
	}
	return nil, &RefusedError{Status: resp.StatusCode, Message: firstLine(b)}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 300 {
		s = s[:300]
	}
	return strings.TrimSpace(s)
}

// checkSignatureLines checks that b is one or more note signature lines.
func checkSignatureLines(b []byte) error {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return errors.New("the witness's answer is not signature lines")
	}
	for _, l := range strings.Split(string(b[:len(b)-1]), "\n") {
		if !strings.HasPrefix(l, "— ") {
			return fmt.Errorf("the witness's answer has a line that is not a signature: %q", firstLine([]byte(l)))
		}
	}
	return nil
}

// Cosignature picks, from the lines a witness returned for checkpoint,
// the one by the witness's key v that verifies, as a signature line.
func Cosignature(checkpoint []byte, lines []byte, v note.Verifier) (string, error) {
	n, err := note.Open(append(append([]byte{}, checkpoint...), lines...), note.VerifierList(v))
	if err != nil {
		return "", fmt.Errorf("the witness's cosignature by %s does not verify: %w", v.Name(), err)
	}
	for _, s := range n.Sigs {
		if s.Name == v.Name() && s.Hash == v.KeyHash() {
			return fmt.Sprintf("— %s %s\n", s.Name, s.Base64), nil
		}
	}
	return "", fmt.Errorf("no cosignature by %s in the witness's answer", v.Name())
}
