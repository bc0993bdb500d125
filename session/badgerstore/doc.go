// Package badgerstore is the session view on Badger: it applies the facts
// of the AUTH_EVENTS stream in order and answers the manager's reads. How
// a fact changes a session, user, token or key record is decided by the
// pure rules of package session (NewSession, ApplyRefreshed, …); this
// package keeps the keys, the encoding, the records' expiry and the
// transactions.
//
// The view records the last stream sequence it applied in the same
// transaction as the facts' effects, so after a crash it resumes exactly
// where its last durable write ended; writes are not synced one by one
// because the stream, not the view, is the record. Deleting the directory
// and replaying the stream rebuilds the same state.
//
// State only moves forward: a revoked session stays revoked, generations
// and sequences only grow, and a refresh-token digest that was rotated
// stays recorded as rotated until its session's absolute expiry. Records
// carry a Badger expiry just after the moment they can no longer matter
// (a session past its absolute timeout, a token past its exp); an expired
// record that came back would still be expired by its own times. Index
// entries (deadlines, user→session) are deleted when they move; nothing
// security-relevant depends on a delete.
//
// # Memory
//
// Badger's options are chosen to bound what its compactions hold:
// uncompressed 1 MiB tables at every level and 4 MiB memtables
// (badgerOptions says why). Badger maps its files, and its compactions
// touch every page of the tables they merge. So a view whose tables
// have not changed for Options.PageOutIdle (30 s) asks the kernel to
// reclaim those pages, at most once every PageOutIdle (Linux; pageOut).
//
// # Corruption
//
// A damaged view is never served: it is rebuilt from the stream. Open
// verifies the checksums of every table file before Badger reads them
// (Badger itself panics on a table cut short and, without verification,
// serves a flipped bit), and returns an error wrapping ErrCorrupt for a
// damaged or missing table, an unreadable MANIFEST or a view an earlier
// run marked corrupt. While running, Badger checks each block it loads
// and each value it reads from its value log, a record that does not
// decode is ErrCorrupt, and Verify (every VerifyEvery) checks the table
// files again, because Badger reads a block that fails its checksum as a
// missing key rather than an error. The first corruption found while
// running closes Corrupted and marks the directory, so that the next Open
// returns ErrCorrupt. The owner then moves the view aside (MoveAside) or
// deletes it (Remove), both of which act only on a directory that holds
// nothing but a view's files and that no process has open, and opens a
// new one.
//
// A flipped bit in Badger's write-ahead log (a view that was not closed)
// drops the damaged transaction and all later ones of that log. With one
// log, the usual case, the view opens at an earlier sequence with exactly
// that sequence's state, and the stream replays the rest. With two (a
// crash while a full memtable was being written to a table), damage in
// the older log would leave a gap that is not detected.
//
// # Snapshots
//
// WriteSnapshot writes the view as one consistent state: the files of a
// Badger directory built from it, framed and summed (SHA-256); Restore
// copies them into a new directory, and only after the sum, every file
// name and every table's checksums verified, and the view's recorded
// sequence equals the one the snapshot names, renames it into place.
// The tables come built, so that a manager starts from a snapshot in
// the time it takes to copy and check it.
//
// Applying a fact that carries a trace context (ce-traceparent) is a
// span, "view apply <type>", a child of the span that published it.
package badgerstore
