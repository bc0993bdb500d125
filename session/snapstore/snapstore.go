// Package snapstore keeps snapshots of the session view (package
// badgerstore) in a JetStream Object Store bucket, so that a manager
// starts from a recent snapshot and replays only the tail of the stream.
//
// The bucket, sessionbus_snapshots, lives in the AUTH account beside the
// stream, replicated like the KV buckets; the setup step creates it
// (Setup) and the manager role may read, write and purge only it. Each
// object is named after the stream sequence it covers (view-<seq>) and
// carries it, the view's format version and the stream's tag in its
// metadata; its body is a badgerstore snapshot, which is verified while
// it is restored (its own SHA-256 and header), as the Object Store
// verifies its digest. Keep bounds how many stay.
package snapstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/session/badgerstore"
)

// Bucket is the Object Store bucket of the view snapshots.
const Bucket = "sessionbus_snapshots"

// DefaultKeep is how many snapshots stay in the bucket.
const DefaultKeep = 2

// Setup creates or updates the bucket; it needs the setup role.
func Setup(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas == 0 {
		replicas = 1
	}
	_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: Bucket, Description: "sessionbus view snapshots (managers only)",
		Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", Bucket, err)
	}
	return nil
}

// Store is the bucket.
type Store struct {
	obs jetstream.ObjectStore
}

// Open binds to the bucket, which Setup created.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	obs, err := js.ObjectStore(ctx, Bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s (run the setup step first): %w", Bucket, err)
	}
	return &Store{obs: obs}, nil
}

// Meta describes a snapshot in the bucket.
type Meta struct {
	Name string
	// Seq is the last stream sequence the snapshot's view applied.
	Seq uint64
	// Stream is the tag of the stream it was taken of.
	Stream uint64
	// Format is the view's format version (badgerstore.FormatVersion).
	Format int
	// Size in bytes; Taken is when it was stored.
	Size  uint64
	Taken time.Time
}

const namePrefix = "view-"

func name(seq uint64) string { return fmt.Sprintf("%s%020d", namePrefix, seq) }

// List returns the snapshots in the bucket, newest (highest sequence)
// first. Objects that are not snapshots are left out.
func (s *Store) List(ctx context.Context) ([]Meta, error) {
	infos, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []Meta
	for _, in := range infos {
		if in.Deleted || !strings.HasPrefix(in.Name, namePrefix) {
			continue
		}
		m := Meta{Name: in.Name, Size: in.Size, Taken: in.ModTime}
		var errs [3]error
		m.Seq, errs[0] = strconv.ParseUint(in.Metadata["seq"], 10, 64)
		m.Stream, errs[1] = strconv.ParseUint(in.Metadata["stream"], 10, 64)
		m.Format, errs[2] = strconv.Atoi(in.Metadata["view-format"])
		if errors.Join(errs[:]...) != nil {
			continue
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Meta) int { return -cmpUint(a.Seq, b.Seq) })
	return out, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Put writes a snapshot of view, taken of the stream tagged stream, and
// returns its description. The body streams from the view to the bucket
// without being held in memory.
func (s *Store) Put(ctx context.Context, view *badgerstore.Store, stream uint64) (Meta, error) {
	// The name and metadata need the sequence before the body is read:
	// the snapshot is written to a pipe, whose first bytes (the header)
	// are read here before the object is put.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := view.WriteSnapshot(pw, stream)
		pw.CloseWithError(err)
		done <- err
	}()
	defer func() { pr.Close(); <-done }()
	hdr := make([]byte, badgerstore.SnapshotHeaderLen)
	if _, err := io.ReadFull(pr, hdr); err != nil {
		return Meta{}, fmt.Errorf("snapshot: %w", err)
	}
	seq := badgerstore.SnapshotSeq(hdr)
	if seq == 0 {
		return Meta{}, errors.New("snapshot: the view is empty")
	}
	meta := Meta{Name: name(seq), Seq: seq, Stream: stream, Format: badgerstore.FormatVersion}
	obj, err := s.obs.Put(ctx, jetstream.ObjectMeta{
		Name: meta.Name, Description: "sessionbus view snapshot",
		Metadata: map[string]string{
			"seq": strconv.FormatUint(seq, 10), "stream": strconv.FormatUint(stream, 10),
			"view-format": strconv.Itoa(badgerstore.FormatVersion),
		},
		Opts: &jetstream.ObjectMetaOptions{ChunkSize: 1 << 20},
	}, io.MultiReader(bytes.NewReader(hdr), pr))
	if err != nil {
		return Meta{}, fmt.Errorf("put snapshot %s: %w", meta.Name, err)
	}
	meta.Size, meta.Taken = obj.Size, obj.ModTime
	return meta, nil
}

