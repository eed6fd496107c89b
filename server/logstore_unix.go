//go:build unix

package server

import (
	"errors"
	"os"
	"syscall"
)

// lockFree reports whether nobody holds path's bbolt lock (bbolt takes an
// flock on its file), trying it without waiting; a missing file is free.
func lockFree(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
