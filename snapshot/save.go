package snapshot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// SaveFile writes a snapshot to path atomically: fill writes the bytes into
// a temporary file beside path, which is synced, validated in full (Inspect:
// every record, the counts and the checksum), and only then renamed over
// path, and the directory synced. On any error the temporary file is
// removed and path is left as it was.
func SaveFile(path string, fill func(io.Writer) error) (_ Summary, err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return Summary{}, fmt.Errorf("snapshot: save: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := fill(bw); err != nil {
		return Summary{}, err
	}
	if err := bw.Flush(); err != nil {
		return Summary{}, fmt.Errorf("snapshot: save: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return Summary{}, fmt.Errorf("snapshot: save: sync: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return Summary{}, fmt.Errorf("snapshot: save: %w", err)
	}
	sum, err := Inspect(tmp)
	if err != nil {
		return Summary{}, fmt.Errorf("snapshot: save: the received snapshot is not valid, nothing kept: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Summary{}, fmt.Errorf("snapshot: save: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Summary{}, fmt.Errorf("snapshot: save: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return sum, fmt.Errorf("snapshot: save: the file is in place, but syncing its directory failed: %w", err)
	}
	return sum, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, os.ErrInvalid) { // some platforms cannot sync a directory
		return nil
	}
	return err
}

// ReadFile reads and validates the snapshot file at path (a snapshot
// directory is taken as its state.bin) and summarises it.
func ReadFile(path string) (*Snapshot, Summary, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "state.bin")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, Summary{}, err
	}
	defer f.Close()
	sum, err := Inspect(f)
	if err != nil {
		return nil, Summary{}, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, Summary{}, err
	}
	s, err := Read(f)
	if err != nil {
		return nil, Summary{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, sum, nil
}
