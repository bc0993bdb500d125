package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session/badgerstore"
	"github.com/sessionbus/sessionbus/session/snapstore"
)

// SnapshotConfig says when a manager writes a snapshot of its view to
// the snapshot bucket (package snapstore). A manager starts from the
// newest snapshot that verifies whatever this says; with neither
// Interval nor Facts set (the zero value) it writes none.
type SnapshotConfig struct {
	// Interval: a snapshot is written once the newest one in the bucket
	// is this old and the view has moved past it (0: never by time).
	Interval time.Duration
	// Facts: a snapshot is written as soon as the view is this many
	// facts past the newest one (0: never by count).
	Facts uint64
	// Keep is how many snapshots stay (default snapstore.DefaultKeep).
	Keep int
}

// DefaultSnapshotInterval and DefaultSnapshotFacts are serve's defaults.
const (
	DefaultSnapshotInterval = time.Hour
	DefaultSnapshotFacts    = 100_000
)

// restoreAhead is how far a snapshot must be ahead of a view that has
// facts for the manager to start from it rather than from its own view.
const restoreAhead = DefaultSnapshotFacts

// snapshotRest bounds the share of a manager's time spent writing
// snapshots to about a tenth: after a write that took d, the next one
// starts no sooner than snapshotRest*d later. A write costs what the
// view's size does, so on a large view with a high fact rate the tail a
// new manager replays grows instead of the CPU the commands need
// shrinking. (Tests set it to 0.)
var snapshotRest = 9

// restoreTimeout bounds reading one snapshot.
const restoreTimeout = 10 * time.Minute

// ErrHistoryGone is returned by Start when the stream no longer holds
// facts the view needs: its first fact comes after the sequence the view
// (local or restored from a snapshot) covers, and the stream does not
// guarantee that it dropped only facts older than the session lifetime.
var ErrHistoryGone = errors.New("the stream no longer holds facts the view needs")

type snapshotMetrics struct {
	writes, restores *prometheus.CounterVec
	seq              prometheus.Gauge
}

func newSnapshotMetrics(reg prometheus.Registerer) (*snapshotMetrics, error) {
	m := &snapshotMetrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sessionbus", Name: "snapshot_writes_total",
			Help: "View snapshots written to the bucket, by result (ok, error)."}, []string{"result"}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sessionbus", Name: "snapshot_restores_total",
			Help: "View snapshots tried at start, by result (ok; rejected: did not verify or does not fit the stream; error)."}, []string{"result"}),
		seq: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "sessionbus", Name: "snapshot_sequence",
			Help: "Stream sequence of the last snapshot this manager wrote or started from."}),
	}
	if err := errors.Join(reg.Register(m.writes), reg.Register(m.restores), reg.Register(m.seq)); err != nil {
		return nil, fmt.Errorf("node: metrics: %w", err)
	}
	return m, nil
}

// streamTag identifies the stream a snapshot was taken of: a stream
// deleted and created again, with sequences starting anew, has another.
func streamTag(info *jetstream.StreamInfo) uint64 { return uint64(info.Created.UnixNano()) }

// firstSeq is the first sequence the stream still holds (the next one to
// come if it holds none).
func firstSeq(info *jetstream.StreamInfo) uint64 {
	if info.State.Msgs == 0 {
		return info.State.LastSeq + 1
	}
	return info.State.FirstSeq
}

// openSnapshots binds to the snapshot bucket; without one (the setup
// step of an older version) the manager runs without snapshots.
func openSnapshots(ctx context.Context, js jetstream.JetStream, cfg Config) *snapstore.Store {
	snaps, err := snapstore.Open(ctx, js)
	if err != nil {
		cfg.Logger.Warn("no view snapshots: the view is rebuilt from the whole stream; run the setup step to create the bucket", "err", err)
		return nil
	}
	return snaps
}

