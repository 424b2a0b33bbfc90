// Package postgres implements the vault's role interfaces over PostgreSQL
// (pgx) and the crypto package, one file per resource with each service
// method next to its SQL. Transactions are the unit of work; dbError (db.go)
// is the one place driver errors become domain errors; concurrent requests
// are group-committed (groupcommit.go); tenant keys are unwrapped once and
// cached (keyring.go).
package postgres
