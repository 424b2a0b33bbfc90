package vaulttest

import "flag"

// fuzzingOnly reports whether the test binary was started only to fuzz: a
// -test.fuzz target with -test.run '^$', as `make fuzz` runs it (Go starts
// each fuzz worker with the same flags). No test runs then, only the fuzz
// target, and fuzz targets never use the database, so Main makes none: a
// private PostgreSQL server per fuzz process would cost seconds each.
func fuzzingOnly() bool {
	if !flag.Parsed() {
		flag.Parse()
	}
	fuzz, run := flag.Lookup("test.fuzz"), flag.Lookup("test.run")
	return fuzz != nil && run != nil && fuzz.Value.String() != "" && run.Value.String() == "^$"
}
