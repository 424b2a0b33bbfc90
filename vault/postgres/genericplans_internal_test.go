package postgres

// GenericPlansSQL is genericPlansSQL, for the plan tests.
const GenericPlansSQL = genericPlansSQL

// GroupCommittedStatements returns, by name, the statements the group
// commits run after genericPlansSQL in their transactions.
func GroupCommittedStatements() map[string]string {
	return map[string]string{
		"new tokens": insertTokensSQL, "replays": replayTokensSQL, "reads redone": readTokensSQL,
		"reveals": revealTokensSQL, "audit rows": insertAuditRowsSQL, "audit lanes": lockLanesSQL[writerLanes],
		"audit lane": lockLaneSQL[writerLanes], "update locks": lockTokensSQL, "update writes": updateSetSQL,
		"forward locks": lockForwardsSQL, "forward destinations": batchDestinationsSQL,
		"forward writes": writeForwardsSQL,
	}
}
