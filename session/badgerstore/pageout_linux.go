//go:build linux

package badgerstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// pageOut asks the kernel to reclaim the pages of dir's files that this
// process has mapped (Badger maps its table and value log files and never
// lets go of the pages it touched: a compaction reads every page of the
// tables it merges and writes every page of the ones it builds). The
// ranges come from /proc/self/maps; MADV_PAGEOUT never changes what a
// range holds, so a range that Badger unmapped, and the runtime mapped
// again for something else, in between comes to no harm. The data stays
// in the files: the next read of a page reads it again. It returns the
// bytes of the ranges it advised, and errors.ErrUnsupported if the kernel
// has no MADV_PAGEOUT (before Linux 5.4).
func pageOut(dir string) (int64, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return 0, err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	prefix := []byte(dir + string(filepath.Separator))
	var advised int64
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 || !bytes.HasPrefix(f[5], prefix) {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT)
		switch errno {
		case 0:
			advised += int64(end - start)
		case unix.EINVAL:
			if advised == 0 {
				return 0, fmt.Errorf("madvise(MADV_PAGEOUT): %w", errors.ErrUnsupported)
			}
		case unix.ENOMEM: // unmapped since /proc/self/maps was read
		default:
			return advised, fmt.Errorf("madvise(MADV_PAGEOUT): %w", errno)
		}
	}
	return advised, sc.Err()
}
