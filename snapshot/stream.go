package snapshot

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/leasecluster/leasecluster/leasepb"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Write streams s to w in the snapshot format. It validates s with the same
// rules Read applies, so it never writes a file that Read would refuse; on an
// error part of the file may have been written and the caller must discard
// it (raft: SnapshotSink.Cancel).
func Write(w io.Writer, s *Snapshot) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	crc := crc32.New(castagnoli)
	out := io.MultiWriter(bw, crc)
	var head [len(Magic) + 4]byte
	copy(head[:], Magic)
	binary.BigEndian.PutUint32(head[len(Magic):], Version)
	if _, err := out.Write(head[:]); err != nil {
		return fmt.Errorf("snapshot: write header: %w", err)
	}
	var chk checker
	// Deterministic marshalling makes equal state produce equal files.
	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	err := records(s, func(rec *leasepb.SnapshotRecord) error {
		if err := chk.add(rec); err != nil {
			return err
		}
		var err error
		buf = binary.AppendUvarint(buf[:0], uint64(opts.Size(rec)))
		buf, err = opts.MarshalAppend(buf, rec)
		if err != nil {
			return fmt.Errorf("snapshot: encode record: %w", err)
		}
		if _, err := out.Write(buf); err != nil {
			return fmt.Errorf("snapshot: write: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := chk.finish(); err != nil {
		return err
	}
	if _, err := out.Write([]byte{0}); err != nil {
		return fmt.Errorf("snapshot: write: %w", err)
	}
	var trailer [4]byte
	binary.BigEndian.PutUint32(trailer[:], crc.Sum32())
	if _, err := bw.Write(trailer[:]); err != nil {
		return fmt.Errorf("snapshot: write trailer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("snapshot: write: %w", err)
	}
	return nil
}

// Read reads and validates a whole snapshot from r. It returns an error
// wrapping one of the package's sentinels, and no Snapshot, unless the stream
// is complete, intact and consistent.
func Read(r io.Reader) (*Snapshot, error) {
	var c collector
	if _, err := scan(r, c.add); err != nil {
		return nil, err
	}
	return &c.s, nil
}

// Inspect validates a whole snapshot like Read and summarises it.
func Inspect(r io.Reader) (Summary, error) {
	var sum Summary
	res, err := scan(r, func(rec *leasepb.SnapshotRecord) {
		switch x := rec.Record.(type) {
		case *leasepb.SnapshotRecord_Header:
			sum.Index, sum.Term = x.Header.Index, x.Header.Term
			sum.Restore = restoreInfo(x.Header.Restore)
		case *leasepb.SnapshotRecord_Lease:
			sum.Leases++
			if x.Lease.RemainingMs > 0 {
				sum.Checkpoints++
			}
		case *leasepb.SnapshotRecord_Item:
			sum.Items++
			sum.ValueBytes += int64(len(x.Item.Value))
		case *leasepb.SnapshotRecord_Dedupe:
			sum.Dedupe++
		}
	})
	if err != nil {
		return Summary{}, err
	}
	sum.Version, sum.Size, sum.Checksum = Version, res.size, res.crc
	return sum, nil
}

// crcReader reads through a bufio.Reader and feeds every byte it returns to
// a checksum, counting them.
type crcReader struct {
	br  *bufio.Reader
	crc hash.Hash32
	n   int64
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	c.crc.Write(p[:n])
	c.n += int64(n)
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
		c.n++
	}
	return b, err
}

// full reads exactly len(p) bytes, reporting a short stream as ErrTruncated.
func (c *crcReader) full(p []byte, what string) error {
	if _, err := io.ReadFull(c, p); err != nil {
		return ioErr(err, c.n, what)
	}
	return nil
}

func ioErr(err error, off int64, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: stream ends at byte %d inside the %s", ErrTruncated, off, what)
	}
	return fmt.Errorf("snapshot: read %s at byte %d: %w", what, off, err)
}

type scanResult struct {
	size int64
	crc  uint32
}

// scan validates the stream and hands each record to visit. Records are
// only trusted once the checksum has verified, so visit must not act on
// them beyond collecting: scan's caller discards everything on an error.
func scan(r io.Reader, visit func(*leasepb.SnapshotRecord)) (scanResult, error) {
	cr := &crcReader{br: bufio.NewReaderSize(r, 64<<10), crc: crc32.New(castagnoli)}
	var head [len(Magic) + 4]byte
	if err := cr.full(head[:], "file header"); err != nil {
		return scanResult{}, err
	}
	if string(head[:len(Magic)]) != Magic {
		return scanResult{}, ErrBadMagic
	}
	if v := binary.BigEndian.Uint32(head[len(Magic):]); v != Version {
		return scanResult{}, fmt.Errorf("%w: %d (this build reads %d)", ErrUnsupportedVersion, v, Version)
	}
	var (
		chk checker
		buf bytes.Buffer
	)
	for {
		at := cr.n
		n, err := binary.ReadUvarint(cr)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return scanResult{}, ioErr(err, cr.n, "record length")
			}
			return scanResult{}, fmt.Errorf("%w: bad record length at byte %d: %v", ErrCorrupt, at, err)
		}
		if n == 0 {
			break // end of records
		}
		if n > MaxRecordSize {
			return scanResult{}, fmt.Errorf("%w: record at byte %d claims %d bytes (limit %d)", ErrCorrupt, at, n, MaxRecordSize)
		}
		// Grow the buffer as bytes arrive rather than trusting the length:
		// a corrupt length on a short stream then costs nothing.
		buf.Reset()
		got, err := buf.ReadFrom(io.LimitReader(cr, int64(n)))
		if err != nil {
			return scanResult{}, ioErr(err, cr.n, "record")
		}
		if got != int64(n) {
			return scanResult{}, ioErr(io.ErrUnexpectedEOF, cr.n, "record")
		}
		rec := new(leasepb.SnapshotRecord)
		if err := proto.Unmarshal(buf.Bytes(), rec); err != nil {
			return scanResult{}, fmt.Errorf("%w: record at byte %d: %v", ErrCorrupt, at, err)
		}
		if hasUnknown(rec) {
			return scanResult{}, fmt.Errorf("%w: record at byte %d has unknown fields", ErrCorrupt, at)
		}
		if err := chk.add(rec); err != nil {
			return scanResult{}, fmt.Errorf("record at byte %d: %w", at, err)
		}
		visit(rec)
	}
	sum := cr.crc.Sum32()
	var trailer [4]byte
	if _, err := io.ReadFull(cr.br, trailer[:]); err != nil {
		return scanResult{}, ioErr(err, cr.n, "trailer")
	}
	if got := binary.BigEndian.Uint32(trailer[:]); got != sum {
		return scanResult{}, fmt.Errorf("%w: trailer says %08x, contents hash to %08x", ErrChecksum, got, sum)
	}
	if _, err := cr.br.ReadByte(); err != io.EOF {
		if err != nil {
			return scanResult{}, fmt.Errorf("snapshot: read after trailer: %w", err)
		}
		return scanResult{}, fmt.Errorf("%w: data after the trailer", ErrCorrupt)
	}
	if err := chk.finish(); err != nil {
		return scanResult{}, err
	}
	return scanResult{size: cr.n + 4, crc: sum}, nil
}

// hasUnknown reports fields this build does not know in a record or in the
// message it holds: a field a newer writer added (as the lease's owner once
// was) must not be dropped silently, which would restore a different state.
func hasUnknown(rec *leasepb.SnapshotRecord) bool {
	if len(rec.ProtoReflect().GetUnknown()) > 0 {
		return true
	}
	var m proto.Message
	switch r := rec.Record.(type) {
	case *leasepb.SnapshotRecord_Header:
		m = r.Header
		if rs := r.Header.GetRestore(); rs != nil && len(rs.ProtoReflect().GetUnknown()) > 0 {
			return true
		}
	case *leasepb.SnapshotRecord_Lease:
		m = r.Lease
	case *leasepb.SnapshotRecord_Item:
		m = r.Item
	case *leasepb.SnapshotRecord_Dedupe:
		m = r.Dedupe
	}
	return m != nil && len(m.ProtoReflect().GetUnknown()) > 0
}
