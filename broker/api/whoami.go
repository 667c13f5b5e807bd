package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"varsel/broker"
)

// whoami echoes the verified principal, for integration checks.
func (s *Server) whoami(c echo.Context) error {
	p := broker.PrincipalFromContext(c.Request().Context())
	return c.JSON(http.StatusOK, p)
}
