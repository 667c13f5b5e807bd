// Package e2e holds the agency portal's acceptance tests: headless Chromium
// (Debian's chromium, found or installed by deploy/browser.sh, or
// VARSEL_CHROMIUM) driven with chromedp against the real broker, PostgreSQL
// and the dev OpenID provider (deploy/oidc), all started in-process or on
// loopback by the test. Staff of the demo agencies sign in, warn offices,
// follow the live inbox, check people, are refused and sign out, partly by
// keyboard alone; privacy officers read the dashboard (trends against the
// broker's stats, no other agency's entries, the integrity banner before
// and after a checkpoint row is rewritten); axe-core (deploy/browser) checks every page for serious or
// critical accessibility violations; and the logs of the whole run are
// searched for national ids, passwords, tokens and keys.
//
// VARSEL_SCREENSHOTS=1 writes screenshots of the main pages to
// docs/screenshots/ (otherwise to a temporary directory). Without a browser
// the test fails, except with -short, where it skips.
//
// The package has tests only.
package e2e
