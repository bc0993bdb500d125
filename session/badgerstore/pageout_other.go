//go:build !linux

package badgerstore

import "errors"

// pageOut reclaims the view's mapped pages on Linux only.
func pageOut(string) (int64, error) { return 0, errors.ErrUnsupported }
