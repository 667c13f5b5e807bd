package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"varsel/audit"
	"varsel/broker"
)

// whoamiResponse echoes the verified principal and where the call was audited.
type whoamiResponse struct {
	*broker.Principal
	Audit *audit.Receipt `json:"audit,omitempty"`
}

// whoami echoes the verified principal, for integration checks. With a
// service configured, the call is audited first, as every /v1 call that
// reaches a handler is.
func (s *Server) whoami(c echo.Context) error {
	ctx := c.Request().Context()
	p := broker.PrincipalFromContext(ctx)
	res := whoamiResponse{Principal: p}
	if s.cfg.Service != nil {
		r, err := s.cfg.Service.Whoami(ctx, p)
		if err != nil {
			return err
		}
		res.Audit = &r
	}
	return c.JSON(http.StatusOK, res)
}