// restoreView replaces view with the newest snapshot that verifies and
// fits the stream, if view is empty, that snapshot is far ahead of it, or
// the stream no longer holds the facts right after view.
// A snapshot that does not verify is logged, counted and passed over for
// the next older one, and at last for view as it is (a full replay when
// it is empty). It returns the view to use; nil only with an error after
// view was closed.
func restoreView(ctx context.Context, cfg Config, view *badgerstore.Store, snaps *snapstore.Store, info *jetstream.StreamInfo, m *snapshotMetrics) (*badgerstore.Store, error) {
	log := cfg.Logger
	local := view.AppliedSeq()
	list, err := snaps.List(ctx)
	if err != nil {
		log.Warn("view snapshots not read: replaying the stream", "err", err)
		return view, nil
	}
	tmp := cfg.ViewDir + ".snapshot"
	for _, s := range list {
		if local > 0 && s.Seq <= local+restoreAhead && local+1 >= firstSeq(info) {
			break // the local view is as good, and whole
		}
		if s.Seq > info.State.LastSeq || s.Seq+1 < firstSeq(info) {
			log.Error("view snapshot passed over: it does not fit the stream", "snapshot", s.Name, "seq", s.Seq,
				"stream_first_seq", firstSeq(info), "stream_last_seq", info.State.LastSeq)
			m.restores.WithLabelValues("rejected").Inc()
			continue
		}
		if err := badgerstore.Remove(tmp); err != nil {
			return view, fmt.Errorf("restore view: %w", err)
		}
		start := time.Now()
		// Not bounded by the caller's deadline, which is sized for the
		// other steps of Start (serve retries Start every 30 s).
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoreTimeout)
		got, err := snaps.Restore(sctx, s, tmp, streamTag(info))
		cancel()
		if err != nil {
			result := "error"
			if errors.Is(err, badgerstore.ErrBadSnapshot) {
				result = "rejected"
			}
			log.Error("view snapshot passed over", "snapshot", s.Name, "result", result, "err", err)
			m.restores.WithLabelValues(result).Inc()
			continue
		}
		if err := view.Close(); err != nil {
			return nil, fmt.Errorf("restore view: %w", err)
		}
		if err := badgerstore.Remove(cfg.ViewDir); err != nil {
			return nil, fmt.Errorf("restore view: %w", err)
		}
		if err := os.Rename(tmp, cfg.ViewDir); err != nil {
			return nil, fmt.Errorf("restore view: %w", err)
		}
		view, err := badgerstore.Open(cfg.ViewDir, badgerstore.Options{Logger: log, TracerProvider: cfg.TracerProvider})
		if err != nil {
			return nil, err
		}
		log.Info("view restored from a snapshot", "snapshot", s.Name, "seq", got.Seq, "records", got.Records,
			"bytes", s.Size, "took", time.Since(start).Round(time.Millisecond))
		m.restores.WithLabelValues("ok").Inc()
		m.seq.Set(float64(got.Seq))
		return view, nil
	}
	return view, nil
}

// checkCoverage refuses a view at sequence applied that cannot follow
// the stream: the facts right after it are gone, and the stream's
// configuration does not guarantee that it dropped only facts older than
// the session lifetime (which no view needs).
func checkCoverage(info *jetstream.StreamInfo, applied uint64, lifetime time.Duration) error {
	first := firstSeq(info)
	if first <= applied+1 {
		return nil
	}
	c := info.Config
	if c.MaxAge >= lifetime && c.DenyDelete && c.DenyPurge && c.Discard == jetstream.DiscardNew && c.MaxMsgs <= 0 && c.MaxMsgsPerSubject <= 0 {
		return nil
	}
	return fmt.Errorf("%w: %s starts at sequence %d, but the view and the snapshots cover only up to %d; restore %s from a backup",
		ErrHistoryGone, events.StreamName, first, applied, events.StreamName)
}

// runSnapshots writes snapshots of the view as SnapshotConfig says, once
// the view has caught up, until ctx ends. Several managers may run it:
// each looks at the newest snapshot in the bucket before it writes, a
// snapshot is named after its sequence (two of one sequence hold the
// same view: the last written stays), and pruning keeps the newest.
func (n *Node) runSnapshots(ctx context.Context, snaps *snapstore.Store, tag uint64, m *snapshotMetrics) error {
	c := n.cfg.Snapshots
	keep := c.Keep
	if keep <= 0 {
		keep = snapstore.DefaultKeep
	}
	now := n.cfg.Now
	if now == nil {
		now = time.Now
	}
	select {
	case <-n.readyCh:
	case <-ctx.Done():
		return nil
	}
	for {
		var newest snapstore.Meta
		list, err := snaps.List(ctx)
		if err == nil && len(list) > 0 {
			newest = list[0]
		}
		applied := n.view.AppliedSeq()
		due := applied > newest.Seq &&
			(c.Facts > 0 && applied >= newest.Seq+c.Facts || c.Interval > 0 && now().Sub(newest.Taken) >= c.Interval)
		if err != nil {
			n.log.Warn("view snapshots not read", "err", err)
		} else if due {
			start := time.Now()
			s, err := snaps.Put(ctx, n.view, tag)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				n.log.Error("view snapshot not written", "err", err)
				m.writes.WithLabelValues("error").Inc()
			} else {
				took := time.Since(start)
				n.log.Info("view snapshot written", "snapshot", s.Name, "seq", s.Seq, "bytes", s.Size, "took", took.Round(time.Millisecond))
				m.writes.WithLabelValues("ok").Inc()
				m.seq.Set(float64(s.Seq))
				newest = s
				if err := snaps.Prune(ctx, keep); err != nil && ctx.Err() == nil {
					n.log.Warn("old view snapshots not deleted", "err", err)
				}
				if !sleep(ctx, time.Duration(snapshotRest)*took) {
					return nil
				}
			}
		}
		// Look again after Interval, or as soon as the view is Facts past
		// the newest snapshot.
		wait := c.Interval
		if wait <= 0 {
			wait = DefaultSnapshotInterval
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		if c.Facts > 0 && err == nil {
			target := newest.Seq + c.Facts
			if target <= applied { // a write that failed: not before more facts
				target = applied + c.Facts
			}
			_ = n.view.WaitApplied(wctx, target)
		} else {
			<-wctx.Done()
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
