// Package audit copies the AUTH_EVENTS stream into files an auditor can
// keep and later prove unedited: one structured-mode CloudEvent JSON
// object per line (JSON Lines), chained by SHA-256.
//
// Replayer copies the stream, or a filtered part of it, once. Follower
// keeps a live copy through a durable consumer, exactly once: it resumes
// after the file's last line whatever killed it. Verify checks files, and
// optionally compares them with the stream.
//
// # Lines
//
// Every line of an audit file is one CloudEvent 1.0 in the JSON format,
// nothing else, readable by any CloudEvents SDK and by jq. A fact from the
// stream keeps its attributes (id, source, type, subject, time,
// dataschema, its extension attributes) and its JSON data, and gains
// these extension attributes (all strings):
//
//   - streamseq: the stream sequence, decimal (a string because
//     CloudEvents integers stop at 2^31-1).
//   - streamtime: when the stream stored the message, RFC 3339.
//   - natssubject: the message's subject on the stream.
//   - prevhash: the chainhash of the line before (Genesis, 64 zeros, on
//     the first line of a chain).
//   - chainhash: lowercase hex SHA-256 of the line's canonical bytes.
//
// The first line of every file also carries auditformat
// ("sessionbus-audit/1"), auditstream (the stream name), auditpart (the
// file's index in the chain, from 0) and auditfilter (the selection that
// made the chain, a URL query such as "from=1" or
// "from=1&subject=auth.events.session.%3E&type=io.sessionbus.session.revoked.v1").
// That first line is an event like the others: there is no header line.
//
// Members are written in a fixed order with chainhash last, so a line
// always ends with ,"chainhash":"<64 hex digits>"}. The canonical bytes
// of a line are the line without its newline and without that last
// member: the same bytes ending in "prevhash":"…"}. chainhash is the
// SHA-256 of them. As prevhash is inside the canonical bytes, each hash
// covers the previous hash and the whole event, and verify needs nothing
// but the line to recompute it. Any byte changed (even whitespace) breaks
// the line's hash; a line removed, inserted or moved breaks a prevhash.
// Data is embedded as its JSON bytes, compacted only if it holds
// newlines.
//
// # What is not a fact
//
// Nothing on the stream is dropped silently, and the sequence stays
// continuous:
//
//   - A CloudEvent of a type this version does not know (foreign) is
//     copied as it is, and counted.
//   - A message that is not a valid CloudEvent of the NATS binding (or
//     whose data is not UTF-8 JSON, or that claims an audit type or an
//     audit attribute name) becomes a line of type
//     io.sessionbus.audit.unreadable.v1, id <stream>-<seq>, whose data
//     holds the reason, the headers and the body in base64 (see
//     UnreadableData); counted.
//   - A message whose Nats-Msg-Id (the stream's de-duplication id) is not
//     its ce-id was not stored by the fact's publisher
//     (events.ErrMsgIDMismatch): it becomes such an unreadable line too,
//     counted apart (Stats.MsgIDMismatch, unreadable_total{reason=
//     "msgid_mismatch"}).
//   - Sequences with no message (aged out under the stream's MaxAge
//     before they were copied, or deleted) become one line of type
//     io.sessionbus.audit.gap.v1 whose streamseq is the last missing
//     sequence and whose data names the first (GapData). A replay from
//     sequence 1 of a stream that now starts at 57 thus begins with a gap
//     line for 1 to 56: the file says so instead of looking cut.
//
// Every line is deterministic (no clock, no random id): a replay and a
// follow of the same stream write the same bytes.
//
// # Files and rotation
//
// A chain may span parts: the first file, then FILE.000001, FILE.000002…
// A new part starts before a line once the current part has reached the
// size limit; its first line carries the head (with the next auditpart)
// and, as prevhash, the last chainhash of the previous part, so the chain
// runs on across files. A single part verifies on its own, its link to
// the previous part given by VerifyConfig.PrevHash.
//
// # Filters
//
// A replay may select by sequence, stream time, type and subject. The
// filter is recorded in auditfilter on each file's first line, inside the
// chain, and verify applies it: a filter without types or subject keeps
// every sequence of its range, so sequences must follow one another;
// otherwise they must only increase, and every line must match the
// filter.
//
// # Follow, exactly once
//
// On start, Follower reads the last part's last complete line; a partial
// line after it (a crash in the middle of a write) is truncated away and
// counted. The file is the truth: if the durable consumer's ack floor and
// delivered sequence are exactly that line's sequence, it is used as it
// is; otherwise it is deleted and created again to deliver from the next
// sequence. Messages at or below the file's last sequence (redeliveries)
// are acknowledged and skipped; a message beyond the next sequence means a
// delivery was lost in transit (a reconnect) and the consumer is
// repositioned, unless the stream has nothing at the missing sequences,
// which then get a gap line. Lines are written in batches, fsynced, and
// only then acknowledged. A durable (rather than an ordered consumer from
// the file's position) keeps the server's view of the auditor's progress
// (lag, ack floor) visible to operators. It needs read access to the
// whole stream and the right to create and delete its consumer: an
// identity with the audit role (the embedded server's audit.creds, or one
// from `sessionbus services add --role audit`). Give it an
// unguessable durable name: NATS permissions cannot say whose a consumer
// is.
//
// # Verify
//
// Verify reports the first line that was edited (its hash fails),
// removed (a prevhash or sequence skips), inserted (the next line links
// over it) or reordered (a later line links to the one before), as a
// *LineError naming the file and line. Removing lines at the very end of
// the last file leaves no trace inside the files: compare with the stream
// (VerifyConfig.Against with Complete), or check a chainhash noted earlier
// (VerifyConfig.ExpectHashes). Against the stream, every event the stream
// holds in the files' range must be in them, and each line must be
// byte for byte the line its stream message makes, which also catches a
// chain recomputed after an edit.
//
// An intact chain may still hold facts not to trust: a line whose ce-id
// an earlier line has (the same fact stored twice, or a line copied into
// a recomputed chain), and a line recording a message whose Nats-Msg-Id
// was not its ce-id. Verify lists them (Report.Suspects) and fails with
// ErrDuplicateFact or ErrMsgIDMismatch. It keeps the ce-ids read in
// memory, 40 to 55 bytes a line.
//
// # Performance
//
// Replay validates and encodes each message without reflection (a fast
// path held to events.FromMsg by a fuzz test, a JSON validator held to
// encoding/json.Valid by another), hashes and writes it through a 256 KiB
// buffer on a second goroutine, and fsyncs once at the end. See
// BenchmarkReplay and BenchmarkOrderedConsumerRaw (on a real stream, in
// internal/integration/audit); BenchmarkEncodeLine here also runs an
// encoder that writes the same lines with events.FromMsg and
// encoding/json alone, to show what the fast path, the validator and the
// string encoder buy.
package audit
