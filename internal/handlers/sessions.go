package handlers

import (
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"example.com/oauth-sessions/internal/httpsession"
)

// sessionView is one session in GET /api/auth/sessions and on the page.
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

// mySessions returns the signed-in user's live sessions, newest use first,
// and the store key of the current one.
func (s *server) mySessions(c echo.Context) ([]sessionView, []httpsession.Summary, string, error) {
	current := httpsession.KeyOf(loginOf(c))
	list, err := s.sessions.Sessions(c.Request().Context(), httpsession.KindLogin, userOf(c).Owner())
	if err != nil {
		return nil, nil, "", err
	}
	views := make([]sessionView, 0, len(list))
	for _, x := range list {
		device, _ := httpsession.SummaryValue[string](x, httpsession.KeyDevice) // absent in old sessions: ""
		views = append(views, sessionView{
			ID: httpsession.ShortID(x.Key), Current: x.Key == current, Device: device,
			CreatedAt: x.CreatedAt.UTC(), LastSeenAt: x.SeenAt.UTC(), ExpiresAt: x.ExpiresAt.UTC(),
		})
	}
	slices.SortFunc(views, func(a, b sessionView) int {
		if a.Current != b.Current { // the current one first
			if a.Current {
				return -1
			}
			return 1
		}
		return b.LastSeenAt.Compare(a.LastSeenAt)
	})
	return views, list, current, nil
}

func (s *server) listSessions() echo.HandlerFunc {
	return func(c echo.Context) error {
		views, _, _, err := s.mySessions(c)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, sessionsResponse{Sessions: views})
	}
}

func (s *server) revokeSession() echo.HandlerFunc {
	return func(c echo.Context) error {
		_, list, current, err := s.mySessions(c)
		if err != nil {
			return err
		}
		id := c.Param("id")
		for _, x := range list {
			if httpsession.ShortID(x.Key) != id {
				continue
			}
			if err := s.sessions.Revoke(c.Request().Context(), x.Key); err != nil {
				return err
			}
			if x.Key == current {
				sess := loginOf(c)
				sess.Options.MaxAge = -1
				_ = sess.Save(c.Request(), c.Response()) // already deleted: clears the cookie
			}
			s.Logger.Info("Session revoked", "session", id, "current", x.Key == current)
			return c.JSON(http.StatusOK, okBody{OK: true})
		}
		return echo.NewHTTPError(http.StatusNotFound, "no such session")
	}
}

func (s *server) revokeOtherSessions() echo.HandlerFunc {
	return func(c echo.Context) error {
		_, list, current, err := s.mySessions(c)
		if err != nil {
			return err
		}
		n := 0
		for _, x := range list {
			if x.Key == current {
				continue
			}
			if err := s.sessions.Revoke(c.Request().Context(), x.Key); err != nil {
				return err
			}
			n++
		}
		s.Logger.Info("Other sessions revoked", "count", n)
		return c.JSON(http.StatusOK, revokedResponse{Revoked: n})
	}
}

func (s *server) sessionsPage() echo.HandlerFunc {
	return func(c echo.Context) error {
		views, _, _, err := s.mySessions(c)
		if err != nil {
			return err
		}
		return s.render(c, http.StatusOK, "sessions.html", sessionsPage{page: page{Title: "Your sessions"}, User: userOf(c), Store: s.StoreName, Sessions: views})
	}
}
