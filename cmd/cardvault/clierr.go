package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/vault"
)

// actionError is an error a person at the terminal can act on: it names
// what is wrong and the command to run next. Its cause stays reachable
// through errors.Is and errors.As.
type actionError struct {
	msg   string
	cause error
}

func (e *actionError) Error() string { return e.msg }
func (e *actionError) Unwrap() error { return e.cause }

// actionf returns an actionError with a formatted message; cause may be nil.
func actionf(cause error, format string, args ...any) error {
	return &actionError{msg: fmt.Sprintf(format, args...), cause: cause}
}

// ranError marks an error a command returned while running, as opposed to
// a usage error cobra found in the command line.
type ranError struct{ err error }

func (e *ranError) Error() string { return e.err.Error() }
func (e *ranError) Unwrap() error { return e.err }

// markRunErrors wraps the RunE of c and of every command below it, so
// that their errors are worded for a person and told apart from usage
// errors.
func markRunErrors(c *cobra.Command) {
	for _, sub := range c.Commands() {
		markRunErrors(sub)
	}
	if c.RunE == nil {
		return
	}
	run := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := run(cmd, args); err != nil {
			return &ranError{err: humanize(err)}
		}
		return nil
	}
}

// errorLine returns what the process prints for err, the error of cmd: a
// usage error also points at the command's help.
func errorLine(cmd *cobra.Command, err error) string {
	if errors.As(err, new(*ranError)) {
		return err.Error()
	}
	msg := strings.TrimSpace(err.Error())
	if first, suggestions, ok := strings.Cut(msg, "\n\nDid you mean this?\n"); ok { // cobra's unknown command
		msg = fmt.Sprintf("%s; did you mean `%s %s`?", first, cmd.CommandPath(), strings.Join(strings.Fields(suggestions), "` or `"+cmd.CommandPath()+" "))
	}
	return fmt.Sprintf("%s (see `%s --help`)", msg, cmd.CommandPath())
}

// humanize rewords the vault error inside err, if any, as its message
// alone, without the code and database cause ("resource_missing: …: no rows
// in result set"). An unavailable dependency or an internal failure keeps
// its code and cause, which say what to look at; an actionError or any
// other error is kept as it is.
func humanize(err error) error {
	var ve *vault.Error
	if errors.As(err, new(*actionError)) || !errors.As(err, &ve) ||
		ve.Kind == vault.KindUnavailable || ve.Kind == vault.KindInternal {
		return err
	}
	return &actionError{msg: strings.Replace(err.Error(), ve.Error(), ve.Message, 1), cause: err}
}

// parseTenantID parses a --tenant value; the error says where tenant ids
// come from.
func parseTenantID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, actionf(nil, "%q is not a tenant id; list them with `cardvault tenant list`", s)
	}
	return id, nil
}

// errNoTenant says that no live tenant has id and how to list them.
func errNoTenant(id uuid.UUID, cause error) error {
	return actionf(cause, "no tenant %s; list them with `cardvault tenant list`", id)
}

// ifNotFound returns replacement when err is the vault's KindNotFound, and
// err otherwise.
func ifNotFound(err, replacement error) error {
	if vault.ErrorKind(err) == vault.KindNotFound {
		return replacement
	}
	return err
}
