package hunt_test

import (
	"fmt"
	"time"

	"github.com/mdeflow/mdeflow/internal/hunt"
)

// The MDE advancedqueries API has no timespan: the period goes into the
// query, after every source table.
func ExampleScopeQuery() {
	q := "DeviceLogonEvents | join kind=inner DeviceInfo on DeviceId"
	fmt.Println(hunt.ScopeQuery(q, time.Hour))
	// Output:
	// DeviceLogonEvents | where Timestamp > ago(1h) | join kind=inner (DeviceInfo | where Timestamp > ago(1h)) on DeviceId
}

// Graph runHuntingQuery takes the period as an ISO-8601 Timespan.
func ExampleISODuration() {
	fmt.Println(hunt.ISODuration(24*time.Hour), hunt.ISODuration(90*time.Minute))
	// Output: P1D PT1H30M
}

func ExampleCheck() {
	h := hunt.Hunt{
		ID: "log4j", Query: "AlertInfo | where Title has 'Log4j'",
		Frequency: time.Hour, Period: time.Hour,
	}
	for _, p := range hunt.Check(h, hunt.APIMDE) {
		fmt.Println(p)
	}
	fmt.Println(hunt.RunnableVia(h))
	// Output:
	// error: table AlertInfo is not available through the MDE advancedqueries API, only through Graph runHuntingQuery or XDR advancedhunting
	// [graph xdr]
}
