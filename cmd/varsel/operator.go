package main

import (
	"fmt"
	"os/user"
	"unicode"
	"unicode/utf8"
)

// maxOperator bounds an operator's name, in characters.
const maxOperator = 64

// currentUser is the OS user's login name; tests replace it.
var currentUser = func() (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", err
	}
	return u.Username, nil
}

// operatorName is who runs an operator command, for its audit entry: the
// --operator flag (or VARSEL_OPERATOR) when given, else the OS user, else
// $USER. Never empty: when none is known the command is refused.
func operatorName(flagValue string, getenv env) (string, error) {
	name, from := flagValue, "--operator"
	if name == "" {
		if u, err := currentUser(); err == nil && u != "" {
			name, from = u, "the OS user name"
		} else if u := getenv("USER"); u != "" {
			name, from = u, "$USER"
		} else {
			return "", fmt.Errorf("cannot tell who you are for the audit log: pass --operator NAME")
		}
	}
	if err := validOperator(name); err != nil {
		return "", fmt.Errorf("%s %q: %v (pass --operator NAME)", from, name, err)
	}
	return name, nil
}

// validOperator accepts 1 to 64 printable characters with no spaces.
func validOperator(s string) error {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxOperator {
		return fmt.Errorf("an operator name is 1 to %d characters of valid UTF-8", maxOperator)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("an operator name has no spaces or control characters")
		}
	}
	return nil
}
