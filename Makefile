# Convenience targets; the README's two commands work without make.
.PHONY: serve test bench build

serve:
	go run ./cmd/sessionbus serve

test:
	go test -race ./... ./events/... ./consumers/...

bench:
	go test -run '^$$' -bench . -benchmem ./... ./events/... ./consumers/...

build:
	go build -o bin/ ./cmd/...
