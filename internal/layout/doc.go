// Package layout holds the tests of the repository's import rules
// (ARCHITECTURE.md, "Packages and import rules"); it has no code of its own.
package layout
