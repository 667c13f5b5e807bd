package broker

import "time"

// Review kinds and verdicts.
const (
	ReviewEmergency   = "emergency"
	ReviewAnomaly     = "anomaly"
	ReviewPending     = "pending"
	ReviewJustified   = "justified"
	ReviewUnjustified = "unjustified"
)

// Review is a privacy officer's after-the-fact review of one audited
// decision: an emergency disclosure, or a snooping signal.
type Review struct {
	Seq          int64      `json:"seq"`
	Kind         string     `json:"kind"`
	Reason       string     `json:"reason,omitempty"`
	ActorAgency  string     `json:"actor_agency"`
	Actor        string     `json:"actor"`
	At           time.Time  `json:"at"`
	CreatedAt    time.Time  `json:"created_at"`
	Status       string     `json:"status"`
	Overdue      bool       `json:"overdue"`
	Note         string     `json:"note,omitempty"`
	JudgedBy     string     `json:"judged_by,omitempty"`
	JudgedAgency string     `json:"judged_agency,omitempty"`
	JudgedAt     *time.Time `json:"judged_at,omitempty"`
	VerdictSeq   *int64     `json:"verdict_seq,omitempty"`
	// The reviewed entry, for the reviewer.
	Action        string   `json:"action"`
	Office        string   `json:"office"`
	Role          string   `json:"role"`
	LegalBasis    string   `json:"legal_basis"`
	FlagIDs       []string `json:"flag_ids"`
	Justification string   `json:"justification"`
	// Projected is set when the reviewed entry is shown through the
	// caller's projection (every caller but the operator's auditors).
	Projected bool `json:"projected"`
	// What the projection needs of the reviewed entry besides the above;
	// never sent.
	Decision   string   `json:"-"`
	Reasons    []string `json:"-"`
	SubjectRef string   `json:"-"`
}

// ReportItem is one disclosure about a person, for an access request.
type ReportItem struct {
	Seq        int64     `json:"seq"`
	At         time.Time `json:"at"`
	Agency     string    `json:"agency"`
	Office     string    `json:"office"`
	Role       string    `json:"role"`
	Action     string    `json:"action"`
	FlagIDs    []string  `json:"flag_ids"`
	LegalBasis string    `json:"legal_basis"`
	Emergency  bool      `json:"emergency"`
	Verdict    string    `json:"verdict,omitempty"` // of its emergency review, when there is one
	Projected  bool      `json:"projected"`
	// What the projection needs of the entry besides the above; never sent.
	Actor      string   `json:"-"`
	Decision   string   `json:"-"`
	Reasons    []string `json:"-"`
	SubjectRef string   `json:"-"`
}

// FlagOrigin is what the privacy officers' projection needs to know of a
// flag named in an audit entry: who issued it, under which basis, about whom.
type FlagOrigin struct {
	Issuer     string
	LegalBasis string
	SubjectRef string
}

// StatRow is one group of audit figures.
type StatRow struct {
	Key         string `json:"key"`
	Checks      int64  `json:"checks"`
	Disclosures int64  `json:"disclosures"`
	Denials     int64  `json:"denials"`
	Emergencies int64  `json:"emergencies"`
	Anomalies   int64  `json:"anomalies"`
}

// OfficeHours are when checks are expected; checks outside them are a
// snooping signal. Disabled when Enabled is false.
type OfficeHours struct {
	Enabled    bool
	Start, End int // hours, local time: [Start, End)
	Weekdays   bool
	TimeZone   string // e.g. Europe/Oslo
}
