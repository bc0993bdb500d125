// Package filelock takes an exclusive, advisory lock on a file or a
// directory that lasts until Unlock or the end of the process, whatever
// ends it: flock(2) on Unix, LockFileEx on Windows. A second Acquire of
// the same path, from this process or another, fails at once with ErrLocked
// and an error that names the path.
//
// On Unix the lock on a directory is the lock Badger takes on its
// database directory. On Windows the lock covers one byte far past the
// end of the file, so it keeps other lockers out without blocking reads
// and writes of the file's contents, which Windows locks otherwise do
// (directories are opened with backup semantics; the Windows port is
// built, not run, by the tests). On platforms with neither (Plan 9,
// WebAssembly, AIX), Acquire holds the file open and excludes nothing.
//
// It lives in the events module so that both the manager (data and view
// directories) and the consumers (an audit file being followed) use it.
package filelock
