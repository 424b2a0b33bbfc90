package bench

import (
	"fmt"
	"slices"
	"strings"
)

// AllPhases lists every phase in the order they run.
var AllPhases = []string{PhaseBaselineInsert, PhaseTokenize, PhaseReplay, PhaseUpdate, PhaseBaselineSelect,
	PhaseBaselineAudit, PhaseBaselineHTTP, PhaseReadFloor, PhaseRead, PhaseDetokenize, PhaseForward, PhaseImport, PhaseFileImport}

// needs names the phase whose rows a phase draws from: replays, updates,
// reads, reveals and forwards use tokenize's tokens, and so do the read
// baselines (the vault's own rows, as the reads they are the floor of).
var needs = map[string]string{
	PhaseReplay: PhaseTokenize, PhaseUpdate: PhaseTokenize, PhaseRead: PhaseTokenize,
	PhaseDetokenize: PhaseTokenize, PhaseForward: PhaseTokenize, PhaseBaselineSelect: PhaseTokenize,
	PhaseBaselineAudit: PhaseTokenize, PhaseReadFloor: PhaseTokenize,
}

// selectPhases returns the phases to run for the --phases list names (all
// when empty), with the phases they draw from added, in run order. It
// returns an error naming an unknown phase.
func selectPhases(names []string) (map[string]bool, error) {
	if len(names) == 0 {
		names = AllPhases
	}
	run := make(map[string]bool, len(AllPhases))
	for _, n := range names {
		n = strings.TrimSpace(n)
		if !slices.Contains(AllPhases, n) {
			return nil, fmt.Errorf("--phases: unknown phase %q (phases: %s)", n, strings.Join(AllPhases, ", "))
		}
		run[n] = true
		if dep, ok := needs[n]; ok {
			run[dep] = true
		}
	}
	return run, nil
}
