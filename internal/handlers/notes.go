package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"example.com/oauth-sessions/internal/notes"
)

// This file is the example of your app's own data, to copy: each signed-in
// user's notes, as JSON below /api/app/notes and as the forms of the /app
// page. The data is in internal/notes, behind notes.Store (Deps.Notes);
// the routes are in routes.go.
//
// Notes belong to userOf(c).ID, the provider and subject of the sign-in,
// not to the email: an address is only as good as the provider that
// vouches for it, and one provider's account must not read another's data.

// noteView is one note in the JSON of /api/app/notes.
type noteView struct {
	ID        string    `json:"id"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"createdAt"`
}

func viewOf(n notes.Note) noteView {
	return noteView{ID: n.ID, Text: n.Text, CreatedAt: n.CreatedAt.UTC()}
}

// notesResponse is the JSON of GET /api/app/notes.
type notesResponse struct {
	Notes []noteView `json:"notes"` // newest first; [] when there are none
}

// addNoteRequest is the JSON body of POST /api/app/notes.
type addNoteRequest struct {
	Text string `json:"text"`
}

// noteRow is one note on the /app page.
type noteRow struct {
	ID      string
	Text    string
	Created when
}

// listNotes is GET /api/app/notes.
func (s *server) listNotes() echo.HandlerFunc {
	return func(c echo.Context) error {
		list, err := s.Notes.List(c.Request().Context(), userOf(c).ID)
		if err != nil {
			return notesDown(c, err)
		}
		views := make([]noteView, 0, len(list))
		for _, n := range list {
			views = append(views, viewOf(n))
		}
		return c.JSON(http.StatusOK, notesResponse{Notes: views})
	}
}

// addNote is POST /api/app/notes: 201 with the note, or 400 with why not.
func (s *server) addNote() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req addNoteRequest
		if err := readJSON(c, &req); err != nil {
			return err
		}
		n, err := s.Notes.Add(c.Request().Context(), userOf(c).ID, req.Text)
		if err != nil {
			if msg := refusal(err); msg != "" {
				return echo.NewHTTPError(http.StatusBadRequest, msg)
			}
			return notesDown(c, err)
		}
		return c.JSON(http.StatusCreated, viewOf(n))
	}
}

// deleteNote is DELETE /api/app/notes/:id: 204, or 404 when the user has
// no such note (someone else's is no such note).
func (s *server) deleteNote() echo.HandlerFunc {
	return func(c echo.Context) error {
		found, err := s.Notes.Delete(c.Request().Context(), userOf(c).ID, c.Param("id"))
		if err != nil {
			return notesDown(c, err)
		}
		if !found {
			return echo.NewHTTPError(http.StatusNotFound, "no such note")
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// loadNotes puts the user's notes on the /app page.
func (s *server) loadNotes(c echo.Context, p *appPage) error {
	list, err := s.Notes.List(c.Request().Context(), userOf(c).ID)
	if err != nil {
		return notesDown(c, err)
	}
	for _, n := range list {
		p.Notes = append(p.Notes, noteRow{ID: n.ID, Text: n.Text, Created: s.when(n.CreatedAt)})
	}
	return nil
}

// addNoteForm is POST /app/notes, the page's form: back to the page, which
// says what happened. The form is multipart: URL-encoding would make
// 10,000 characters of most scripts outgrow the 64 KB body limit.
func (s *server) addNoteForm() echo.HandlerFunc {
	return func(c echo.Context) error {
		form, err := c.FormParams()
		if err != nil {
			var he *echo.HTTPError
			if errors.As(err, &he) { // 413: over the body limit
				return he
			}
			return echo.NewHTTPError(http.StatusBadRequest, "The form could not be read. Please go back and try again.").SetInternal(err)
		}
		_, err = s.Notes.Add(c.Request().Context(), userOf(c).ID, form.Get("text"))
		switch msg := refusal(err); {
		case err == nil:
			s.setNotice(c, "Note added.")
		case msg != "":
			s.setNotice(c, msg)
		default:
			return notesDown(c, err)
		}
		return c.Redirect(http.StatusSeeOther, "/app")
	}
}

// deleteNoteForm is POST /app/notes/:id/delete, a note's Delete button.
func (s *server) deleteNoteForm() echo.HandlerFunc {
	return func(c echo.Context) error {
		found, err := s.Notes.Delete(c.Request().Context(), userOf(c).ID, c.Param("id"))
		if err != nil {
			return notesDown(c, err)
		}
		if found {
			s.setNotice(c, "Note deleted.")
		} else {
			s.setNotice(c, "That note was not found: it may have been deleted already.")
		}
		return c.Redirect(http.StatusSeeOther, "/app")
	}
}

// refusal is what a person reads when Add refuses a note; "" when err is
// no refusal (nil, or a failure of the store).
func refusal(err error) string {
	switch {
	case errors.Is(err, notes.ErrEmpty):
		return "The note is empty: write something first."
	case errors.Is(err, notes.ErrTooLong):
		return fmt.Sprintf("The note is too long: it can have at most %d characters.", notes.MaxTextLen)
	case errors.Is(err, notes.ErrNotText):
		return "The note is not valid text (UTF-8)."
	case errors.Is(err, notes.ErrTooMany):
		return fmt.Sprintf("You already have %d notes, the most you can keep: delete some to add more.", notes.MaxPerOwner)
	}
	return ""
}

// notesDown is the answer when the notes store fails: 503 with words for
// people (a page with a link to try again, or JSON); the cause goes to the
// log only.
func notesDown(c echo.Context, err error) error {
	return &pageError{status: http.StatusServiceUnavailable, title: "Notes unavailable",
		detail: "Your notes cannot be reached right now. Please try again in a moment.",
		retry:  c.Request().URL.RequestURI(), cause: err}
}

// readJSON decodes the request's body, one JSON object sent as
// application/json, into v; anything else is a 400 (a body over the limit
// stays a 413).
func readJSON(c echo.Context, v any) error {
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || mt != echo.MIMEApplicationJSON {
		return echo.NewHTTPError(http.StatusBadRequest, "Send the body as JSON, with Content-Type: application/json.")
	}
	d := json.NewDecoder(c.Request().Body)
	d.DisallowUnknownFields()
	err = d.Decode(v)
	if err == nil {
		if _, extra := d.Token(); extra != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return he
		}
		return echo.NewHTTPError(http.StatusBadRequest, `The body must be one JSON object such as {"text": "Buy milk"}.`).SetInternal(err)
	}
	return nil
}

// NoteMaxLen is the /app page's limit of a note's characters (the
// textarea's maxlength).
func (appPage) NoteMaxLen() int { return notes.MaxTextLen }
