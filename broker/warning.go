package broker

import "time"

// Warning is a police warning: a flag pushed to named offices.
type Warning struct {
	ID         string     `json:"id"`
	FlagID     string     `json:"flag_id"`
	Issuer     string     `json:"issuer"`
	IssuedBy   string     `json:"issued_by"`
	CreatedAt  time.Time  `json:"created_at"`
	Deliveries []Delivery `json:"targets"`
}

// Delivery is a warning's state at one target office.
type Delivery struct {
	Office      string     `json:"office"`
	DeliveredAt time.Time  `json:"delivered_at"`
	ReadAt      *time.Time `json:"read_at"`
	// AckedAt is when the office acknowledged it. Who did is not shown:
	// the issuer is told the office, as the disclosure feed tells it the
	// office and role but not the employee (the acknowledging agency's own
	// log names them).
	AckedAt *time.Time `json:"acked_at"`
	Webhook *Push      `json:"webhook,omitempty"`
}

// Push is the state of a webhook push of a delivery.
type Push struct {
	Attempts    int        `json:"attempts"`
	LastStatus  *int       `json:"last_status,omitempty"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	GaveUpAt    *time.Time `json:"gave_up_at,omitempty"`
}

// InboxItem is one warning in an office's inbox.
type InboxItem struct {
	Pos         int64
	WarningID   string
	Office      string
	DeliveredAt time.Time
	ReadAt      *time.Time
	AckedAt     *time.Time
	Flag        *Flag
}

// Disclosure is one disclosure of a flag, as its issuer is told of it.
type Disclosure struct {
	Seq        int64     `json:"seq"`
	FlagID     string    `json:"flag_id"`
	At         time.Time `json:"at"`
	Agency     string    `json:"agency"`
	Office     string    `json:"office"`
	Role       string    `json:"role"`
	Action     string    `json:"action"`
	LegalBasis string    `json:"legal_basis"`
	Emergency  bool      `json:"emergency"`
	// ByException: the flag was not shown, only counted into the
	// life-and-health exception's aggregate (under LegalBasis, the route).
	ByException bool `json:"by_exception"`
}
