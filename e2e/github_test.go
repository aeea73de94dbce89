package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"example.com/oauth-sessions/internal/auth/githubtest"
)

// TestBrowserGitHubBesideGoogle: with Google (the development provider at
// GOOGLE_ISSUER_URL) and GitHub (its stand-in) configured, the home page
// shows both buttons, and GitHub's signs in through GitHub's authorize
// page; the session survives a restart.
func TestBrowserGitHubBesideGoogle(t *testing.T) {
	issuer := startProvider(t)
	gh := githubtest.Start(t, "gh-browser", "gh-browser-secret", githubtest.User{ID: 583231, Login: "octocat", Name: "The Octocat",
		Emails: []githubtest.Email{{Email: "octocat@github.example", Primary: true, Verified: true}}})
	app, base := startApp(t, issuer, "GITHUB_CLIENT_ID=gh-browser", "GITHUB_CLIENT_SECRET=gh-browser-secret",
		"GITHUB_URL="+gh.URL, "GITHUB_API_URL="+gh.APIURL)
	ctx := newBrowser(t)
	github := chromedp.CSS(`a[data-provider="github"]`)
	do(t, ctx, app, chromedp.Navigate(base+"/"), chromedp.WaitVisible(github))
	labels, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll(".sign-ins a")].map(a => a.textContent.trim())`))
	if err != nil || strings.Join(labels, "|") != "Sign in with Google|Sign in with GitHub" {
		t.Fatalf("sign-in buttons %q (%v), want Google's and GitHub's", labels, err)
	}
	do(t, ctx, app,
		chromedp.Click(github),
		chromedp.WaitVisible(chromedp.ID("authorize")),
		chromedp.Click(chromedp.ID("authorize")),
		chromedp.WaitVisible(chromedp.ID("user-name")),
	)
	if name, via := text(t, ctx, "user-name"), text(t, ctx, "provider"); name != "The Octocat" || via != "GitHub" {
		t.Fatalf("signed in as %q via %q, want The Octocat via GitHub", name, via)
	}
	restart(t, app)
	do(t, ctx, app, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("user-name")))
	if got := text(t, ctx, "user-email"); got != "octocat@github.example" {
		t.Fatalf("after restart: %q", got)
	}
	// GitHub has no end_session_endpoint: signing out stays here.
	do(t, ctx, app, chromedp.Click(chromedp.ID("sign-out")), chromedp.WaitVisible(chromedp.ID("signed-out")))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != base+"/" {
		t.Fatalf("after signing out the browser is at %s, want %s/", loc, base)
	}
}
