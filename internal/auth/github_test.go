package auth_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/auth/githubtest"
)

func startGitHub(t *testing.T, users ...githubtest.User) (*githubtest.Server, *auth.GitHub) {
	gh := githubtest.Start(t, "gh-client", "gh-secret", users...)
	return gh, auth.NewGitHub(auth.GitHubConfig{ClientID: "gh-client", ClientSecret: "gh-secret", RedirectURL: callback, URL: gh.URL, APIURL: gh.APIURL})
}

func TestGitHubSignIn(t *testing.T) {
	octo := githubtest.User{ID: 583231, Login: "octocat", Name: "The Octocat", AvatarURL: "https://avatars.example/u/583231",
		Emails: []githubtest.Email{{Email: "old@example.com", Verified: true}, {Email: "octo@example.com", Primary: true, Verified: true}}}
	noName := githubtest.User{ID: 7, Login: "nameless", Emails: []githubtest.Email{{Email: "n@example.com", Primary: true, Verified: true}}}
	gh, p := startGitHub(t, octo, noName)
	for _, enc := range []string{githubtest.ByAccept, githubtest.Form, githubtest.JSON} {
		gh.SetEncoding(enc)
		res, err := login(t, p, url.Values{"login": {"octocat"}, "action": {"allow"}})
		want := auth.Identity{ID: "github|583231", Email: "octo@example.com", Name: "The Octocat", Picture: octo.AvatarURL, Provider: "github"}
		if err != nil || res.Identity != want || res.Subject != "583231" || res.IDToken != "" {
			t.Fatalf("token endpoint answering %q: %+v %v, want %+v", enc, res, err, want)
		}
	}
	res, err := login(t, p, url.Values{"login": {"nameless"}, "action": {"allow"}})
	if err != nil || res.Identity.Name != "nameless" || res.Identity.ID != "github|7" {
		t.Fatalf("an account without a name: %+v %v, want the login as the name", res.Identity, err)
	}
}

// TestGitHubBadCodes: GitHub reports a bad code as 200 with an error field,
// form-encoded or as JSON; both are refusals, never a sign-in.
func TestGitHubBadCodes(t *testing.T) {
	_, p := startGitHub(t, githubtest.User{ID: 1, Login: "a", Emails: []githubtest.Email{{Email: "a@example.com", Primary: true, Verified: true}}})
	for _, enc := range []string{githubtest.Form, githubtest.JSON} {
		t.Run(enc, func(t *testing.T) {
			f, _, err := p.Start(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Finish(context.Background(), f, "not-a-code")
			if !errors.Is(err, auth.ErrRejected) || !strings.Contains(err.Error(), "bad_verification_code") {
				t.Fatalf("a bad code: %v, want a rejection naming bad_verification_code", err)
			}
		})
	}
	// A code redeemed with another verifier (an intercepted code) fails too.
	f, authURL, _ := p.Start(context.Background(), "")
	back := callbackOf(t, authURL, url.Values{"login": {"a"}, "action": {"allow"}})
	f.Verifier = "another-verifier-0123456789abcdefghijklmnopqrstuvw"
	if _, err := p.Finish(context.Background(), f, back.Query().Get("code")); !errors.Is(err, auth.ErrRejected) {
		t.Fatalf("a code with the wrong PKCE verifier: %v, want a rejection", err)
	}
}

// TestGitHubNeedsAVerifiedPrimaryEmail: only the primary address, and only
// when GitHub has verified it.
func TestGitHubNeedsAVerifiedPrimaryEmail(t *testing.T) {
	for name, emails := range map[string][]githubtest.Email{
		"primary unverified":        {{Email: "p@example.com", Primary: true}, {Email: "v@example.com", Verified: true}},
		"verified but not primary":  {{Email: "v@example.com", Verified: true}},
		"no addresses":              nil,
		"unverified primary only":   {{Email: "p@example.com", Primary: true}},
		"verified secondary listed": {{Email: "v2@example.com", Verified: true}, {Email: "p@example.com", Primary: true}},
	} {
		t.Run(name, func(t *testing.T) {
			_, p := startGitHub(t, githubtest.User{ID: 9, Login: "u", Emails: emails})
			res, err := login(t, p, url.Values{"login": {"u"}, "action": {"allow"}})
			if !errors.Is(err, auth.ErrNoVerifiedEmail) {
				t.Fatalf("%s: %+v %v, want ErrNoVerifiedEmail", name, res, err)
			}
		})
	}
}
