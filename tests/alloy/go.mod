module taskplaner.test/alloycheck

go 1.25.8

require (
	github.com/grafana/alloy/syntax v0.1.0
	github.com/prometheus/common v0.70.1
	github.com/prometheus/prometheus v0.314.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/fatih/color v1.19.0 // indirect
	github.com/grafana/regexp v0.0.0-20250905093917-f7b3be9d1853 // indirect
	github.com/mattn/go-colorable v0.1.15 // indirect
	github.com/mattn/go-isatty v0.0.23 // indirect
	github.com/ohler55/ojg v1.20.1 // indirect
	github.com/prometheus/client_model v0.6.2 // indirect
	golang.org/x/sys v0.47.0 // indirect
	golang.org/x/text v0.40.0 // indirect
	google.golang.org/protobuf v1.36.12-0.20260120151049-f2248ac996af // indirect
)
