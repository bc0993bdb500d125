package schemas_test

import (
	"io/fs"
	"path"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/schemas"
)

func loadAsyncAPI(t testing.TB) map[string]any {
	t.Helper()
	b, err := schemas.FS.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestAsyncAPIDocument(t *testing.T) {
	doc := loadAsyncAPI(t)
	if doc["asyncapi"] != "3.0.0" {
		t.Fatalf("asyncapi = %v", doc["asyncapi"])
	}
	if s := doc["servers"].(map[string]any)["embedded"].(map[string]any); s["protocol"] != "nats" {
		t.Errorf("server protocol = %v", s["protocol"])
	}
	addresses := map[string]map[string]any{} // address → channel
	for _, c := range doc["channels"].(map[string]any) {
		ch := c.(map[string]any)
		if a, ok := ch["address"].(string); ok {
			addresses[a] = ch
		}
	}
	t.Run("facts", func(t *testing.T) {
		for _, typ := range events.Types() {
			prefix := strings.TrimSuffix(typ.Subject("X"), "X")
			found := false
			for a, ch := range addresses {
				param, ok := strings.CutPrefix(a, prefix)
				if !ok || !strings.HasPrefix(param, "{") || !strings.HasSuffix(param, "}") {
					continue
				}
				found = true
				params, _ := ch["parameters"].(map[string]any)
				if _, ok := params[strings.Trim(param, "{}")]; !ok {
					t.Errorf("%s: parameter %s not declared", a, param)
				}
			}
			if !found {
				t.Errorf("%s: no channel %s{id}", typ, prefix)
			}
		}
		if _, ok := addresses[events.SubjectRevocations]; !ok {
			t.Errorf("no channel %s", events.SubjectRevocations)
		}
	})
	t.Run("commands", func(t *testing.T) {
		for _, subj := range commandSubjects {
			if _, ok := addresses[subj]; !ok {
				t.Errorf("no channel %s", subj)
			}
		}
	})
	t.Run("headers", func(t *testing.T) {
		fh := doc["components"].(map[string]any)["schemas"].(map[string]any)["factHeaders"].(map[string]any)
		props := fh["properties"].(map[string]any)
		for _, h := range []string{events.HeaderSpecVersion, events.HeaderID, events.HeaderType, events.HeaderSource,
			events.HeaderSubject, events.HeaderTime, events.HeaderDataSchema, events.HeaderContentType, events.HeaderMsgID,
			events.HeaderTraceParent, events.HeaderTraceState} {
			if _, ok := props[h]; !ok {
				t.Errorf("fact header %s not described", h)
			}
		}
		ch := doc["components"].(map[string]any)["schemas"].(map[string]any)["commandHeaders"].(map[string]any)["properties"].(map[string]any)
		for _, h := range []string{events.HeaderW3CTraceParent, events.HeaderW3CTraceState} {
			if _, ok := ch[h]; !ok {
				t.Errorf("command header %s not described", h)
			}
		}
	})
	t.Run("references", func(t *testing.T) {
		var refs []string
		collectRefs(doc, &refs)
		if len(refs) == 0 {
			t.Fatal("no $ref")
		}
		files := 0
		for _, ref := range refs {
			file, frag, _ := strings.Cut(ref, "#")
			if file == "" {
				if resolvePointer(doc, frag) == nil {
					t.Errorf("$ref %s does not resolve", ref)
				}
				continue
			}
			files++
			if strings.Contains(file, "://") || path.IsAbs(file) {
				t.Errorf("$ref %s is not relative", ref)
				continue
			}
			if _, err := fs.Stat(schemas.FS, path.Clean(file)); err != nil {
				t.Errorf("$ref %s: %v", ref, err)
			}
		}
		if files != 8+6+5 {
			t.Errorf("%d file references, want one per schema file (19)", files)
		}
	})
}

func collectRefs(v any, refs *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				*refs = append(*refs, s)
				continue
			}
			collectRefs(x, refs)
		}
	case []any:
		for _, x := range v {
			collectRefs(x, refs)
		}
	}
}

// resolvePointer follows a JSON pointer (RFC 6901) in doc, or returns nil.
func resolvePointer(doc any, ptr string) any {
	if ptr == "" {
		return doc
	}
	v := doc
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			v = x[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
		if v == nil {
			return nil
		}
	}
	return v
}
