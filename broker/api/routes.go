package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"varsel/broker"
	"varsel/broker/service"
)

// routes registers the operations of docs/api.md §4–§8 on the /v1 group.
func (s *Server) routes(g *echo.Group) {
	g.POST("/flags", s.issueFlag)
	g.GET("/flags", s.listFlags)
	g.GET("/flags/:id", s.getFlag)
	g.POST("/flags/:id/revoke", s.revokeFlag)
	g.POST("/checks", s.check)
	g.GET("/legal-bases", s.legalBases)
	g.GET("/legal-bases/:code", s.legalBasis)
	g.GET("/flags/disclosures", s.disclosures)
	g.POST("/warnings", s.issueWarning)
	g.GET("/warnings/inbox", s.inbox)
	g.GET("/warnings/:id", s.getWarning)
	g.POST("/warnings/:id/ack", s.ack)
	g.PUT("/offices/:office/webhook", s.setWebhook)
	g.GET("/audit/reviews", s.listReviews)
	g.POST("/audit/reviews/:seq", s.judge)
	g.POST("/audit/subject-report", s.subjectReport)
	g.GET("/audit/stats", s.auditStats)
	g.POST("/audit/search", s.auditSearch)
	g.GET("/audit/tile/entries/*", s.entryBundle)
}

func principal(c echo.Context) *broker.Principal {
	return broker.PrincipalFromContext(c.Request().Context())
}

func (s *Server) auditSearch(c echo.Context) error {
	var req service.AuditSearch
	if err := Decode(c, &req); err != nil {
		return err
	}
	res, err := s.cfg.Service.SearchAudit(c.Request().Context(), principal(c), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// auditCheckpoint serves the newest signed checkpoint as a signed note.
func (s *Server) auditCheckpoint(c echo.Context) error {
	if s.cfg.Checkpoints == nil {
		return broker.Errorf(broker.ENOTFOUND, "no checkpoints are kept")
	}
	cp, err := s.cfg.Checkpoints.LatestCheckpoint(c.Request().Context())
	if err != nil {
		return &broker.Error{Kind: broker.EUNAVAILABLE, Code: broker.CodeAuditUnavailable, Message: "checkpoints cannot be read", Err: err}
	}
	if cp == nil {
		return broker.Errorf(broker.ENOTFOUND, "no checkpoint has been signed yet")
	}
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.Blob(http.StatusOK, "text/plain; charset=utf-8", []byte(cp.Note))
}

// auditKey serves the checkpoint verifier key (note format).
func (s *Server) auditKey(c echo.Context) error {
	if s.cfg.CheckpointKey == "" {
		return broker.Errorf(broker.ENOTFOUND, "no checkpoint key is configured")
	}
	return c.Blob(http.StatusOK, "text/plain; charset=utf-8", []byte(s.cfg.CheckpointKey+"\n"))
}

func (s *Server) issueFlag(c echo.Context) error {
	var req broker.FlagRequest
	if err := Decode(c, &req); err != nil {
		return err
	}
	res, err := s.cfg.Service.IssueFlag(c.Request().Context(), principal(c), req)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/flags/"+res.ID)
	return c.JSON(http.StatusCreated, res)
}

func (s *Server) listFlags(c echo.Context) error {
	q := service.FlagListQuery{All: c.QueryParam("status") == "all"}
	if v := c.QueryParam("status"); v != "" && v != "all" && v != "active" {
		return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "status must be active or all")
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "limit must be a number")
		}
		q.Limit = n
	}
	res, err := s.cfg.Service.ListFlags(c.Request().Context(), principal(c), q)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) getFlag(c echo.Context) error {
	res, err := s.cfg.Service.Flag(c.Request().Context(), principal(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) revokeFlag(c echo.Context) error {
	var req service.RevokeRequest
	if err := Decode(c, &req); err != nil {
		return err
	}
	res, err := s.cfg.Service.RevokeFlag(c.Request().Context(), principal(c), c.Param("id"), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) check(c echo.Context) error {
	var req service.CheckRequest
	if err := Decode(c, &req); err != nil {
		return err
	}
	res, err := s.cfg.Service.Check(c.Request().Context(), principal(c), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// legalBases lists the bases in force now, or at ?at=RFC3339.
func (s *Server) legalBases(c echo.Context) error {
	var at *time.Time
	if v := c.QueryParam("at"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "at must be an RFC 3339 time, e.g. 2021-06-30T12:00:00Z")
		}
		at = &t
	}
	return c.JSON(http.StatusOK, map[string]any{"legal_bases": s.cfg.Service.LegalBases(at)})
}

// legalBasis shows one basis, retired or not yet in force included.
func (s *Server) legalBasis(c echo.Context) error {
	b, err := s.cfg.Service.LegalBasis(c.Param("code"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b)
}

func (s *Server) issueWarning(c echo.Context) error {
	var req service.WarningRequest
	if err := Decode(c, &req); err != nil {
		return err
	}
	res, err := s.cfg.Service.IssueWarning(c.Request().Context(), principal(c), req)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/warnings/"+res.ID)
	return c.JSON(http.StatusCreated, res)
}

func (s *Server) inbox(c echo.Context) error {
	q, err := parseInboxQuery(c.QueryParams())
	if err != nil {
		return err
	}
	res, err := s.cfg.Service.Inbox(c.Request().Context(), principal(c), q)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) getWarning(c echo.Context) error {
	res, err := s.cfg.Service.Warning(c.Request().Context(), principal(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) ack(c echo.Context) error {
	if len(Body(c)) > 0 {
		var empty struct{}
		if err := Decode(c, &empty); err != nil {
			return err
		}
	}
	res, err := s.cfg.Service.Ack(c.Request().Context(), principal(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) setWebhook(c echo.Context) error {
	var req service.WebhookRequest
	if err := Decode(c, &req); err != nil {
		return err
	}
	r, err := s.cfg.Service.SetWebhook(c.Request().Context(), principal(c), c.Param("office"), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"office": c.Param("office"), "url": req.URL, "audit": r})
}

func (s *Server) disclosures(c echo.Context) error {
	limit := 0
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return broker.CodeErrorf(broker.EINVALID, broker.CodeInvalidField, "limit must be a number")
		}
		limit = n
	}
	res, err := s.cfg.Service.Disclosures(c.Request().Context(), principal(c), c.QueryParam("after"), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) listReviews(c echo.Context) error {
	f, err := parseReviewFilter(c.QueryParams())
	if err != nil {
		return err
	}
	res, err := s.cfg.Service.ListReviews(c.Request().Context(), principal(c), f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) judge(c echo.Context) error {
	var req service.VerdictRequest
	if err := Decode(c, &req); err != nil {
		return err
	}
	res, err := s.cfg.Service.Judge(c.Request().Context(), principal(c), c.Param("seq"), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) subjectReport(c echo.Context) error {
	var req service.SubjectReportRequest
	if err := Decode(c, &req); err != nil {
		return err
	}
	res, err := s.cfg.Service.Report(c.Request().Context(), principal(c), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) auditStats(c echo.Context) error {
	f, err := parseStatsFilter(c.QueryParams())
	if err != nil {
		return err
	}
	res, err := s.cfg.Service.AuditStats(c.Request().Context(), principal(c), f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}
