package schemas

import (
	"bytes"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compiled holds every schema in FS, compiled once on first use: the files
// never change, so sharing the read-only result is safe.
var compiled = sync.OnceValues(compileAll)

func compileAll() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// Formats are annotations by default in 2020-12; a bad date-time must
	// fail.
	c.AssertFormat()
	// Only the embedded files may be referenced: never fetch a URL.
	c.UseLoader(noLoader{})
	var paths []string
	err := fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		b, err := FS.ReadFile(path)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := c.AddResource(Base+path, doc); err != nil {
			return err
		}
		paths = append(paths, path)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load schemas: %w", err)
	}
	set := make(map[string]*jsonschema.Schema, len(paths))
	for _, p := range paths {
		s, err := c.Compile(Base + p)
		if err != nil {
			return nil, fmt.Errorf("compile schemas: %w", err)
		}
		set[p] = s
	}
	return set, nil
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schemas: no embedded schema at %s", url)
}

// ValidateEvent checks the data of a fact of the given CloudEvent type
// against its schema. It returns ErrUnknownSchema for a type without one
// and ErrInvalid for data that is not JSON or does not match.
func ValidateEvent(eventType string, data []byte) error {
	path, ok := eventFiles[eventType]
	if !ok {
		return fmt.Errorf("%w: event type %q", ErrUnknownSchema, eventType)
	}
	return validate(path, data)
}

// ValidateCommandRequest checks the data of a command request sent on
// subject. Empty data counts as JSON null, which only the JWKS request
// accepts. It returns ErrUnknownSchema for a subject that is not a command
// and ErrInvalid for data that is not JSON or does not match.
func ValidateCommandRequest(subject string, data []byte) error {
	f, ok := commandFiles[subject]
	if !ok {
		return fmt.Errorf("%w: command %q", ErrUnknownSchema, subject)
	}
	return validate(f.request, data)
}

// ValidateCommandReply checks the body of a successful reply to a command
// sent on subject. It returns ErrUnknownSchema for a subject that is not a
// command and ErrInvalid for a body that is not JSON or does not match.
func ValidateCommandReply(subject string, data []byte) error {
	f, ok := commandFiles[subject]
	if !ok {
		return fmt.Errorf("%w: command %q", ErrUnknownSchema, subject)
	}
	return validate(f.reply, data)
}

// ValidateErrorReply checks the body of a command's error reply. It
// returns ErrInvalid for a body that is not JSON or does not match.
func ValidateErrorReply(data []byte) error {
	return validate(errorFile, data)
}

func validate(path string, data []byte) error {
	set, err := compiled()
	if err != nil {
		return err
	}
	var v any // empty data stays nil: JSON null
	if len(bytes.TrimSpace(data)) > 0 {
		v, err = jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%w: %s: not JSON: %v", ErrInvalid, path, err)
		}
	}
	if err := set[path].Validate(v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err) // names the schema
	}
	return nil
}
