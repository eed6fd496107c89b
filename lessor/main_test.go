package lessor

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine running: every
// lessor a test creates must be stopped (STYLE.md: goleak in tests of
// packages that start goroutines).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
