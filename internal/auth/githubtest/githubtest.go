// Package githubtest is a stand-in for GitHub's OAuth app endpoints and the
// two REST API routes sign-in reads, for tests: an authorize page with a
// form, the token endpoint as GitHub answers it (form-encoded unless asked
// for JSON, and a bad code as 200 with an error field), GET /user and
// GET /user/emails. It serves the API below /api/v3, as GitHub Enterprise
// Server does, so an app points GITHUB_URL at URL and GITHUB_API_URL at
// APIURL.
package githubtest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// User is an account on the stand-in.
type User struct {
	ID        int64
	Login     string
	Name      string // "" as for accounts without a display name
	AvatarURL string
	Emails    []Email
}

// Email is one address of a User, as GET /user/emails lists it.
type Email struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

// Token endpoint encodings (SetEncoding).
const (
	ByAccept = ""     // JSON when the request accepts it, else form-encoded (GitHub)
	JSON     = "json" // always JSON
	Form     = "form" // always form-encoded
)

// Server is a running stand-in.
type Server struct {
	URL    string // GITHUB_URL
	APIURL string // GITHUB_API_URL

	clientID, clientSecret string
	srv                    *httptest.Server

	mu       sync.Mutex
	users    map[string]User // by login
	codes    map[string]grant
	tokens   map[string]string // access token → login
	encoding string
	requests []string // "METHOD path" of every request, in order
}

type grant struct {
	login, redirectURI, challenge string
	expires                       time.Time
}

// Start runs a stand-in for the OAuth app clientID/clientSecret with these
// users until the test ends.
func Start(t testing.TB, clientID, clientSecret string, users ...User) *Server {
	t.Helper()
	s := &Server{clientID: clientID, clientSecret: clientSecret, users: map[string]User{},
		codes: map[string]grant{}, tokens: map[string]string{}}
	for _, u := range users {
		s.users[u.Login] = u
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", s.authorizePage)
	mux.HandleFunc("POST /login/oauth/authorize", s.authorize)
	mux.HandleFunc("POST /login/oauth/access_token", s.token)
	mux.HandleFunc("GET /api/v3/user", s.user)
	mux.HandleFunc("GET /api/v3/user/emails", s.emails)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	s.URL, s.APIURL = s.srv.URL, s.srv.URL+"/api/v3"
	return s
}

// SetUser adds or replaces an account.
func (s *Server) SetUser(u User) {
	s.mu.Lock()
	s.users[u.Login] = u
	s.mu.Unlock()
}

// SetEncoding chooses how the token endpoint answers: ByAccept, JSON or
// Form.
func (s *Server) SetEncoding(enc string) {
	s.mu.Lock()
	s.encoding = enc
	s.mu.Unlock()
}

// Requests returns "METHOD path" of the requests served so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

var page = template.Must(template.New("authorize").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize application</title></head>
<body><main>
<h1>Authorize application</h1>
<form method="post" action="/login/oauth/authorize">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{index $v 0}}">
{{end}}<label for="login">Signed in to GitHub as</label>
<input id="login" name="login" value="{{.Login}}">
<button type="submit" name="action" value="allow" id="authorize">Authorize</button>
<button type="submit" name="action" value="deny" id="cancel">Cancel</button>
</form>
</main></body></html>
`))

// check validates what every authorize request must carry.
func (s *Server) check(q url.Values) string {
	switch {
	case q.Get("client_id") != s.clientID:
		return "unknown client_id"
	case q.Get("redirect_uri") == "":
		return "redirect_uri is required"
	case q.Get("state") == "":
		return "this test stand-in insists on a state"
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		return "this test stand-in insists on PKCE with S256"
	}
	return ""
}

func (s *Server) authorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if msg := s.check(q); msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	first := ""
	for login := range s.users {
		if first == "" || login < first {
			first = login
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, map[string]any{"Params": q, "Login": first})
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	q := r.PostForm
	if msg := s.check(q); msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	back, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	params := back.Query()
	params.Set("state", q.Get("state"))
	if q.Get("action") == "deny" {
		params.Set("error", "access_denied")
		params.Set("error_description", "The user has denied your application access.")
	} else {
		s.mu.Lock()
		_, known := s.users[q.Get("login")]
		code := random()
		if known {
			s.codes[code] = grant{login: q.Get("login"), redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge"), expires: time.Now().Add(10 * time.Minute)}
		}
		s.mu.Unlock()
		if !known {
			http.Error(w, "no such user", http.StatusBadRequest)
			return
		}
		params.Set("code", code)
	}
	back.RawQuery = params.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// token answers as GitHub does: 200 with an error field for a bad code or
// bad credentials, in the encoding the request accepts.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	reply := func(v url.Values) {
		asJSON := s.encoding == JSON || (s.encoding == ByAccept && strings.Contains(r.Header.Get("Accept"), "application/json"))
		if asJSON {
			m := map[string]string{}
			for k := range v {
				m[k] = v.Get(k)
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_ = json.NewEncoder(w).Encode(m)
			return
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		_, _ = w.Write([]byte(v.Encode()))
	}
	if id != s.clientID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.clientSecret)) != 1 {
		reply(url.Values{"error": {"incorrect_client_credentials"}, "error_description": {"The client_id and/or client_secret passed are incorrect."}})
		return
	}
	code := r.PostForm.Get("code")
	g, ok := s.codes[code]
	delete(s.codes, code) // single use
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case !ok || time.Now().After(g.expires):
		reply(url.Values{"error": {"bad_verification_code"}, "error_description": {"The code passed is incorrect or expired."}})
		return
	case r.PostForm.Get("redirect_uri") != "" && r.PostForm.Get("redirect_uri") != g.redirectURI:
		reply(url.Values{"error": {"redirect_uri_mismatch"}, "error_description": {"The redirect_uri MUST match the registered callback URL for this application."}})
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		reply(url.Values{"error": {"bad_verification_code"}, "error_description": {"The code_verifier does not match the code_challenge."}})
		return
	}
	tok := "gho_" + random()
	s.tokens[tok] = g.login
	reply(url.Values{"access_token": {tok}, "scope": {"read:user,user:email"}, "token_type": {"bearer"}})
}

// account returns the user the request's token belongs to.
func (s *Server) account(w http.ResponseWriter, r *http.Request) (User, bool) {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(auth, "token ")
	}
	s.mu.Lock()
	login, known := s.tokens[tok]
	u := s.users[login]
	s.mu.Unlock()
	if !ok || !known {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`))
		return User{}, false
	}
	return u, true
}

func (s *Server) user(w http.ResponseWriter, r *http.Request) {
	u, ok := s.account(w, r)
	if !ok {
		return
	}
	var name any
	if u.Name != "" {
		name = u.Name
	}
	writeJSON(w, map[string]any{"id": u.ID, "login": u.Login, "name": name, "avatar_url": u.AvatarURL, "type": "User"})
}

func (s *Server) emails(w http.ResponseWriter, r *http.Request) {
	u, ok := s.account(w, r)
	if !ok {
		return
	}
	out := make([]map[string]any, 0, len(u.Emails))
	for _, e := range u.Emails {
		out = append(out, map[string]any{"email": e.Email, "primary": e.Primary, "verified": e.Verified, "visibility": "private"})
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func random() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
