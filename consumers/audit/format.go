package audit

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// FormatVersion is the value of the auditformat attribute: the version of
// the file format described in the package documentation.
const FormatVersion = "sessionbus-audit/1"

// Extension attributes that an audit file adds to each CloudEvent (see the
// package documentation for their meaning).
const (
	// AttrStreamSeq is the stream sequence, a decimal string (CloudEvents
	// integers stop at 2^31-1; stream sequences do not).
	AttrStreamSeq = "streamseq"
	// AttrStreamTime is when the stream stored the message (RFC 3339).
	AttrStreamTime = "streamtime"
	// AttrNATSSubject is the stream subject of the message.
	AttrNATSSubject = "natssubject"
	// AttrFormat, AttrStream, AttrPart and AttrFilter appear on the first
	// line of every file only: the format version, the stream name, the
	// file's index in the chain and the filter that selected the events.
	AttrFormat = "auditformat"
	AttrStream = "auditstream"
	AttrPart   = "auditpart"
	AttrFilter = "auditfilter"
	// AttrPrevHash is the previous line's chainhash (Genesis on the
	// first line of a chain).
	AttrPrevHash = "prevhash"
	// AttrChainHash is the lowercase hex SHA-256 of the line's canonical
	// bytes; always the last member of the line.
	AttrChainHash = "chainhash"
)

// Types of the lines an audit file adds for what is not a readable fact.
const (
	// TypeUnreadable records a stream message that is not a CloudEvent
	// this package can copy; its data is an UnreadableData.
	TypeUnreadable = "io.sessionbus.audit.unreadable.v1"
	// TypeGap records stream sequences that had no message when they were
	// copied (aged out under MaxAge, or deleted); its data is a GapData.
	TypeGap = "io.sessionbus.audit.gap.v1"
	// typePrefix is reserved: a stream message claiming such a type is
	// written as unreadable so that it cannot pass for an audit line.
	typePrefix = "io.sessionbus.audit."
)

// Source is the CloudEvents source of the lines the audit itself writes.
const Source = "/sessionbus/audit"

// Genesis is the prevhash of the first line of a chain: 64 zeros.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// UnreadableData is the data of a TypeUnreadable line.
type UnreadableData struct {
	// Reason says why the message could not be copied as a CloudEvent.
	Reason string `json:"reason"`
	// Headers are the message's NATS headers as stored.
	Headers map[string][]string `json:"headers,omitempty"`
	// Body is the message body, base64 (standard encoding).
	Body []byte `json:"body_base64,omitempty"`
}

// GapData is the data of a TypeGap line: sequences FirstSeq to LastSeq
// (the line's streamseq) were not on the stream.
type GapData struct {
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Reason   string `json:"reason"`
}

const gapReason = "no message on the stream at these sequences when they were copied (aged out under MaxAge, or deleted)"

// Filter selects the events of a replay. The zero Filter selects the
// whole stream from sequence 1.
type Filter struct {
	// FromSeq is the first stream sequence to copy. 0 means 1, unless
	// Since is set.
	FromSeq uint64
	// Since and Until bound the stream time (when the stream stored the
	// message, not the event's own time). Zero means unbounded. A replay
	// stops at the first message stored after Until.
	Since, Until time.Time
	// Types keeps only these CloudEvent types (unreadable messages are
	// always kept: they have no trustworthy type).
	Types []string
	// Subject is a NATS subject filter within auth.events.>.
	Subject string
}

func (f Filter) normalized() Filter {
	if f.FromSeq == 0 && f.Since.IsZero() {
		f.FromSeq = 1
	}
	if f.Subject == events.SubjectAll {
		f.Subject = ""
	}
	if len(f.Types) > 0 {
		f.Types = slices.Clone(f.Types)
		slices.Sort(f.Types)
		f.Types = slices.Compact(f.Types)
	}
	f.Since = f.Since.UTC()
	f.Until = f.Until.UTC()
	return f
}

// Contiguous reports whether f keeps every stream sequence of its range,
// so that verify can demand that sequences follow one another.
func (f Filter) Contiguous() bool { return len(f.Types) == 0 && f.Subject == "" }

// String encodes f as the value of the auditfilter attribute: a URL query
// with the keys from, since, until, subject and type, sorted by key (for
// example "from=1" for a whole-stream copy).
func (f Filter) String() string {
	f = f.normalized()
	v := url.Values{}
	if f.FromSeq > 0 {
		v.Set("from", strconv.FormatUint(f.FromSeq, 10))
	}
	if !f.Since.IsZero() {
		v.Set("since", f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		v.Set("until", f.Until.Format(time.RFC3339Nano))
	}
	if f.Subject != "" {
		v.Set("subject", f.Subject)
	}
	for _, t := range f.Types {
		v.Add("type", t)
	}
	return v.Encode()
}

// ParseFilter decodes the value of an auditfilter attribute.
func ParseFilter(s string) (Filter, error) {
	v, err := url.ParseQuery(s)
	if err != nil {
		return Filter{}, fmt.Errorf("filter %q: %w", s, err)
	}
	var f Filter
	for k, vs := range v {
		switch k {
		case "from":
			if f.FromSeq, err = strconv.ParseUint(vs[0], 10, 64); err != nil {
				return Filter{}, fmt.Errorf("filter from: %w", err)
			}
		case "since":
			if f.Since, err = time.Parse(time.RFC3339Nano, vs[0]); err != nil {
				return Filter{}, fmt.Errorf("filter since: %w", err)
			}
		case "until":
			if f.Until, err = time.Parse(time.RFC3339Nano, vs[0]); err != nil {
				return Filter{}, fmt.Errorf("filter until: %w", err)
			}
		case "subject":
			f.Subject = vs[0]
		case "type":
			f.Types = vs
		default:
			return Filter{}, fmt.Errorf("filter: unknown key %q", k)
		}
	}
	return f.normalized(), nil
}

// keeps reports whether a copied line of type typ, stored at ts, passes
// the filter's client-side parts (types and times). Sequence and subject
// are applied by the consumer.
func (f Filter) keepsType(typ string) bool {
	if len(f.Types) == 0 || strings.HasPrefix(typ, typePrefix) {
		return true
	}
	_, found := slices.BinarySearch(f.Types, typ)
	return found
}

// Head is what the first line of every audit file says about the file.
type Head struct {
	Format string // FormatVersion
	Stream string // the stream copied, AUTH_EVENTS
	Part   uint64 // index of the file in the chain: 0, then 1, 2… after rotations
	Filter Filter // the selection that made the chain
	// RawFilter is the auditfilter attribute as written.
	RawFilter string
}

// PartPath returns the name of part n of the chain whose first file is
// base: base itself for part 0, then base.000001, base.000002… (zero
// padded so that a shell glob lists them in order).
func PartPath(base string, n uint64) string {
	if n == 0 {
		return base
	}
	return fmt.Sprintf("%s.%06d", base, n)
}
