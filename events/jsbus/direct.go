package jsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// BatchRequest asks a stream for the messages from Seq (or, with Seq 0,
// from StartTime) on, at most Batch of them, without a consumer: a batch
// direct get ($JS.API.DIRECT.GET.<stream>, NATS 2.11+), the only read of
// a stream a client without JetStream of its own can make.
type BatchRequest struct {
	Seq       uint64
	StartTime time.Time
	Batch     int
}

// Batch is the answer to a BatchRequest.
type Batch struct {
	// Msgs are the stored messages, in stream order. Their headers hold
	// Nats-Sequence, Nats-Time-Stamp and Nats-Subject (see MsgSeq).
	Msgs []*nats.Msg
	// Pending is how many matching messages the stream held after the
	// last one returned when it answered: 0 means the reader has read
	// everything stored before the request was answered.
	Pending uint64
}

// ErrDirectGet reports a direct get the server refused.
var ErrDirectGet = errors.New("jsbus: direct get failed")

// DirectBatch sends a batch direct get to the stream and collects the
// answer. A stream with nothing at or after the position answers with an
// empty batch and no pending messages.
func DirectBatch(ctx context.Context, nc *nats.Conn, stream string, req BatchRequest) (Batch, error) {
	body := map[string]any{"batch": max(req.Batch, 1), "next_by_subj": ">"}
	if req.Seq > 0 || req.StartTime.IsZero() {
		body["seq"] = max(req.Seq, 1)
	} else {
		body["start_time"] = req.StartTime.UTC()
	}
	b, err := json.Marshal(body)
	if err != nil {
		return Batch{}, err
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return Batch{}, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, b); err != nil {
		return Batch{}, err
	}
	var out Batch
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return Batch{}, fmt.Errorf("direct get %s: %w", stream, err)
		}
		status := m.Header.Get("Status")
		switch {
		case status == "" && len(m.Header.Get("Nats-Sequence")) > 0:
			out.Msgs = append(out.Msgs, m)
			continue
		case status == "204": // end of batch
			if p := m.Header.Get("Nats-Num-Pending"); p != "" {
				if out.Pending, err = strconv.ParseUint(p, 10, 64); err != nil {
					return Batch{}, fmt.Errorf("%w: %s: pending %q", ErrDirectGet, stream, p)
				}
			}
			return out, nil
		case status == "404": // nothing at or after the position
			return out, nil
		case status == "503" && len(m.Data) == 0:
			return Batch{}, fmt.Errorf("%w: %s: %w", ErrDirectGet, stream, nats.ErrNoResponders)
		default:
			return Batch{}, fmt.Errorf("%w: %s: status %s %s", ErrDirectGet, stream, status, m.Header.Get("Description"))
		}
	}
}

// MsgSeq is the stream sequence of a message from DirectBatch.
func MsgSeq(m *nats.Msg) uint64 {
	n, _ := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	return n
}

// MsgTime is when a message from DirectBatch was stored.
func MsgTime(m *nats.Msg) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
	return t
}

// StoredMsg turns a message from DirectBatch into the message as it was
// published: its subject, and its headers without the stream's.
func StoredMsg(m *nats.Msg) *nats.Msg {
	h := nats.Header{}
	for k, v := range m.Header {
		switch k {
		case "Nats-Sequence", "Nats-Time-Stamp", "Nats-Subject", "Nats-Stream", "Nats-Stream-Source", "Nats-Num-Pending", "Nats-Last-Sequence":
			continue
		}
		h[k] = v
	}
	return &nats.Msg{Subject: m.Header.Get("Nats-Subject"), Header: h, Data: m.Data}
}

// SourceSeq is the sequence in the origin stream of a message from
// DirectBatch that its stream sourced (0 if it was not sourced).
func SourceSeq(m *nats.Msg) uint64 {
	// Nats-Stream-Source: "<stream> <seq> <filters> <transforms> ..."
	f := strings.Fields(m.Header.Get("Nats-Stream-Source"))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(f[1], 10, 64)
	return n
}
