# Convenience targets; the README's two commands work without make.
.PHONY: serve test bench build

serve:
	go run ./cmd/sessionbus serve

test:
	go test -race ./...

bench:
	go test -run '^$$' -bench . -benchmem ./...

build:
	go build -o bin/ ./cmd/...
