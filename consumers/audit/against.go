package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// maxListed bounds the discrepancies a comparison names one by one.
const maxListed = 10

// fileLines iterates over the complete lines of a chain's files in order.
type fileLines struct {
	files []chainFile
	i     int
	f     *os.File
	lr    *lineReader
	n     int64 // line number in the current file
}

type fileLine struct {
	path string
	n    int64
	l    *Line
}

func (fl *fileLines) next() (*fileLine, error) {
	for {
		if fl.lr == nil {
			if fl.i >= len(fl.files) {
				return nil, io.EOF
			}
			cf := fl.files[fl.i]
			fl.i++
			if cf.empty {
				continue
			}
			f, err := os.Open(cf.path)
			if err != nil {
				return nil, err
			}
			fl.f, fl.lr, fl.n = f, newLineReader(f), 0
		}
		raw, complete, err := fl.lr.next()
		if errors.Is(err, io.EOF) || (err == nil && !complete) {
			fl.close()
			continue
		}
		if err != nil {
			return nil, err
		}
		fl.n++
		l, err := ParseLine(bytes.Clone(raw))
		if err != nil {
			return nil, err // Verify has read these lines already
		}
		return &fileLine{path: fl.f.Name(), n: fl.n, l: l}, nil
	}
}

func (fl *fileLines) close() {
	if fl.f != nil {
		fl.f.Close()
	}
	fl.f, fl.lr = nil, nil
}

// compareStream reads the stream over the range of the verified files
// with the chain's filter and matches message and line one by one.
func compareStream(ctx context.Context, js jetstream.JetStream, files []chainFile, head *Head, rep *Report, complete bool) error {
	stream, err := js.Stream(ctx, head.Stream)
	if err != nil {
		return fmt.Errorf("against stream: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("against stream: %w", err)
	}
	streamFirst := info.State.FirstSeq
	end := rep.LastSeq
	if info.State.LastSeq > rep.LastSeq {
		rep.StreamNewer = info.State.LastSeq - rep.LastSeq
		if complete {
			end = info.State.LastSeq
		} else {
			rep.Notes = append(rep.Notes, fmt.Sprintf("the stream has sequences %d to %d after the files' last line: not in the files (yet)", rep.LastSeq+1, info.State.LastSeq))
		}
	}
	if end == 0 {
		return nil
	}
	r := &Replayer{js: js, cfg: ReplayConfig{Filter: head.Filter, Stream: head.Stream}}
	if r.cfg.Filter.FromSeq == 0 && r.cfg.Filter.Since.IsZero() {
		r.cfg.Filter.FromSeq = 1
	}
	batches := make(chan *batch, 4)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var rerr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(batches)
		rerr = r.read(rctx, stream, end, batches)
	})
	defer wg.Wait()
	defer func() {
		cancel()
		for b := range batches {
			batchPool.Put(b)
		}
	}()

	fl := &fileLines{files: files}
	defer fl.close()
	var missing, differ []string
	var nMissing, nDiffer int64
	note := func(list *[]string, count *int64, format string, a ...any) {
		*count++
		if len(*list) < maxListed {
			*list = append(*list, fmt.Sprintf(format, a...))
		}
	}
	cur, err := fl.next()
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	// fileOnly accounts for a line whose sequence the stream did not give.
	fileOnly := func(c *fileLine) {
		switch {
		case c.l.IsGap():
		case c.l.Seq < streamFirst:
			rep.StreamAgedOut++
		default:
			note(&differ, &nDiffer, "%s:%d: sequence %d is not on the stream", c.path, c.n, c.l.Seq)
		}
	}
	var line []byte
	for b := range batches {
		from := 0
		for _, rec := range b.recs {
			body := b.buf[from:rec.end]
			from = rec.end
			for cur != nil && cur.l.Seq < rec.seq {
				fileOnly(cur)
				if cur, err = fl.next(); err != nil && !errors.Is(err, io.EOF) {
					return err
				}
			}
			switch {
			case cur == nil || cur.l.FirstSeq > rec.seq:
				note(&missing, &nMissing, "sequence %d is on the stream but not in the files", rec.seq)
				continue
			case cur.l.IsGap():
				note(&missing, &nMissing, "%s:%d: sequence %d is on the stream but this gap line says it was not", cur.path, cur.n, rec.seq)
				continue
			}
			var part *uint64
			if cur.l.Head != nil {
				part = &cur.l.Head.Part
			}
			line, _ = completeLine(line[:0], body, head.Stream, part, head.RawFilter, []byte(cur.l.PrevHash))
			if !bytes.Equal(line[:len(line)-1], cur.l.Raw) {
				note(&differ, &nDiffer, "%s:%d: sequence %d differs from the stream's message", cur.path, cur.n, rec.seq)
			} else {
				rep.StreamChecked++
			}
			if cur, err = fl.next(); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
		}
		batchPool.Put(b)
	}
	for cur != nil {
		fileOnly(cur)
		if cur, err = fl.next(); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	if rerr != nil {
		return fmt.Errorf("against stream: %w", rerr)
	}
	if rep.StreamAgedOut > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d lines are no longer on the stream (aged out before sequence %d): not compared", rep.StreamAgedOut, streamFirst))
	}
	var errs []error
	if nMissing > 0 {
		errs = append(errs, fmt.Errorf("%w: %d, first: %v", ErrMissing, nMissing, missing))
	}
	if nDiffer > 0 {
		errs = append(errs, fmt.Errorf("%w: %d lines, first: %v", ErrMismatch, nDiffer, differ))
	}
	return errors.Join(errs...)
}
