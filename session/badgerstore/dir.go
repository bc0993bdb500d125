package badgerstore

import (
	"os"
	"path/filepath"
	"time"
)

// Files of a view directory besides Badger's own: the marker Open writes
// so that a directory can be recognised as a view, and the mark of a
// corruption found while running.
const (
	markerView    = "SESSIONBUS_VIEW"
	markerCorrupt = "CORRUPT"
)

// markCorrupt records in the view directory why it is corrupt, so that
// the next Open refuses it.
func markCorrupt(dir string, why error) error {
	return os.WriteFile(filepath.Join(dir, markerCorrupt),
		[]byte(time.Now().UTC().Format(time.RFC3339)+" "+why.Error()+"\n"), 0o600)
}
