package handlers

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"example.com/oauth-sessions/internal/apitokens"
	"example.com/oauth-sessions/internal/httpsession"
)

// sessionView is one session in GET /api/auth/sessions.
type sessionView struct {
	ID         string    `json:"id"`
	Current    bool      `json:"current"`
	Device     string    `json:"device"`
	CreatedAt  time.Time `json:"createdAt"`
	LastSeenAt time.Time `json:"lastSeenAt"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

// sessionsResponse is the JSON of GET /api/auth/sessions.
type sessionsResponse struct {
	Sessions []sessionView `json:"sessions"`
}

// revokedResponse is the JSON of POST /api/auth/sessions/revoke-others.
type revokedResponse struct {
	Revoked int `json:"revoked"`
}

// mySession is one of the signed-in user's sessions.
type mySession struct {
	sessionView
	key     string // the full store key
	network string
	// The provider's tokens kept in it, revoked when it is.
	provider  string
	tokens    apitokens.Tokens
	hasTokens bool
}

// mySessions returns the signed-in user's live sessions, this browser's
// first, then by last use.
func (s *server) mySessions(c echo.Context) ([]mySession, error) {
	current := httpsession.KeyOf(loginOf(c))
	list, err := s.sessions.Sessions(c.Request().Context(), httpsession.KindLogin, userOf(c).Owner())
	if err != nil {
		return nil, err
	}
	out := make([]mySession, 0, len(list))
	for _, x := range list {
		device, _ := httpsession.SummaryValue[string](x, httpsession.KeyDevice) // absent in old sessions: ""
		network, _ := httpsession.SummaryValue[string](x, httpsession.KeyNetwork)
		provider, tokens, hasTokens := keptTokens(x)
		out = append(out, mySession{key: x.Key, network: network, provider: provider, tokens: tokens, hasTokens: hasTokens, sessionView: sessionView{
			ID: httpsession.ShortID(x.Key), Current: x.Key == current, Device: device,
			CreatedAt: x.CreatedAt.UTC(), LastSeenAt: x.SeenAt.UTC(), ExpiresAt: x.ExpiresAt.UTC(),
		}})
	}
	slices.SortFunc(out, func(a, b mySession) int {
		if a.Current != b.Current {
			if a.Current {
				return -1
			}
			return 1
		}
		return b.LastSeenAt.Compare(a.LastSeenAt)
	})
	return out, nil
}

func (s *server) listSessions() echo.HandlerFunc {
	return func(c echo.Context) error {
		mine, err := s.mySessions(c)
		if err != nil {
			return err
		}
		views := make([]sessionView, 0, len(mine))
		for _, m := range mine {
			views = append(views, m.sessionView)
		}
		return c.JSON(http.StatusOK, sessionsResponse{Sessions: views})
	}
}

// revoke ends the user's session with the short id, and reports which it
// was (nil: none of theirs).
func (s *server) revoke(c echo.Context, id string) (*mySession, error) {
	mine, err := s.mySessions(c)
	if err != nil {
		return nil, err
	}
	for _, m := range mine {
		if m.ID != id {
			continue
		}
		if err := s.sessions.Revoke(c.Request().Context(), m.key); err != nil {
			return nil, err
		}
		s.revokeTokens(m.provider, m.tokens, m.hasTokens)
		if m.Current {
			sess := loginOf(c)
			sess.Options.MaxAge = -1
			_ = sess.Save(c.Request(), c.Response()) // already deleted: clears the cookie
		}
		s.Logger.Info("Session revoked", "session", id, "current", m.Current)
		return &m, nil
	}
	return nil, nil
}

// revokeOthers ends every session of the user but this browser's.
func (s *server) revokeOthers(c echo.Context) (int, error) {
	mine, err := s.mySessions(c)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range mine {
		if m.Current {
			continue
		}
		if err := s.sessions.Revoke(c.Request().Context(), m.key); err != nil {
			return n, err
		}
		s.revokeTokens(m.provider, m.tokens, m.hasTokens)
		n++
	}
	s.Logger.Info("Other sessions revoked", "count", n)
	return n, nil
}

// revokeSession is DELETE /api/auth/sessions/:id.
func (s *server) revokeSession() echo.HandlerFunc {
	return func(c echo.Context) error {
		m, err := s.revoke(c, c.Param("id"))
		if err != nil {
			return err
		}
		if m == nil {
			return echo.NewHTTPError(http.StatusNotFound, "no such session")
		}
		return c.JSON(http.StatusOK, okBody{OK: true})
	}
}

// revokeOtherSessions is POST /api/auth/sessions/revoke-others.
func (s *server) revokeOtherSessions() echo.HandlerFunc {
	return func(c echo.Context) error {
		n, err := s.revokeOthers(c)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, revokedResponse{Revoked: n})
	}
}

// revokeForm is POST /sessions/revoke, the page's form: back to the page,
// which says what happened.
func (s *server) revokeForm() echo.HandlerFunc {
	return func(c echo.Context) error {
		m, err := s.revoke(c, c.FormValue("id"))
		if err != nil {
			return err
		}
		switch {
		case m == nil:
			s.setNotice(c, "That session had already ended.")
		case m.Current:
			s.setNotice(c, "You have signed out.")
			return c.Redirect(http.StatusSeeOther, "/")
		default:
			s.setNotice(c, "Signed out "+deviceName(m.Device)+".")
		}
		return c.Redirect(http.StatusSeeOther, "/sessions")
	}
}

// revokeOthersForm is POST /sessions/revoke-others, the page's form.
func (s *server) revokeOthersForm() echo.HandlerFunc {
	return func(c echo.Context) error {
		n, err := s.revokeOthers(c)
		if err != nil {
			return err
		}
		switch n {
		case 0:
			s.setNotice(c, "No other session was signed in.")
		case 1:
			s.setNotice(c, "Signed out 1 other session.")
		default:
			s.setNotice(c, fmt.Sprintf("Signed out %d other sessions.", n))
		}
		return c.Redirect(http.StatusSeeOther, "/sessions")
	}
}

func deviceName(d string) string {
	if d == "" {
		return "an unknown device"
	}
	return d
}

func (s *server) sessionsPage() echo.HandlerFunc {
	return func(c echo.Context) error {
		mine, err := s.mySessions(c)
		if err != nil {
			return err
		}
		data := sessionsPage{page: s.withNotice(c, "Your sessions"), User: userOf(c), Store: s.StoreName}
		for _, m := range mine {
			data.Sessions = append(data.Sessions, sessionRow{ID: m.ID, Current: m.Current, Device: deviceName(m.Device), Network: m.network,
				Created: s.when(m.CreatedAt), LastSeen: s.when(m.LastSeenAt), Expires: s.when(m.ExpiresAt)})
			if !m.Current {
				data.Others++
			}
		}
		return s.render(c, http.StatusOK, "sessions.html", data)
	}
}

// networkOf is the coarse network of a client address, which tells a
// user's sessions apart without keeping where exactly they were: the /24
// of an IPv4 address, the /48 of an IPv6 one.
func networkOf(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return ""
	}
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}
