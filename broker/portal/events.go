package portal

import (
	"fmt"
	"net/http"
	"time"
)

// inboxEvents streams server-sent events while the inbox page is open: the
// portal long-polls the broker's inbox (woken across replicas by the
// broker's notifications) and sends one "warning" event when something
// arrives, which the page's script answers by reloading the list. The
// events carry no flag data, only a count.
func (p *Portal) inboxEvents(w http.ResponseWriter, r *http.Request, s *Session) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	after := r.URL.Query().Get("after")
	if len(after) > 32 {
		after = ""
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 3000\n\n")
	flusher.Flush()
	ctx := r.Context()
	for ctx.Err() == nil {
		page, err := p.readInbox(ctx, s, after, 25*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("inbox events: broker", "err", err)
				fmt.Fprint(w, "event: error\ndata: {}\n\n")
				flusher.Flush()
			}
			return // the browser reconnects after retry
		}
		if len(page.Warnings) > 0 {
			fmt.Fprintf(w, "event: warning\ndata: {\"count\":%d}\n\n", len(page.Warnings))
		} else {
			fmt.Fprint(w, ": still here\n\n")
		}
		flusher.Flush()
		if page.Next != "" {
			after = page.Next
		}
	}
}
