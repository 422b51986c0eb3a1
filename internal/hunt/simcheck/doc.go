// Package simcheck holds an acceptance test only: the shipped example hunts
// (examples/hunts) run through hunt.Runner against the local simulator's
// MDE advancedqueries and Graph runHuntingQuery endpoints. It is a separate
// package so that a change in the simulator's API cannot break the hunt
// package's own tests.
package simcheck
