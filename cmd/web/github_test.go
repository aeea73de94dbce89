package main

import (
	"net/url"
	"testing"

	"example.com/oauth-sessions/internal/auth/githubtest"
)

// GitHub beside the other providers (providers_test.go): its stand-in, its
// test account, and what only GitHub refuses.

const (
	ghClientID     = "gh-client"
	ghClientSecret = "gh-client-secret"
)

// octocat is GitHub's test account, with a verified primary address.
var octocat = githubtest.User{ID: 583231, Login: "octocat", Name: "The Octocat", AvatarURL: "https://avatars.example/u/583231",
	Emails: []githubtest.Email{{Email: "octocat@github.example", Primary: true, Verified: true}}}

// githubLogin fills in the stand-in's authorize form.
func githubLogin(login string) url.Values {
	return url.Values{"login": {login}, "action": {"allow"}}
}

// addGitHub starts GitHub's stand-in with octocat, for a test's providers.
func (ps *providers) addGitHub(t *testing.T) {
	t.Helper()
	ps.github = githubtest.Start(t, ghClientID, ghClientSecret, octocat)
	ps.signIns = append(ps.signIns, signIn{provider: "github", label: "GitHub", issuer: ps.github.URL,
		vars: map[string]string{"GITHUB_CLIENT_ID": ghClientID, "GITHUB_CLIENT_SECRET": ghClientSecret,
			"GITHUB_URL": ps.github.URL, "GITHUB_API_URL": ps.github.APIURL},
		fields: githubLogin("octocat"), id: "github|583231", email: "octocat@github.example", name: "The Octocat"})
}

// TestGitHubNeedsAVerifiedPrimaryAddress: an account without a verified
// primary address is refused, saying why.
func TestGitHubNeedsAVerifiedPrimaryAddress(t *testing.T) {
	ps := startProviders(t)
	ps.github.SetUser(githubtest.User{ID: 2, Login: "unverified", Emails: []githubtest.Email{{Email: "u@example.com", Primary: true}}})
	a := startApp(t, ps.env(t, t.TempDir()))
	b := newBrowser(t)
	b.refused(a, b.get(b.authorize(b.start(a, "github"), githubLogin("unverified"))), "no verified primary email address")
}
