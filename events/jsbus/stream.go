package jsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
)

// StreamConfig configures AUTH_EVENTS.
type StreamConfig struct {
	// Replicas is the number of copies in a cluster: 1 for the embedded
	// server, 3 in production clusters. Default 1.
	Replicas int
	// MaxAge is how long facts are kept. 0 means the default,
	// DefaultMaxAge or MinMaxAge if that is longer: the stream is bounded,
	// and a view can still be rebuilt from it. It may not be shorter than
	// MinMaxAge. History older than that lives in audit archives
	// (sessionbus audit follow --out), not in the stream.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size (0: no bound of its own; the
	// account's or server's JetStream storage bounds it). When it is
	// reached new facts are refused (discard new): facts are never
	// dropped to make room, since views are rebuilt from them. Set it
	// below the server's max_file_store, leaving room for the
	// revocations stream and the buckets; managers keep the last
	// part of it for revocations (node.Config.WriteReserve).
	MaxBytes int64
	// MinMaxAge is the shortest MaxAge allowed: the longest a session can
	// live plus the access-token lifetime, because the stream is what
	// session views are rebuilt from.
	MinMaxAge time.Duration
	// Duplicates is the de-duplication window for Nats-Msg-Id (default
	// DefaultDuplicateWindow). Publishers must be told a shorter one
	// (WithDuplicateWindow).
	Duplicates time.Duration
	// RevocationsMaxAge is how long AUTH_REVOCATIONS keeps a fact
	// (default 24h). It must be longer than a deny-list's lookback
	// (consumers/denylist Config.Lookback, default 15m): a service that
	// starts reads the revocations of its lookback from there.
	RevocationsMaxAge time.Duration
}

// Validate reports every problem with c, joined, each wrapping
// ErrInvalidConfig.
func (c StreamConfig) Validate() error {
	var errs []error
	if c.Replicas < 0 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("%w: replicas %d not in 0..5 (0: the default, 1)", ErrInvalidConfig, c.Replicas))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("%w: negative max age", ErrInvalidConfig))
	}
	if c.MaxAge > 0 && c.MaxAge < c.MinMaxAge {
		errs = append(errs, fmt.Errorf("%w: max age %s is shorter than the session lifetime %s: views could not be rebuilt", ErrInvalidConfig, c.MaxAge, c.MinMaxAge))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("%w: negative max bytes", ErrInvalidConfig))
	}
	if c.Duplicates < 0 {
		errs = append(errs, fmt.Errorf("%w: negative duplicate window", ErrInvalidConfig))
	}
	if c.RevocationsMaxAge < 0 {
		errs = append(errs, fmt.Errorf("%w: negative revocations max age", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

// DefaultMaxAge is how long AUTH_EVENTS keeps facts unless told
// otherwise: the default session lifetime (30 days of absolute timeout,
// plus the access TTL and clock leeway) and a few days to spare. A longer
// session lifetime raises it to that lifetime (StreamConfig.MinMaxAge).
const DefaultMaxAge = 35 * 24 * time.Hour

func (c StreamConfig) withDefaults() StreamConfig {
	if c.MaxAge == 0 {
		c.MaxAge = max(DefaultMaxAge, c.MinMaxAge)
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultDuplicateWindow
	}
	if c.RevocationsMaxAge == 0 {
		c.RevocationsMaxAge = 24 * time.Hour
	}
	return c
}

// JetStreamConfig returns the JetStream configuration of AUTH_EVENTS:
// file storage, bounded by age (and MaxBytes if set), new facts refused
// rather than old ones dropped when the size bound is reached, deletes
// and purges denied so history cannot be rewritten, direct gets allowed
// for fast reads.
func (c StreamConfig) JetStreamConfig() jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        events.StreamName,
		Description: "sessionbus facts: sessions, users, tokens, keys (CloudEvents)",
		Subjects:    []string{events.SubjectAll},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      c.MaxAge,
		MaxBytes:    maxBytes(c.MaxBytes),
		MaxMsgSize:  events.MaxEventSize,
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

func maxBytes(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// RevocationsConfig returns the JetStream configuration of
// AUTH_REVOCATIONS: the revocation and key facts of AUTH_EVENTS, sourced
// from it with their headers, kept for RevocationsMaxAge, read by
// services with direct gets.
func (c StreamConfig) RevocationsConfig() jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        events.RevocationsStreamName,
		Description: "sessionbus revocation and key facts, sourced from " + events.StreamName,
		Sources: []*jetstream.StreamSource{{
			Name: events.StreamName,
			SubjectTransforms: []jetstream.SubjectTransformConfig{
				{Source: events.SubjectRevocations},
				{Source: events.SubjectKeys},
			},
		}},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.RevocationsMaxAge,
		MaxMsgSize:  events.MaxEventSize,
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

// EnsureStream creates AUTH_EVENTS and AUTH_REVOCATIONS, or updates them
// to cfg if they exist. It needs the setup role: the manager may not
// change streams.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := js.CreateOrUpdateStream(ctx, cfg.JetStreamConfig())
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", events.StreamName, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, cfg.RevocationsConfig()); err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", events.RevocationsStreamName, err)
	}
	return s, nil
}
