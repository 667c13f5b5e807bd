package witness

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// VerifyCosignatures counts the witnesses among witnessKeys (cosignature/v1
// vkeys) whose cosignature on checkpointNote verifies. The log's own
// signature is not checked here (audit.OpenCheckpoint does that). With
// required > 0, fewer than required valid cosignatures is an error naming
// each witness that failed: no cosignature, or one that does not verify.
// A witness counts once, however often and in whichever key form its key
// is listed: witnesses are told apart by name.
func VerifyCosignatures(checkpointNote string, witnessKeys []string, required int) (int, error) {
	if required > len(witnessKeys) {
		return 0, fmt.Errorf("%d witness cosignatures required but only %d witness keys given", required, len(witnessKeys))
	}
	seen := map[string]bool{}
	ok := 0
	var failed []string
	for _, k := range witnessKeys {
		v, err := NewVerifier(k)
		if err != nil {
			return 0, err
		}
		if seen[v.Name()] {
			continue
		}
		seen[v.Name()] = true
		_, err = note.Open([]byte(checkpointNote), note.VerifierList(v))
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &unverified):
			failed = append(failed, v.Name()+": no cosignature")
		case errors.As(err, &invalid):
			failed = append(failed, v.Name()+": cosignature does not verify")
		default:
			return 0, fmt.Errorf("the checkpoint is not a signed note: %w", err)
		}
	}
	if ok < required {
		return ok, fmt.Errorf("%d of %d required witness cosignatures on the checkpoint (%s)", ok, required, strings.Join(failed, "; "))
	}
	return ok, nil
}
