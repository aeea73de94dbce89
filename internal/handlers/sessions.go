package handlers

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/example/oauth-sessions/internal/sessionstore"
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

type sessionsResponse struct {
	Sessions []sessionView `json:"sessions"`
}

// mySessions returns the signed-in user's live sessions, newest use first,
// and the store key of the current one. It answers 401 for visitors.
func (s *server) mySessions(c echo.Context) ([]sessionView, []sessionstore.Summary, string, error) {
	sess, user, ok, err := s.currentUser(c)
	if err != nil {
		return nil, nil, "", err
	}
	if !ok {
		return nil, nil, "", echo.NewHTTPError(http.StatusUnauthorized, "not signed in")
	}
	current := sessionstore.KeyOf(sess)
	list, err := s.login.Sessions(c.Request().Context(), user.Owner())
	if err != nil {
		return nil, nil, "", err
	}
	views := make([]sessionView, 0, len(list))
	for _, x := range list {
		var device string
		_ = json.Unmarshal(x.Values[deviceKey], &device) // absent in old sessions: ""
		views = append(views, sessionView{
			ID: sessionstore.ShortID(x.Key), Current: x.Key == current, Device: device,
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
		c.Response().Header().Set("Cache-Control", "no-store")
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
			if sessionstore.ShortID(x.Key) != id {
				continue
			}
			if err := s.login.Revoke(c.Request().Context(), x.Key); err != nil {
				return err
			}
			if x.Key == current {
				sess, _ := s.loginSession(c)
				sess.Options.MaxAge = -1
				_ = sess.Save(c.Request(), c.Response()) // already deleted: clears the cookie
			}
			s.Logger.Info("Session revoked", "session", id, "current", x.Key == current)
			return c.JSON(http.StatusOK, map[string]bool{"ok": true})
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
			if err := s.login.Revoke(c.Request().Context(), x.Key); err != nil {
				return err
			}
			n++
		}
		s.Logger.Info("Other sessions revoked", "count", n)
		return c.JSON(http.StatusOK, map[string]int{"revoked": n})
	}
}

func (s *server) sessionsPage() echo.HandlerFunc {
	return func(c echo.Context) error {
		views, _, _, err := s.mySessions(c)
		var he *echo.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusUnauthorized {
			return c.Redirect(http.StatusFound, "/")
		}
		if err != nil {
			return err
		}
		_, user, _, _ := s.currentUser(c)
		return s.render(c, http.StatusOK, "sessions.html", map[string]any{"Sessions": views, "User": user, "Store": s.StoreName})
	}
}
