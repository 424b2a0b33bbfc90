package metrics_test

import (
	"os/exec"
	"testing"

	"github.com/cardvault/cardvault/internal/metrics/metricstest"
)

// alertRules is the rules file the operations guide ships.
const alertRules = "../../docs/alerts.yml"

func TestAlertRulesPassPromtool(t *testing.T) {
	metricstest.CheckRules(t, alertRules)
}

// TestAlertRulesFireWhenTheyShould runs promtool's rule unit tests
// (testdata/alerts_test.yml): each alert fires on the series that mean
// trouble and stays quiet on healthy ones.
func TestAlertRulesFireWhenTheyShould(t *testing.T) {
	out, err := exec.Command(metricstest.Promtool(t), "test", "rules", "testdata/alerts_test.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