// Restore builds a new view in dir from the snapshot m (see
// badgerstore.Restore). A snapshot that does not verify, in the Object
// Store's digest or its own, is an error wrapping
// badgerstore.ErrBadSnapshot, and leaves no dir.
func (s *Store) Restore(ctx context.Context, m Meta, dir string, stream uint64) (badgerstore.SnapshotInfo, error) {
	if m.Format < badgerstore.OldestFormat || m.Format > badgerstore.FormatVersion {
		return badgerstore.SnapshotInfo{}, fmt.Errorf("%w: %s is of view format %d, this version reads %d to %d",
			badgerstore.ErrBadSnapshot, m.Name, m.Format, badgerstore.OldestFormat, badgerstore.FormatVersion)
	}
	r, err := s.obs.Get(ctx, m.Name)
	if err != nil {
		return badgerstore.SnapshotInfo{}, fmt.Errorf("get snapshot %s: %w", m.Name, err)
	}
	ra := newReadAhead(r, 1<<20, 16)
	defer func() { r.Close(); ra.wait() }()
	info, err := badgerstore.Restore(dir, ra, stream, nil)
	if err == nil && info.Seq != m.Seq {
		err = fmt.Errorf("%w: %s holds sequence %d", badgerstore.ErrBadSnapshot, m.Name, info.Seq)
	}
	return info, err
}

// Prune deletes every snapshot but the newest keep.
func (s *Store) Prune(ctx context.Context, keep int) error {
	all, err := s.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range all[min(keep, len(all)):] {
		if err := s.obs.Delete(ctx, m.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			errs = append(errs, fmt.Errorf("delete snapshot %s: %w", m.Name, err))
		}
	}
	return errors.Join(errs...)
}

// readAhead reads up to n pieces of size bytes ahead of its reader. The
// Object Store hands chunks over through a synchronous pipe: without it,
// delivery waits for every chunk to be decoded, and decoding for the
// next chunk to arrive.
type readAhead struct {
	full chan []byte
	free chan []byte
	cur  []byte // the unread part of buf
	buf  []byte
	done chan struct{} // closed when the goroutine returns, err set
	err  error
}

func newReadAhead(r io.Reader, size, n int) *readAhead {
	ra := &readAhead{full: make(chan []byte, n), free: make(chan []byte, n+1), done: make(chan struct{})}
	for range n + 1 {
		ra.free <- make([]byte, size)
	}
	go func() {
		defer close(ra.done)
		defer close(ra.full)
		for b := range ra.free {
			k, err := io.ReadFull(r, b)
			if k > 0 {
				ra.full <- b[:k]
			}
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				ra.err = io.EOF
				return
			}
			if err != nil {
				ra.err = err
				return
			}
		}
	}()
	return ra
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.free <- ra.buf
			ra.buf = nil
		}
		b, ok := <-ra.full
		if !ok {
			return 0, ra.err
		}
		ra.cur, ra.buf = b, b[:cap(b)]
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// wait stops the goroutine, whose reader has been closed, and waits for
// it.
func (ra *readAhead) wait() {
	for {
		select {
		case <-ra.done:
			return
		case b, ok := <-ra.full:
			if ok {
				ra.free <- b[:cap(b)] // never blocks: free has room for every buffer
			}
		}
	}
}
